"""The monitoring files in infra/ and docker-compose.yml, checked without running them.

No Docker engine runs on the dev and CI machines, so Prometheus and Grafana never load these files here. A
query on a metric eddy does not export, or on a label the metric does not have, fails silently: the panel
stays empty and the alert never fires. These tests compare every query with the metrics eddy registers and
check how the files refer to each other.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import eddy.runtime.observability
import eddy.services as services
import pytest
import yaml
from eddy.core.settings import REPO_ROOT
from eddy.services.schema_registry.metrics import RegistryMetrics
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

PROMETHEUS_CONFIG = REPO_ROOT / "infra" / "prometheus" / "prometheus.yml"
RULES = REPO_ROOT / "infra" / "prometheus" / "rules" / "eddy-alerts.yml"
GRAFANA = REPO_ROOT / "infra" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "eddy.yml"
DASHBOARD = GRAFANA / "dashboards" / "eddy.json"
COMPOSE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"

# Series Prometheus adds to every scrape itself; eddy does not export them.
SCRAPE_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"})
SEVERITIES = frozenset({"critical", "warning", "info"})


# --- PromQL: metric and label names ------------------------------------------------------------------------


@dataclass(frozen=True)
class Selector:
    """A metric name in an expression and the label names of its ``{...}`` matchers."""

    metric: str
    labels: frozenset[str]


@dataclass(frozen=True)
class Grouping:
    """A ``by (...)`` or ``without (...)`` clause and the metrics of the expression it aggregates."""

    labels: frozenset[str]
    metrics: frozenset[str]


@dataclass(frozen=True)
class Query:
    """What one expression refers to: its selectors in order, and its grouping clauses."""

    selectors: tuple[Selector, ...]
    groupings: tuple[Grouping, ...]

    @property
    def metrics(self) -> set[str]:
        return {s.metric for s in self.selectors}


_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_RANGE = re.compile(r"\[[^\]]*\]")
_CLAUSE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_BRACES = re.compile(r"([A-Za-z_:][\w:]*)?\s*\{([^{}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
# Not after a digit or a dot (1e3, 0x1f, 5m) nor a $ (a Grafana variable); not before "(" (a function);
# the trailing [\w:] stops a match from ending inside a longer name ("rat" of "rate(").
_NAME = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?!\s*\(|[\w:])")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
    | {"inf", "nan"}
)


def _blank(text: str, start: int, end: int) -> str:
    """Spaces over ``text[start:end]``, so that positions of the rest stay valid."""
    return text[:start] + " " * (end - start) + text[end:]


def _group_span(text: str, open_at: int) -> tuple[int, int]:
    """The span of the parenthesized group opening at ``open_at``."""
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return open_at, i + 1
    raise ValueError(f"unbalanced parentheses in {text!r}")


def _aggregated_span(text: str, start: int, end: int) -> tuple[int, int]:
    """The expression a grouping clause at ``text[start:end]`` aggregates.

    PromQL allows both ``sum by (l) (expr)`` and ``sum (expr) by (l)``.
    """
    after = len(text) - len(text[end:].lstrip())
    if after < len(text) and text[after] == "(":
        return _group_span(text, after)
    close = len(text[:start].rstrip()) - 1
    if close < 0 or text[close] != ")":
        raise ValueError(f"no aggregated expression around {text[start:end]!r}")
    depth = 0
    for i in range(close, -1, -1):
        depth += {")": 1, "(": -1}.get(text[i], 0)
        if depth == 0:
            return i, close + 1
    raise ValueError(f"unbalanced parentheses in {text!r}")


def parse_promql(expr: str) -> Query:
    """The metric names of a PromQL expression, with the label names used on them.

    A lexical scan, not a parser: string literals (matcher values, which may hold Grafana variables) and
    ``[...]`` ranges are blanked first, then grouping clauses and ``{...}`` matchers are read and blanked,
    and every name left that is not a keyword or followed by ``(`` (a function or an aggregation) is a
    metric. Nameless selectors (``{__name__="..."}``) are not reported. Raises ``ValueError`` on
    unbalanced parentheses around a grouping clause.
    """
    text = _STRING.sub(lambda m: " " * len(m.group()), expr)
    text = _RANGE.sub(lambda m: " " * len(m.group()), text)

    clauses: list[tuple[frozenset[str], int, int]] = []
    for m in _CLAUSE.finditer(text):
        # on/ignoring/group_left/group_right only match series; their labels are not checked.
        if m.group(1) in ("by", "without"):
            clauses.append((frozenset(re.findall(r"\w+", m.group(2))), m.start(), m.end()))
        text = _blank(text, m.start(), m.end())

    found: list[tuple[int, Selector]] = []
    for m in _BRACES.finditer(text):
        if m.group(1):
            found.append((m.start(), Selector(m.group(1), frozenset(_MATCHER.findall(m.group(2))))))
        text = _blank(text, m.start(), m.end())
    found += [
        (m.start(), Selector(m.group(1), frozenset())) for m in _NAME.finditer(text) if m.group(1) not in _KEYWORDS
    ]

    groupings = []
    for labels, start, end in clauses:
        lo, hi = _aggregated_span(text, start, end)
        groupings.append(Grouping(labels, frozenset(s.metric for at, s in found if lo <= at < hi)))
    return Query(tuple(s for _, s in sorted(found, key=lambda f: f[0])), tuple(groupings))


def parse_variable_query(query: str) -> tuple[Query, str | None]:
    """A Grafana Prometheus variable query: the PromQL in it and the label it lists, if any.

    ``label_values(selector, label)`` lists the values of ``label`` on ``selector``; ``query_result(expr)``
    runs ``expr``. Anything else is taken as plain PromQL.
    """
    if m := re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query, re.DOTALL):
        return parse_promql(m.group(1)), m.group(2)
    if m := re.fullmatch(r"\s*query_result\((.*)\)\s*", query, re.DOTALL):
        return parse_promql(m.group(1)), None
    return parse_promql(query), None


@pytest.mark.parametrize(
    ("expr", "selectors", "groupings"),
    [
        ("up == 0", {("up", ())}, []),
        (
            'sum by (service, reason) (rate(eddy_dlq_total{stream=~"$stream[.].+"}[$__rate_interval]))',
            {("eddy_dlq_total", ("stream",))},
            [(("reason", "service"), ("eddy_dlq_total",))],
        ),
        (
            'histogram_quantile(0.99, sum(rate(lat_bucket{kind="by (x) {y}", job!~"a"}[5m])) by (le)) > 1e3',
            {("lat_bucket", ("job", "kind"))},
            [(("le",), ("lat_bucket",))],
        ),
        (
            'q{segment!="all"} < on (stream, model) group_left q{segment="all"} - 0.1',
            {("q", ("segment",))},
            [],
        ),
        (
            "max without (partition) (lag offset 5m) > 0x10 and on (topic) sum by (topic) (deriv(lag[10m:1m]))",
            {("lag", ())},
            [(("partition",), ("lag",)), (("topic",), ("lag",))],
        ),
        ("sum by (a) (x) / sum by (b) (y)", {("x", ()), ("y", ())}, [(("a",), ("x",)), (("b",), ("y",))]),
    ],
)
def test_parse_promql(
    expr: str, selectors: set[tuple[str, tuple[str, ...]]], groupings: list[tuple[tuple[str, ...], tuple[str, ...]]]
) -> None:
    query = parse_promql(expr)
    assert {(s.metric, tuple(sorted(s.labels))) for s in query.selectors} == selectors
    assert [(tuple(sorted(g.labels)), tuple(sorted(g.metrics))) for g in query.groupings] == groupings


def test_parse_variable_query() -> None:
    query, label = parse_variable_query('label_values(eddy_model_quality{stream=~"$stream"}, metric)')
    assert (query.metrics, label) == ({"eddy_model_quality"}, "metric")
    query, label = parse_variable_query("query_result(topk(3, sum by (stream) (eddy_records_in_total)))")
    assert (query.metrics, label) == ({"eddy_records_in_total"}, None)


# --- What eddy exports --------------------------------------------------------------------------------------

# Sample-name suffixes of each metric type in the exposition, with the labels they add; gauges and the
# types not listed expose the family name itself.
_SUFFIXES: dict[str, dict[str, tuple[str, ...]]] = {
    "counter": {"_total": (), "_created": ()},
    "histogram": {"_bucket": ("le",), "_sum": (), "_count": (), "_created": ()},
    "summary": {"": ("quantile",), "_sum": (), "_count": (), "_created": ()},
    "info": {"_info": ()},
}


def metric_modules() -> list[ModuleType]:
    """``eddy.runtime.observability`` and every ``eddy.services.<name>.metrics`` that exists."""
    modules = [eddy.runtime.observability]
    for info in pkgutil.iter_modules(services.__path__):
        if not info.ispkg:
            continue
        name = f"eddy.services.{info.name}.metrics"
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module exists, something it imports does not
                raise
    return modules


def wrapper_labels(namespaces: Iterable[object]) -> dict[str, frozenset[str]]:
    """Label names of the metric objects found among the attributes of ``namespaces``, by family name."""
    labels = {}
    for namespace in namespaces:
        for obj in vars(namespace).values():
            if isinstance(obj, MetricWrapperBase):
                # prometheus_client has no public accessor for them; .labels() checks against this attribute.
                for family in obj.describe():
                    labels[family.name] = frozenset(obj._labelnames)
    return labels


def sample_labels(
    registries: Iterable[CollectorRegistry], labels: dict[str, frozenset[str]]
) -> dict[str, frozenset[str]]:
    """Every sample name the registries expose, with its label names.

    A labelled metric has no samples until a child is created, so the label names come from ``labels``
    and, for collectors not found there, from whatever samples exist.
    """
    exported: dict[str, frozenset[str]] = {}
    for registry in registries:
        for family in registry.collect():
            names = labels.get(family.name, frozenset().union(*(s.labels.keys() for s in family.samples)))
            for suffix, extra in _SUFFIXES.get(family.type, {"": ()}).items():
                exported[family.name + suffix] = names | set(extra)
    return exported


@pytest.fixture(scope="module")
def exported() -> dict[str, frozenset[str]]:
    modules = metric_modules()
    # The schema registry keeps its metrics on a registry of their own per app.
    registry_metrics = RegistryMetrics()
    return sample_labels([REGISTRY, registry_metrics.registry], wrapper_labels([*modules, registry_metrics]))


def test_exported_samples(exported: dict[str, frozenset[str]]) -> None:
    assert exported["eddy_records_in_total"] == {"service", "stream", "topic"}
    assert exported["eddy_batch_seconds_bucket"] == {"service", "le"}
    assert {"eddy_batch_seconds_sum", "eddy_batch_seconds_count", "eddy_consumer_lag"} <= exported.keys()
    assert exported["eddy_schema_registry_requests_total"] == {"method", "route", "status"}


# --- The files ----------------------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def variable_query(variable: dict[str, Any]) -> str:
    query = variable["query"]
    return query["query"] if isinstance(query, dict) else query


@pytest.fixture(scope="module")
def expressions(rules: list[dict[str, Any]], dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """Every PromQL expression of the rules and the dashboard panels, with where it is."""
    found = [(f"rule {rule['alert']}", rule["expr"]) for rule in rules]
    for panel in panels(dashboard):
        found += [(f"panel {panel['title']!r}", target["expr"]) for target in panel.get("targets", [])]
    return found


@pytest.fixture(scope="module")
def queries(expressions: list[tuple[str, str]], dashboard: dict[str, Any]) -> list[tuple[str, Query, str | None]]:
    """The parsed expressions and dashboard variable queries, with where they are and the label they list."""
    found: list[tuple[str, Query, str | None]] = [(where, parse_promql(expr), None) for where, expr in expressions]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append((f"variable ${variable['name']}", *parse_variable_query(variable_query(variable))))
    return found


def test_queried_metrics_are_exported(
    queries: list[tuple[str, Query, str | None]], exported: dict[str, frozenset[str]]
) -> None:
    missing = sorted(
        {
            (metric, where)
            for where, query, _ in queries
            for metric in query.metrics
            if metric not in exported and metric not in SCRAPE_SERIES
        }
    )
    assert not missing, "not exported by eddy:\n" + "\n".join(f"  {metric} ({where})" for metric, where in missing)


def test_queried_labels_exist(
    queries: list[tuple[str, Query, str | None]], exported: dict[str, frozenset[str]]
) -> None:
    # Only eddy metrics that exist: a missing metric is the previous test's failure.
    def known(metric: str) -> bool:
        return metric.startswith("eddy_") and metric in exported

    wrong = set()
    for where, query, listed in queries:
        for selector in query.selectors:
            if known(selector.metric):
                wrong |= {(selector.metric, label, where) for label in selector.labels - exported[selector.metric]}
        for grouping in query.groupings:
            for metric in filter(known, grouping.metrics):
                wrong |= {(metric, label, where) for label in grouping.labels - exported[metric]}
        if listed is not None:
            wrong |= {
                (metric, listed, where) for metric in filter(known, query.metrics) if listed not in exported[metric]
            }
    assert not wrong, "labels the metric does not have:\n" + "\n".join(
        f"  {metric} has no {label!r} ({where})" for metric, label, where in sorted(wrong)
    )


def test_expressions_have_balanced_brackets(expressions: list[tuple[str, str]]) -> None:
    # promtool does not run in CI; this catches the commonest slip in a hand-written expression.
    pairs = {")": "(", "]": "[", "}": "{"}
    for where, expr in expressions:
        stack: list[str] = []
        for char in _STRING.sub("", expr):
            if char in "([{":
                stack.append(char)
            elif char in pairs:
                assert stack and stack.pop() == pairs[char], f"unbalanced {char!r} in {where}: {expr}"
        assert not stack, f"unclosed {stack[-1]!r} in {where}: {expr}"


def test_rules_are_complete(rules: list[dict[str, Any]]) -> None:
    names = [rule.get("alert") for rule in rules]
    assert len(names) == len(set(names)), "alert names repeat"
    for rule in rules:
        assert rule.keys() <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, rule
        assert rule["alert"] and rule["expr"], rule
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert re.fullmatch(r"(\d+[smhd])+", rule.get("for", "0s")), rule["alert"]


def test_dashboard_panels(dashboard: dict[str, Any]) -> None:
    # Every query goes to the data source the dashboard's variable picks (test_alerting.py checks the variable).
    datasource_uid = "${datasource}"
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        targets = panel.get("targets", [])
        assert targets and all(target.get("expr") for target in targets), panel["title"]
        assert len({target["refId"] for target in targets}) == len(targets), panel["title"]
        # A uid of one Grafana's data source leaves the panel with "data source not found" in any other.
        assert panel["datasource"]["uid"] == datasource_uid, panel["title"]
        assert {target["datasource"]["uid"] for target in targets} == {datasource_uid}, panel["title"]


def test_dashboard_stream_variable(dashboard: dict[str, Any]) -> None:
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variable_query(variables["stream"]) == "label_values(eddy_records_in_total, stream)"


# --- How the files refer to each other ----------------------------------------------------------------------


def compose_mounts(service: dict[str, Any]) -> dict[PurePosixPath, Path]:
    """The bind mounts of a compose service (short syntax): container path to host path."""
    mounts = {}
    for volume in service.get("volumes", []):
        host, container = volume.split(":")[:2]
        if host.startswith((".", "/")):
            mounts[PurePosixPath(container)] = (REPO_ROOT / host).resolve()
    return mounts


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """Where ``container_path`` of a compose service comes from on the host, if it is bind-mounted."""
    path = PurePosixPath(container_path)
    for container, host in compose_mounts(service).items():
        if path == container or container in path.parents:
            return host / path.relative_to(container)
    return None


def test_prometheus_mounts_its_config_and_rules(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    assert host_path(prometheus, "/etc/prometheus/prometheus.yml") == PROMETHEUS_CONFIG
    rule_files = load_yaml(PROMETHEUS_CONFIG)["rule_files"]
    loaded = set()
    for pattern in rule_files:
        directory = host_path(prometheus, str(PurePosixPath(pattern).parent))
        assert directory is not None, f"{pattern} is not mounted into prometheus"
        loaded |= set(directory.glob(PurePosixPath(pattern).name))
    assert RULES in loaded


def test_scrape_targets_are_the_eddy_services(compose: dict[str, Any]) -> None:
    # Not scraped: the one-shot topic job (restart "no") and eddy's optional schema registry (a profile).
    eddy_services = {
        name
        for name, service in compose["services"].items()
        if service.get("image") == "eddy:latest" and service.get("restart") != "no" and not service.get("profiles")
    }
    port = re.search(r"EDDY_HTTP_PORT=(\d+)", DOCKERFILE.read_text())
    assert eddy_services and port
    jobs: dict[str, str] = {}
    for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]:
        for static in job["static_configs"]:
            jobs |= {target: job["job_name"] for target in static["targets"]}
    assert jobs == {f"{name}:{port.group(1)}": name for name in eddy_services}


def test_grafana_provisioning(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    assert host_path(grafana, "/etc/grafana/provisioning/datasources/prometheus.yml") == DATASOURCES
    assert host_path(grafana, "/etc/grafana/provisioning/dashboards/eddy.yml") == DASHBOARD_PROVIDERS
    provider = load_yaml(DASHBOARD_PROVIDERS)["providers"][0]
    dashboards = host_path(grafana, provider["options"]["path"])
    assert dashboards is not None and DASHBOARD in dashboards.glob("*.json")
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path(grafana, home) == DASHBOARD
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "true"

    datasource = load_yaml(DATASOURCES)["datasources"][0]
    prometheus_port = compose["services"]["prometheus"]["ports"][0].split(":")[-1]
    assert datasource["url"] == f"http://prometheus:{prometheus_port}"
    # $__rate_interval is derived from timeInterval; it must be the scrape interval.
    assert datasource["jsonData"]["timeInterval"] == load_yaml(PROMETHEUS_CONFIG)["global"]["scrape_interval"]
