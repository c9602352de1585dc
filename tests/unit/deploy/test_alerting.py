"""Alerting and the importable dashboard, checked offline: Alertmanager in compose, the Prometheus Operator
component of ``infra/k8s`` and the Grafana dashboard's data source variable.

- promtool (``check rules``, ``check config``) and amtool (``check-config``) check the files where they are
  installed (Debian's ``prometheus`` and ``prometheus-alertmanager``; ``.ci/run`` installs them); without them
  those tests skip, saying so.
- The PrometheusRule of ``components/prometheus-operator`` holds exactly the groups of
  ``infra/prometheus/rules/eddy-alerts.yml``: it is written from that file by :func:`write_prometheus_rule`,
  and a test fails as soon as the two differ.
- The ServiceMonitor and the PrometheusRule are validated against the Prometheus Operator's CRD schemas, as the
  PyPI package cloudcoil-models-prometheus-operator carries them, exported to ``infra/k8s/schemas`` by
  :func:`write_prometheus_operator_schemas` (unknown fields refused), and the ServiceMonitor must select every
  eddy Service of both overlays on a port it has.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pytest
import yaml
from eddy.core.settings import REPO_ROOT

from tests.deploy_manifests import K8S_DIR, OVERLAYS, WORKLOAD_KINDS, Resource, main_container, of_kind
from tests.deploy_manifests import _build as build
from tests.unit.deploy.test_k8s_manifests import (
    PROMETHEUS_NAMESPACE,
    closed,
    container_port,
    ingress_ports,
    pod_labels,
    selects,
    validation_errors,
)

RULES = REPO_ROOT / "infra" / "prometheus" / "rules" / "eddy-alerts.yml"
PROMETHEUS_CONFIG = REPO_ROOT / "infra" / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = REPO_ROOT / "infra" / "alertmanager" / "alertmanager.yml"
DASHBOARD = REPO_ROOT / "infra" / "grafana" / "dashboards" / "eddy.json"
COMPOSE = REPO_ROOT / "docker-compose.yml"
COMPONENT = K8S_DIR / "components" / "prometheus-operator"
PROMETHEUS_RULE = COMPONENT / "prometheusrule.yaml"
SERVICE_MONITOR = COMPONENT / "servicemonitor.yaml"
OPERATOR_SCHEMA_FILE = K8S_DIR / "schemas" / "monitoring.coreos.com-v1.json"
OPERATOR_SCHEMA_PACKAGE = "cloudcoil-models-prometheus-operator"
OPERATOR_KINDS = ("ServiceMonitor", "PrometheusRule")
# What the dashboard's queries name as their data source: its variable, never one Grafana's uid.
DATASOURCE_VARIABLE = "datasource"
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
DATASOURCE_INPUT = "DS_PROMETHEUS"
# Grafana's own annotation source (alerts and annotations) belongs to every Grafana.
GRAFANA_BUILTIN = {"type": "grafana", "uid": "-- Grafana --"}
RULE_HEADER = """\
# Generated from infra/prometheus/rules/eddy-alerts.yml, the one copy of eddy's alert rules; do not edit.
# After changing that file: python -c 'from tests.unit.deploy.test_alerting import write_prometheus_rule;
# write_prometheus_rule()' (tests/unit/deploy/test_alerting.py fails while the two differ).
"""


# --- the PrometheusRule, from the rules file ----------------------------------------------------------------


def prometheus_rule() -> Resource:
    """The PrometheusRule holding the groups of the rules file as they are."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "eddy-alerts", "labels": {"app.kubernetes.io/part-of": "eddy"}},
        "spec": {"groups": yaml.safe_load(RULES.read_text())["groups"]},
    }


def write_prometheus_rule() -> Path:
    """Write :func:`prometheus_rule` to :data:`PROMETHEUS_RULE`."""
    body = yaml.safe_dump(prometheus_rule(), sort_keys=False, width=120, allow_unicode=True)
    PROMETHEUS_RULE.write_text(RULE_HEADER + body)
    return PROMETHEUS_RULE


def test_prometheus_rule_is_the_rules_file() -> None:
    committed = yaml.safe_load(PROMETHEUS_RULE.read_text())
    fix = "run write_prometheus_rule() (see the file's header)"
    assert committed["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"], f"rules differ: {fix}"
    assert committed == prometheus_rule(), f"the PrometheusRule differs from what is generated: {fix}"
    assert PROMETHEUS_RULE.read_text().startswith(RULE_HEADER)


# --- promtool and amtool ------------------------------------------------------------------------------------


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian: apt-get install prometheus prometheus-alertmanager)")
    return path


