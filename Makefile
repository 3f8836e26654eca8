# transit: two commands on a fresh Debian 12 machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup geodata web system venv services demo demo-cluster democheck test check lint typecheck pytest stop status doctor clean cluster-up cluster-down cluster-status cluster-db-up cluster-db-down cluster-db-status cluster-api-up cluster-api-down cluster-api-status test-cluster

setup: system venv services geodata web

geodata: venv
	@bash scripts/setup-geodata.sh

web:
	@bash scripts/setup-web.sh

system:
	@bash scripts/setup-system.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@mkdir -p .run
	@$(PY) -m pip install -q --upgrade pip >.run/pip.log 2>&1 || (cat .run/pip.log; exit 1)
	@$(PY) -m pip install -q -e ".[dev]" >.run/pip.log 2>&1 || (cat .run/pip.log; exit 1)
	@touch $(STAMP)

venv: $(STAMP)

services: venv
	@bash scripts/services.sh start

demo: setup
	@$(VENV)/bin/transit demo

# The same demo on the clustered stack (issue 14): 3 RabbitMQ nodes, Patroni primary and
# synchronous standby, 2 APIs behind HAProxy, 2 notifiers, 2 ingest workers over AMQP.
# The broker and database clusters stay up after Ctrl-C (make cluster-down cluster-db-down).
demo-cluster: setup
	@$(VENV)/bin/transit demo --cluster

test: setup democheck check

# The demo's whole path, bounded, on a freshly created database (transit_democheck)
# and a broker of its own: `transit demo --check`, exit 1 with the reason when no fix
# is stored, no truck departs or no alert is raised (scripts/democheck.sh).
democheck: setup
	@bash scripts/democheck.sh

check: lint typecheck pytest

lint: venv
	$(VENV)/bin/ruff check transit firmware_sim tests
	$(VENV)/bin/ruff format --check transit firmware_sim tests

typecheck: venv
	$(VENV)/bin/mypy transit

pytest: venv
	$(VENV)/bin/pytest

doctor: venv
	@$(VENV)/bin/transit doctor --json

status:
	@bash scripts/services.sh status

stop:
	@bash scripts/services.sh stop

# The clustered broker (docs/cluster.md): three RabbitMQ nodes on loopback.
cluster-up: services
	@bash scripts/cluster-broker.sh start

cluster-down:
	@bash scripts/cluster-broker.sh stop

cluster-status:
	@bash scripts/cluster-broker.sh status

# The HA database (docs/cluster-db.md): Patroni, one etcd, a primary and a synchronous
# standby on loopback (PostgreSQL 54340/54341).
cluster-db-up: services
	@bash scripts/cluster-db.sh start

cluster-db-down:
	@bash scripts/cluster-db.sh stop

cluster-db-status:
	@bash scripts/cluster-db.sh status

# N API processes behind HAProxy and N notifiers (docs/cluster-api.md): HAProxy on 18920.
cluster-api-up: services
	@bash scripts/cluster-api.sh start

cluster-api-down:
	@bash scripts/cluster-api.sh stop

cluster-api-status:
	@bash scripts/cluster-api.sh status

# The cluster tests alone (they run in `make test` too): the broker, the database and
# the API each with a node killed, then the whole stack with a broker node, the
# database primary, an API and an ingest worker killed during one run (bounded: about
# ten minutes in all). Each starts what it needs and stops it.
test-cluster: services
	$(VENV)/bin/pytest tests/e2e/test_cluster_broker.py tests/e2e/test_cluster_db.py \
		tests/e2e/test_cluster_api.py tests/e2e/test_cluster_stack.py tests/e2e/test_demo_cluster.py

clean: stop
	rm -rf .run
