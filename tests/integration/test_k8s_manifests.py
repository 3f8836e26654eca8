"""The Kubernetes manifests (deploy/k8s), checked offline: no cluster runs here.

The kustomization is rendered as `kubectl apply -k` would (the subset of kustomize it
uses: namespace, resources, images, ConfigMap and Secret generators; any other field
fails the test), each object is validated against the Kubernetes 1.37 OpenAPI schemas
bundled by kubernetes-validate (strict: unknown fields fail), and what matters to an
operator is asserted against the code: the probes' paths are routes of the FastAPI
app or of Patroni, the commands parse with transit's CLI, every TRANSIT_* variable is
a setting of transit/config.py, every tier has a disruption budget selecting its pods.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from transit.config import PROJECT_ROOT, Settings

K8S = PROJECT_ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.37.0"
KUSTOMIZE_FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "images",
    "configMapGenerator",
    "secretGenerator",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}
WORKLOADS = {"Deployment", "StatefulSet"}
TRANSIT_IMAGE = "transit"
# Patroni's REST API (docs/rest_api.rst of Patroni): the health endpoints a probe may use.
PATRONI_PATHS = {"/liveness", "/readiness", "/health", "/primary", "/replica", "/patroni"}
# Names an application container may set besides TRANSIT_*: the pod's name (ingest's
# slot) and the database password the URL is made from.
APP_HELPER_VARS = {"POD_NAME", "DB_PASSWORD"}
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value
    return pairs


def _generated(kind: str, name: str, **data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, **data}


def render(root: Path = K8S) -> list[dict[str, Any]]:
    """The objects `kubectl apply -k root` would send, secrets from the .example files."""
    kust = yaml.safe_load((root / "kustomization.yaml").read_text())
    unknown = set(kust) - KUSTOMIZE_FIELDS
    assert not unknown, f"kustomization fields this test does not render: {unknown}"
    objects: list[dict[str, Any]] = []
    for res in kust["resources"]:
        objects += [d for d in yaml.safe_load_all((root / res).read_text()) if d]
    for gen in kust.get("configMapGenerator", []):
        data = {}
        for env in gen.get("envs", []):
            data |= _env_file(root / env)
        for f in gen.get("files", []):
            data[Path(f).name] = (root / f).read_text()
        objects.append(_generated("ConfigMap", gen["name"], data=data))
    for gen in kust.get("secretGenerator", []):
        data = {}
        for env in gen.get("envs", []):
            example = root / f"{env}.example"
            assert example.exists(), f"{env} has no {example.name} to start from"
            data |= _env_file(example)
        objects.append(_generated("Secret", gen["name"], stringData=data))
    images = {i["name"]: f"{i['newName']}:{i['newTag']}" for i in kust.get("images", [])}
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = kust["namespace"]
        for c in _all_containers(obj):
            c["image"] = images.get(c["image"], c["image"])
    return objects


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    return obj["spec"]["template"]["spec"] if obj["kind"] in WORKLOADS else None


def _all_containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = _pod_spec(obj)
    return [] if spec is None else spec.get("initContainers", []) + spec["containers"]


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    return dict(yaml.safe_load((K8S / "kustomization.yaml").read_text()))


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _patroni(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(
        yaml.safe_load(by_kind(objects, "ConfigMap")["timescaledb-patroni"]["data"]["patroni.yaml"])
    )


def transit_image(kustomization: dict[str, Any]) -> str:
    (img,) = [i for i in kustomization["images"] if i["name"] == TRANSIT_IMAGE]
    return f"{img['newName']}:{img['newTag']}"


def test_every_object_is_valid_against_the_kubernetes_schemas(
    objects: list[dict[str, Any]],
) -> None:
    kinds = {o["kind"] for o in objects}
    assert {
        "StatefulSet",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ConfigMap",
        "Secret",
    } <= kinds
    errors = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(
                f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}"
            )
    assert not errors, "\n".join(errors)


def test_the_topology_is_that_of_issue_14(objects: list[dict[str, Any]]) -> None:
    sets, deps = by_kind(objects, "StatefulSet"), by_kind(objects, "Deployment")
    assert sets["rabbitmq"]["spec"]["replicas"] == 3
    conf = by_kind(objects, "ConfigMap")["rabbitmq-config"]["data"]
    assert "mqtt.durable_queue_type = quorum" in conf["rabbitmq.conf"]
    assert "rabbitmq_mqtt" in conf["enabled_plugins"]
    assert sets["timescaledb"]["spec"]["replicas"] >= 2
    (db,) = sets["timescaledb"]["spec"]["template"]["spec"]["containers"]
    assert db["image"].startswith("timescale/timescaledb-ha:")
    patroni = _patroni(objects)
    assert patroni["bootstrap"]["dcs"]["synchronous_mode"] is True
    for name in ("transit-api", "transit-ingest", "transit-notify"):
        assert deps[name]["spec"]["replicas"] >= 2, name


def _is_route(path: str) -> bool:
    """Whether the FastAPI app answers GET ``path`` with one of its routes (matched as a
    request would be; building the app needs no database)."""
    from starlette.routing import Match

    from transit.api.app import create_app

    app = create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/none"))
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
    return any(r.matches(scope)[0] == Match.FULL for r in app.router.routes)


def _port_names(container: dict[str, Any]) -> set[Any]:
    ports = container.get("ports", [])
    return {p["name"] for p in ports} | {p["containerPort"] for p in ports}


def _check_probe(
    probe: dict[str, Any], c: dict[str, Any], volumes: dict[str, Any], maps: dict[str, Any]
) -> str | None:
    """What is wrong with one probe of container ``c``, or None."""
    if "httpGet" in probe:
        get = probe["httpGet"]
        if get["port"] not in _port_names(c):
            return f"port {get['port']} is not one of the container's"
        if c["image"].startswith("timescale/timescaledb-ha:"):
            return None if get["path"] in PATRONI_PATHS else f"{get['path']} is no Patroni route"
        return None if _is_route(get["path"]) else f"{get['path']} is no route of the app"
    if "tcpSocket" in probe:
        port = probe["tcpSocket"]["port"]
        return None if port in _port_names(c) else f"port {port} is not one of the container's"
    cmd = probe["exec"]["command"]
    script = next((a for a in cmd if a.endswith(".py")), None)
    if script is None:
        return None  # a tool of the image (rabbitmq-diagnostics)
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    vol = volumes.get(mounts.get(str(Path(script).parent), ""), {})
    files = maps.get(vol.get("configMap", {}).get("name"), {}).get("data", {})
    if Path(script).name not in files:
        return f"{script} is not mounted from a ConfigMap that has it"
    mode = cmd[cmd.index(script) + 1]
    return None if f'"{mode}"' in files[Path(script).name] else f"{script} has no mode {mode}"


def test_every_long_running_container_has_readiness_and_liveness_probes_that_exist(
    objects: list[dict[str, Any]],
) -> None:
    maps = by_kind(objects, "ConfigMap")
    problems = []
    for obj in objects:
        spec = _pod_spec(obj)
        if spec is None:
            continue
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            for kind in ("readinessProbe", "livenessProbe"):
                where = f"{obj['metadata']['name']}/{c['name']} {kind}"
                if kind not in c:
                    problems.append(f"{where}: missing")
                elif (err := _check_probe(c[kind], c, volumes, maps)) is not None:
                    problems.append(f"{where}: {err}")
    assert not problems, "\n".join(problems)


def test_the_api_is_probed_on_health_for_readiness_and_without_the_database_for_liveness(
    objects: list[dict[str, Any]],
) -> None:
    (api,) = by_kind(objects, "Deployment")["transit-api"]["spec"]["template"]["spec"]["containers"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/health"
    assert api["livenessProbe"]["httpGet"]["path"] != "/health"  # a failover restarts nothing


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_every_tier_has_a_disruption_budget_selecting_its_pods_and_no_other(
    objects: list[dict[str, Any]],
) -> None:
    workloads = [o for o in objects if o["kind"] in WORKLOADS]
    budgets = by_kind(objects, "PodDisruptionBudget").values()
    for w in workloads:
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert _selects(w["spec"]["selector"]["matchLabels"], labels), w["metadata"]["name"]
        mine = [b for b in budgets if _selects(b["spec"]["selector"]["matchLabels"], labels)]
        assert len(mine) == 1, f"{w['metadata']['name']}: {len(mine)} budgets"
        assert mine[0]["spec"].get("maxUnavailable", 0) < w["spec"]["replicas"]
    for b in budgets:
        sel = b["spec"]["selector"]["matchLabels"]
        hits = [w for w in workloads if _selects(sel, w["spec"]["template"]["metadata"]["labels"])]
        assert len(hits) == 1, f"budget {b['metadata']['name']} selects {len(hits)} workloads"


def test_services_reach_pods_and_the_primary_is_patronis(objects: list[dict[str, Any]]) -> None:
    pods = [w["spec"]["template"]["metadata"]["labels"] for w in objects if w["kind"] in WORKLOADS]
    patroni = _patroni(objects)
    k8s = patroni["kubernetes"]
    (db,) = by_kind(objects, "StatefulSet")["timescaledb"]["spec"]["template"]["spec"]["containers"]
    scope = next(e["value"] for e in db["env"] if e["name"] == "PATRONI_SCOPE")
    for svc in by_kind(objects, "Service").values():
        sel = dict(svc["spec"].get("selector", {}))
        if not sel:
            # Patroni's own: it keeps its configuration in the Endpoints of <scope>-config,
            # and writes its leader's address into those of <scope>, with the port names
            # it is told (or the Service does not route).
            assert svc["metadata"]["name"] in (scope, f"{scope}-config")
            if svc["metadata"]["name"] == scope:
                assert {p["name"] for p in svc["spec"]["ports"]} == {
                    p["name"] for p in k8s["ports"]
                }
            continue
        role = sel.pop(k8s["role_label"], None)
        assert role in (None, k8s["leader_label_value"], k8s["follower_label_value"])
        assert any(_selects(sel, labels) for labels in pods), svc["metadata"]["name"]


def _containers_of_image(objects: list[dict[str, Any]], image: str) -> list[dict[str, Any]]:
    return [c for o in objects for c in _all_containers(o) if c["image"] == image]


def test_transit_containers_run_commands_the_cli_has(
    objects: list[dict[str, Any]], kustomization: dict[str, Any]
) -> None:
    from transit.cli import build_parser

    image = transit_image(kustomization)
    containers = _containers_of_image(objects, image)
    assert len(containers) >= 6  # three tiers, each with its migration first
    commands = set()
    for c in containers:
        assert "command" not in c, "the image's entrypoint is `transit`"
        argv = [VAR_REF.sub("x", a) for a in c["args"]]
        build_parser().parse_args(argv)  # exits (SystemExit) on an unknown command or flag
        commands.add(argv[0])
    assert {"api", "ingest", "notify", "db"} <= commands


def test_every_transit_variable_is_a_setting_and_every_reference_resolves(
    objects: list[dict[str, Any]], kustomization: dict[str, Any]
) -> None:
    settings = {f"TRANSIT_{name.upper()}" for name in Settings.model_fields}
    maps, secrets = by_kind(objects, "ConfigMap"), by_kind(objects, "Secret")
    source_keys = {("configMap", n): set(m["data"]) for n, m in maps.items()}
    source_keys |= {("secret", n): set(s["stringData"]) for n, s in secrets.items()}
    image = transit_image(kustomization)
    for obj in objects:
        for c in _all_containers(obj):
            names = []
            for src in c.get("envFrom", []):
                kind, ref = next(iter(src.items()))
                names += source_keys[(kind.removesuffix("Ref"), ref["name"])]
            for e in c.get("env", []):
                ref = e.get("valueFrom", {})
                for kind in ("secretKeyRef", "configMapKeyRef"):
                    if kind in ref:
                        src = (kind.removesuffix("KeyRef"), ref[kind]["name"])
                        assert ref[kind]["key"] in source_keys[src], f"{c['name']}: {ref}"
                used = set(VAR_REF.findall(e.get("value", "")))
                assert used <= set(names), (
                    f"{c['name']}: {e['name']} uses undefined {used - set(names)}"
                )
                names.append(e["name"])
            for arg in c.get("args", []) + c.get("command", []):
                assert set(VAR_REF.findall(arg)) <= set(names), f"{c['name']}: {arg}"
            transit_vars = {n for n in names if n.startswith("TRANSIT_")}
            assert transit_vars <= settings, f"{c['name']}: not settings: {transit_vars - settings}"
            if c["image"] == image:
                assert set(names) - transit_vars <= APP_HELPER_VARS, f"{c['name']}: {names}"
                assert "TRANSIT_DATABASE_URL" in names and "TRANSIT_MQTT_URL" in names


def test_app_settings_point_at_the_services_and_the_broker_knows_the_backend_users(
    objects: list[dict[str, Any]], kustomization: dict[str, Any]
) -> None:
    services = by_kind(objects, "Service")
    settings = by_kind(objects, "ConfigMap")["transit-settings"]["data"]
    mqtt = re.fullmatch(r"mqtt://([\w-]+):(\d+)", settings["TRANSIT_MQTT_URL"])
    assert mqtt, settings["TRANSIT_MQTT_URL"]
    assert int(mqtt[2]) in {p["port"] for p in services[mqtt[1]]["spec"]["ports"]}
    (api,) = by_kind(objects, "Deployment")["transit-api"]["spec"]["template"]["spec"]["containers"]
    url = next(e["value"] for e in api["env"] if e["name"] == "TRANSIT_DATABASE_URL")
    assert "@transit-db:5432/" in url and "target_session_attrs=read-write" in url
    assert api["ports"][0]["containerPort"] == int(settings["TRANSIT_API_PORT"])
    assert settings["TRANSIT_API_HOST"] == "0.0.0.0"
    assert "TRANSIT_API_TLS_CERT" not in settings  # HTTP inside: the probes use HTTP
    rabbit = by_kind(objects, "ConfigMap")["rabbitmq-config"]["data"]
    users = {u["name"] for u in yaml.safe_load(rabbit["definitions.json"])["users"]}
    assert users == {v for k, v in settings.items() if re.fullmatch(r"TRANSIT_MQTT_\w+_USER", k)}
    suffix = f".rabbitmq-headless.{kustomization['namespace']}.svc.cluster.local"
    assert f"cluster_formation.k8s.hostname_suffix = {suffix}" in rabbit["rabbitmq.conf"]
    assert by_kind(objects, "StatefulSet")["rabbitmq"]["spec"]["serviceName"] == "rabbitmq-headless"


def test_a_broken_manifest_fails(tmp_path: Path) -> None:
    """The checks can fail: a copy of the manifests with a probe path the app does not
    have, and one with a field the schema does not know, are refused."""
    import shutil

    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    api = copy / "app" / "api.yaml"
    api.write_text(api.read_text().replace("path: /health,", "path: /healthz,"))
    objs = render(copy)
    (dep,) = [
        o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "transit-api"
    ]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert _check_probe(c["readinessProbe"], c, {}, {}) == "/healthz is no route of the app"
    c["readinesProbe"] = c.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, KUBERNETES_VERSION, strict=True)


def _probe(mode: str, database_url: str) -> int:
    env = os.environ | {
        "POD_NAME": "k8s-probe-test-no-such-slot",
        "TRANSIT_DATABASE_URL": database_url,
    }
    cmd = [sys.executable, str(K8S / "app" / "probe.py"), mode]
    return subprocess.run(cmd, env=env, timeout=60, check=False, capture_output=True).returncode


@pytest.mark.integration
def test_ingest_probes_refuse_a_pod_without_a_slot_and_liveness_spares_it_a_database_away() -> None:
    from transit.config import get_settings

    url = get_settings().database_url
    assert _probe("ingest-live", url) == 1, "a worker with no slot is not alive"
    assert _probe("ingest-ready", url) == 1
    away = "postgresql://transit:x@127.0.0.1:1/transit?connect_timeout=2"
    assert _probe("ingest-live", away) == 0, "a database away is no reason to restart"
    assert _probe("ingest-ready", away) == 1
    assert _probe("process", url) == 0
    assert _probe("no-such-mode", url) == 2