def run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    # The PrometheusRule's spec as a plain rules file too: promtool checks what the operator will load.
    operator_rules = tmp_path / "prometheusrule-rules.yml"
    operator_rules.write_text(yaml.safe_dump(yaml.safe_load(PROMETHEUS_RULE.read_text())["spec"]))
    out = run(tool("promtool"), "check", "rules", str(RULES), str(operator_rules))
    assert out.count("SUCCESS") == 2, out


def test_promtool_checks_the_config_with_its_rules(tmp_path: Path) -> None:
    # The config names the rules where compose mounts them; here they are read from the repository instead.
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["rule_files"] = [str(RULES)]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    out = run(tool("promtool"), "check", "config", str(path))
    assert "SUCCESS" in out and "rules found" in out, out


def commented_receivers(text: str) -> str:
    """The Alertmanager config with its commented example receivers uncommented, so they are checked too."""
    return re.sub(r"(?m)^  # (- name: )", r"  \1", re.sub(r"(?m)^  #   ", "    ", text))


def test_amtool_checks_the_alertmanager_config(tmp_path: Path) -> None:
    amtool = tool("amtool")
    out = run(amtool, "check-config", str(ALERTMANAGER_CONFIG))
    assert "SUCCESS" in out, out
    examples = tmp_path / "alertmanager.yml"
    examples.write_text(commented_receivers(ALERTMANAGER_CONFIG.read_text()))
    assert len(yaml.safe_load(examples.read_text())["receivers"]) == 3, "the email and Slack examples are gone"
    assert "SUCCESS" in run(amtool, "check-config", str(examples))


def test_commented_receivers() -> None:
    text = "receivers:\n  - name: a\n  # - name: b\n  #   webhook_configs: []\n"
    receivers = yaml.safe_load(commented_receivers(text))["receivers"]
    assert receivers == [{"name": "a"}, {"name": "b", "webhook_configs": []}]


# --- compose: Prometheus to Alertmanager --------------------------------------------------------------------


def test_prometheus_sends_alerts_to_the_compose_alertmanager() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    alertmanager = compose["services"]["alertmanager"]
    assert alertmanager["image"].startswith("prom/alertmanager:v"), "pin Alertmanager's version"
    assert "./infra/alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro" in alertmanager["volumes"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in alertmanager["command"]
    port = alertmanager["ports"][0].split(":")[-1]
    targets = [
        target
        for manager in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["alerting"]["alertmanagers"]
        for static in manager["static_configs"]
        for target in static["targets"]
    ]
    assert targets == [f"alertmanager:{port}"]
    assert "alertmanager" in compose["services"]["prometheus"]["depends_on"]


def test_every_rule_reaches_a_receiver() -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    receivers = {receiver["name"] for receiver in config["receivers"]}
    routes = [config["route"], *config["route"].get("routes", [])]
    assert {route.get("receiver", config["route"]["receiver"]) for route in routes} <= receivers
    # Alertmanager groups by labels the rules set: a label no rule has would merge unrelated alerts.
    rule_labels = {"alertname", "stream", "job"}
    assert set(config["route"]["group_by"]) <= rule_labels


# --- Kubernetes: the Prometheus Operator component ---------------------------------------------------------


def operator_schemas_from_package() -> dict[str, Any]:
    """The JSON schemas of ServiceMonitor and PrometheusRule from cloudcoil-models-prometheus-operator.

    Raises
    ------
    ImportError
        Without that package (not a dev dependency: only refreshing the exported file needs it).
    """
    from cloudcoil.models.prometheus_operator import v1

    schemas: dict[str, Any] = {
        "$comment": (
            f"Prometheus Operator CRD schemas as {OPERATOR_SCHEMA_PACKAGE} {version(OPERATOR_SCHEMA_PACKAGE)} "
            "(PyPI) carries them; written by tests.unit.deploy.test_alerting.write_prometheus_operator_schemas, "
            "do not edit"
        )
    }
    for kind in OPERATOR_KINDS:
        schemas[kind] = getattr(v1, kind).model_json_schema(by_alias=True, mode="validation")
    return schemas


def write_prometheus_operator_schemas() -> Path:
    """Export :func:`operator_schemas_from_package` to :data:`OPERATOR_SCHEMA_FILE` (where it is installed)."""
    OPERATOR_SCHEMA_FILE.write_text(json.dumps(operator_schemas_from_package(), indent=1, sort_keys=True) + "\n")
    return OPERATOR_SCHEMA_FILE


def with_component(overlay: str) -> list[Resource]:
    """``overlay`` rendered with the component in its ``components``, as a user adds it (so it gets the namespace)."""
    directory = K8S_DIR / "overlays" / overlay
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    kustomization["components"] = [*kustomization.get("components", []), str(COMPONENT)]
    return build(directory, kustomization, [])


@pytest.fixture(params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[Resource]]:
    overlay: str = request.param
    return overlay, with_component(overlay)


def test_operator_objects_match_their_crd_schemas(rendered: tuple[str, list[Resource]]) -> None:
    import jsonschema

    overlay, objects = rendered
    schemas = json.loads(OPERATOR_SCHEMA_FILE.read_text())
    found = of_kind(objects, *OPERATOR_KINDS)
    assert sorted(o["kind"] for o in found) == sorted(OPERATOR_KINDS), overlay
    errors = []
    for resource in found:
        validator = jsonschema.Draft202012Validator(closed(copy.deepcopy(schemas[resource["kind"]])))
        errors += validation_errors(validator, resource)
        assert resource["metadata"]["namespace"] == ("eddy-dev" if overlay == "dev" else "eddy"), overlay
    assert not errors, "\n".join(errors)


def test_the_crd_schema_refuses_a_misspelt_field() -> None:
    import jsonschema

    schemas = json.loads(OPERATOR_SCHEMA_FILE.read_text())
    monitor = yaml.safe_load(SERVICE_MONITOR.read_text())
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    validator = jsonschema.Draft202012Validator(closed(copy.deepcopy(schemas["ServiceMonitor"])))
    assert any("intervall" in message for message in validation_errors(validator, monitor))


def test_service_monitor_scrapes_every_eddy_service(rendered: tuple[str, list[Resource]]) -> None:
    overlay, objects = rendered
    (monitor,) = of_kind(objects, "ServiceMonitor")
    services = of_kind(objects, "Service")
    selected = [s for s in services if selects(monitor["spec"]["selector"], s["metadata"].get("labels", {}))]
    missed = [s["metadata"]["name"] for s in services if s not in selected]
    assert not missed, f"{overlay}: not scraped: {missed}"
    ports = {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]}
    job_label = monitor["spec"]["jobLabel"]
    for service in selected:
        name = service["metadata"]["name"]
        assert ports <= {p["name"] for p in service["spec"]["ports"]}, name
        assert service["metadata"]["labels"][job_label] == name
        # Prometheus scrapes the pods behind the Service: the network policies must let it reach their port.
        (workload,) = [
            w
            for w in of_kind(objects, *WORKLOAD_KINDS)
            if selects({"matchLabels": service["spec"]["selector"]}, pod_labels(w))
        ]
        for port in service["spec"]["ports"]:
            if port["name"] in ports:
                pod_port = container_port(main_container(workload), port["targetPort"])
                assert pod_port in ingress_ports(objects, workload, PROMETHEUS_NAMESPACE), f"{overlay}: {name}"
    assert all(endpoint["path"] == "/metrics" for endpoint in monitor["spec"]["endpoints"])


