# transit: two commands on a fresh Debian 12 machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup geodata web system venv services demo democheck test check lint typecheck pytest stop status doctor clean cluster-up cluster-down cluster-status test-cluster

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

# Starts the cluster, kills a node under load, stops it (bounded: a few minutes).
test-cluster: services
	$(VENV)/bin/pytest tests/e2e/test_cluster_broker.py

clean: stop
	rm -rf .run