def test_exported_operator_schemas_are_current() -> None:
    try:
        version(OPERATOR_SCHEMA_PACKAGE)
    except PackageNotFoundError:
        pytest.skip(f"{OPERATOR_SCHEMA_PACKAGE} is not installed (only refreshing the exported schemas needs it)")
    assert json.loads(OPERATOR_SCHEMA_FILE.read_text()) == operator_schemas_from_package()


# --- Grafana: a dashboard any Grafana imports ---------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def datasource_refs(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``datasource`` value in the dashboard, with its JSON path."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield where, value
            else:
                yield from datasource_refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from datasource_refs(value, f"{where}/{index}")


def test_dashboard_takes_its_datasource_as_a_variable(dashboard: dict[str, Any]) -> None:
    variables = dashboard["templating"]["list"]
    (variable,) = [v for v in variables if v["name"] == DATASOURCE_VARIABLE]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    # First, so the variables that query Prometheus resolve after it.
    assert variables[0] is variable


def test_every_query_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    wrong = [
        (where, ref) for where, ref in datasource_refs(dashboard) if ref != DATASOURCE_REF and ref != GRAFANA_BUILTIN
    ]
    assert not wrong, "queries that name a data source of their own:\n" + "\n".join(f"  {w}: {r}" for w, r in wrong)
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels and all(p["datasource"] == DATASOURCE_REF for p in panels)


def test_dashboard_imports_with_an_input(dashboard: dict[str, Any]) -> None:
    # Grafana's import dialog asks for each __inputs entry and replaces ${NAME} with the data source chosen.
    (entry,) = dashboard["__inputs"]
    assert entry == {**entry, "name": DATASOURCE_INPUT, "type": "datasource", "pluginId": "prometheus"}
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == DATASOURCE_VARIABLE]
    assert variable["current"]["value"] == "${" + DATASOURCE_INPUT + "}"
    assert dashboard["id"] is None, "an id would overwrite another dashboard on import"
    used = set(re.findall(r"\$\{(DS_[A-Z_]+)\}", DASHBOARD.read_text()))
    assert used == {DATASOURCE_INPUT}
