"""The Kubernetes manifests (``infra/k8s``), checked offline: no cluster, no Docker engine, no network.

Each overlay is rendered (``tests/deploy_manifests.py``; compared with ``kubectl kustomize`` where kubectl is
installed) and every object is validated: the built-in kinds against the Kubernetes OpenAPI schemas that the
PyPI package kubernetes-validate bundles, KEDA's ScaledObject and TriggerAuthentication against the schema of
KEDA's CRDs as the PyPI package cloudcoil-models-keda carries it (exported to ``infra/k8s/schemas``). Both
validations run with sockets refused, so they need no network, and skip, saying so, only without
kubernetes-validate (or jsonschema, which comes with it).

The remaining checks are eddy's own rules: resources, probes, non-root pods, autoscaling within the
partition count, single writers, network policies, Secrets and every container's environment.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from eddy.contracts.stream import load_contracts
from eddy.core.envconfig import read_env
from eddy.core.settings import REPO_ROOT, Settings
from eddy.core.signing import Keyring, KeyringError, keyring_source
from eddy.core.topics import StreamTopics
from eddy.kafka.acls import principal
from eddy.runtime.auth import KEYS_FILE_ENV, ApiKeys
from eddy.runtime.observability import asks_readiness
from eddy.services.inference.config import InferenceConfig
from eddy.services.schema_registry.config import ENV_DATA_DIR, ENV_HOST, ENV_PORT

from tests.deploy_manifests import (
    K8S_DIR,
    KEDA_SCHEMA_FILE,
    KEDA_SCHEMA_PACKAGE,
    OVERLAYS,
    POD_TEMPLATE_KINDS,
    WORKLOAD_KINDS,
    KustomizeError,
    Resource,
    config_data,
    container_env,
    find,
    keda_schemas,
    keda_schemas_from_package,
    main_container,
    of_kind,
    pod_spec,
    render,
    render_overlay,
    rendered_env,
    resource_id,
    workload_name,
    workload_of,
)

SERVICES = tuple(sorted(p.parent.name for p in (REPO_ROOT / "shared/eddy/services").glob("*/__main__.py")))
# eddy's own schema registry comes with the optional component only.
OPTIONAL_SERVICES = frozenset({"schema_registry"})
SCALABLE = {
    "validation": ("events",),
    "inference": ("validated",),
    "monitoring": ("validated", "predictions", "labeled"),
}
SINGLE_WRITERS_WITH_STATE = ("learning", "model_registry")
HTTP_PORT = 8000
# Inference's prediction API (EDDY_INFERENCE_HTTP_PORT): its own port, beside /healthz and /metrics on HTTP_PORT.
PREDICT_PORT = 8080
INFERENCE_PREFIX = "EDDY_INFERENCE"
# The workloads the ingress controller may reach, and the one port of each it may reach.
HTTP_APIS = {"ingestion": HTTP_PORT, "inference": PREDICT_PORT, "model-registry": HTTP_PORT, "monitoring": HTTP_PORT}
LIVENESS_PATH = "/healthz"
STATE_DIR = "/var/lib/eddy"
EDDY_UID = 10001
KEDA_KINDS = frozenset({"ScaledObject", "TriggerAuthentication"})
# The oldest Kubernetes the manifests are meant for, and the newest the validator knows (removed APIs fail).
OLDEST_KUBERNETES = "1.30"
INGRESS_NAMESPACE = "ingress-nginx"
PROMETHEUS_NAMESPACE = "monitoring"
DNS_POD = {"k8s-app": "kube-dns"}
KEDA_SASL = {"SCRAM-SHA-512": "scram_sha512", "SCRAM-SHA-256": "scram_sha256", "PLAIN": "plaintext"}
# Values that are settings rather than secrets, allowed in the production Secrets as they are.
NOT_SECRET = frozenset({"sasl", "tls", "EDDY_KAFKA_SASL_USERNAME"})
PLACEHOLDER = "REPLACE_ME"
# The services that sign or verify models and checkpoints: they, and only they, mount the signing keyring.
MODEL_SERVICES = ("learning", "inference", "retraining", "model_registry")
SIGNING_SECRET = "eddy-signing-keys"
SIGNING_KEY = "signing-keys.json"
# The variables eddy's own schema registry reads (it has no Settings of its own kind).
SCHEMA_REGISTRY_ENV = (ENV_HOST, ENV_PORT, ENV_DATA_DIR)


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def objects(overlay: str) -> list[Resource]:
    return render_overlay(overlay)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse every connection and name lookup: what runs under this fixture works offline."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the offline validation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def config(objects: list[Resource]) -> dict[str, str]:
    data = config_data(objects, "ConfigMap", "eddy-config")
    assert data is not None, "no ConfigMap eddy-config"
    return data


def pod_templates(objects: list[Resource]) -> list[Resource]:
    return of_kind(objects, *POD_TEMPLATE_KINDS)


def deployed_services(objects: list[Resource]) -> list[str]:
    names = {w["metadata"]["name"] for w in of_kind(objects, *WORKLOAD_KINDS)}
    return [s for s in SERVICES if s.replace("_", "-") in names]


def quantity(text: str | int) -> float:
    """A Kubernetes quantity (``250m``, ``1``, ``512Mi``, ``1G``) as a number."""
    suffixes = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text))
    assert match and match.group(2) in suffixes, f"not a quantity: {text!r}"
    return float(match.group(1)) * suffixes[match.group(2)]


def minor(kubernetes_version: str) -> tuple[int, int]:
    """``1.30`` or ``1.30.0`` as (1, 30), for ordering."""
    major, minor_version = kubernetes_version.split(".")[:2]
    return int(major), int(minor_version)


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions In/NotIn/Exists/DoesNotExist) matches ``labels``."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


def pod_labels(resource: Resource) -> dict[str, str]:
    labels: dict[str, str] = resource["spec"]["template"]["metadata"]["labels"]
    return labels


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port, by number or by the container port's name."""
    if isinstance(port, int):
        return port
    return int(next(p["containerPort"] for p in container.get("ports", []) if p.get("name") == port))


def mounted_file(objects: list[Resource], resource: Resource, container: dict[str, Any], path: str) -> str | None:
    """The content of the file at ``path`` in ``container``, from a Secret or ConfigMap volume; None if absent."""
    volumes = {v["name"]: v for v in pod_spec(resource).get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        volume = volumes[mount["name"]]
        kind, source, name_key = (
            ("Secret", volume["secret"], "secretName")
            if "secret" in volume
            else ("ConfigMap", volume.get("configMap"), "name")
        )
        if source is None:
            return None
        data = config_data(objects, kind, source[name_key]) or {}
        paths = {item["path"]: item["key"] for item in source.get("items", [])} or {k: k for k in data}
        key = paths.get(path[len(prefix) :])
        return data.get(key) if key is not None else None
    return None


def namespace_peers(rule_peers: list[dict[str, Any]]) -> set[str]:
    """The namespace names a policy rule's peers select by ``kubernetes.io/metadata.name``."""
    names = set()
    for peer in rule_peers:
        labels = (peer.get("namespaceSelector") or {}).get("matchLabels") or {}
        if "kubernetes.io/metadata.name" in labels:
            names.add(labels["kubernetes.io/metadata.name"])
    return names


def policies_for(objects: list[Resource], labels: dict[str, str], policy_type: str) -> list[dict[str, Any]]:
    return [
        p["spec"]
        for p in of_kind(objects, "NetworkPolicy")
        if policy_type in p["spec"].get("policyTypes", []) and selects(p["spec"]["podSelector"], labels)
    ]


def peer_admits(peer: dict[str, Any], own_namespace: str, namespace: str, pod: dict[str, str] | None) -> bool:
    """Whether a policy peer covers pods labelled ``pod`` (None: every pod) in ``namespace``."""
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        namespace_ok = selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
    else:
        namespace_ok = namespace == own_namespace
    pod_selector = peer.get("podSelector") or {}
    pod_ok = not pod_selector or (pod is not None and selects(pod_selector, pod))
    return namespace_ok and pod_ok


def egress_allows(
    objects: list[Resource],
    workload: Resource,
    port: int,
    *,
    namespace: str | None = None,
    pod: dict[str, str] | None = None,
    protocol: str = "TCP",
) -> bool:
    """Whether ``workload``'s pods may reach ``port`` of pods labelled ``pod`` (None: any) in ``namespace``.

    ``namespace`` None means the workload's own.
    """
    own = workload["metadata"].get("namespace", "")
    for spec in policies_for(objects, pod_labels(workload), "Egress"):
        for rule in spec.get("egress", []):
            ports = {(p.get("protocol", "TCP"), p.get("port")) for p in rule.get("ports", [])}
            if ports and (protocol, port) not in ports:
                continue
            peers = rule.get("to") or [{"namespaceSelector": {}}]
            if any(peer_admits(peer, own, namespace or own, pod) for peer in peers):
                return True
    return False


def host_port(address: str, default_port: int) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    return (host, int(port)) if sep else (address, default_port)


def check_egress_to(objects: list[Resource], workload: Resource, host: str, port: int, what: str) -> None:
    """``workload``'s pods may reach ``host:port``: a Service of the namespace, or ``NAME.NAMESPACE.svc...``."""
    name = workload["metadata"]["name"]
    service = find(objects, "Service", host)
    if service is not None:
        target = next(p for p in service["spec"]["ports"] if p["port"] == port)["targetPort"]
        backends = [
            w
            for w in of_kind(objects, *WORKLOAD_KINDS)
            if selects({"matchLabels": service["spec"]["selector"]}, pod_labels(w))
        ]
        assert len(backends) == 1, f"{what}: Service {host} selects {len(backends)} workloads"
        pod_port = container_port(main_container(backends[0]), target)
        assert egress_allows(objects, workload, pod_port, pod=pod_labels(backends[0])), f"{name}: no egress to {what}"
        return
    parts = host.split(".")
    assert len(parts) >= 3 and parts[2] == "svc", f"{what}: {host} is neither a Service here nor NAME.NAMESPACE.svc"
    assert egress_allows(objects, workload, port, namespace=parts[1]), f"{name}: no egress to {what} {host}:{port}"


def ingress_ports(objects: list[Resource], workload: Resource, namespace: str) -> set[int]:
    """The ports of ``workload``'s pods that the policies open to every pod of ``namespace``."""
    ports = set()
    for spec in policies_for(objects, pod_labels(workload), "Ingress"):
        for rule in spec.get("ingress", []):
            if namespace in namespace_peers(rule["from"]):
                ports |= {int(p["port"]) for p in rule["ports"]}
    return ports


def secret_target(objects: list[Resource], auth: Resource) -> dict[str, str]:
    """A TriggerAuthentication's parameters, resolved from the Secrets they name."""
    resolved = {}
    for ref in auth["spec"].get("secretTargetRef", []):
        data = config_data(objects, "Secret", ref["name"])
        assert data is not None and ref["key"] in data, f"{auth['metadata']['name']}: {ref} names a missing Secret key"
        resolved[ref["parameter"]] = data[ref["key"]]
    return resolved


def normalized(resource: Resource) -> Resource:
    """``resource`` with Secret data decoded: kustomize wraps long base64 lines, the API server does not care."""
    if resource["kind"] == "Secret" and resource.get("data"):
        resource = {**resource, "data": {k: base64.b64decode(v).decode() for k, v in resource["data"].items()}}
    return resource


def validation_errors(validator: Any, resource: Resource) -> list[str]:
    """Readable messages: for anyOf/oneOf failures, the deepest reason rather than "not valid under any"."""
    import jsonschema

    messages = []
    for error in validator.iter_errors(resource):
        best = jsonschema.exceptions.best_match([error])
        while best.context:
            best = jsonschema.exceptions.best_match(best.context)
        path = ".".join(str(p) for p in best.absolute_path)
        messages.append(f"{resource['kind']}/{resource['metadata']['name']}: {path}: {best.message}")
    return messages


def closed(schema: Any) -> Any:
    """Forbid properties a schema does not list (kubernetes-validate's strict mode does the same).

    The API server prunes unknown fields of a structural CRD silently, so a misspelt field would vanish
    rather than fail; here it fails.
    """
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            closed(value)
    elif isinstance(schema, list):
        for value in schema:
            closed(value)
    return schema


# --- rendering -------------------------------------------------------------------------------------------


def test_every_service_runs_once_with_its_own_entrypoint(overlay: str, objects: list[Resource]) -> None:
    for service in SERVICES:
        name = service.replace("_", "-")
        found = [w for w in of_kind(objects, *WORKLOAD_KINDS) if w["metadata"]["name"] == name]
        if service in OPTIONAL_SERVICES and not found:
            continue
        assert len(found) == 1, f"{overlay}: {len(found)} workloads run {service}"
        assert main_container(found[0])["args"] == [service], f"{overlay}: {name} does not run eddy.services.{service}"
    assert overlay != "dev" or "schema_registry" in deployed_services(objects), "dev includes eddy's own registry"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its built-in kustomize) is not installed")
def test_renderer_matches_kubectl_kustomize(overlay: str, objects: list[Resource]) -> None:
    done = subprocess.run(
        ["kubectl", "kustomize", str(K8S_DIR / "overlays" / overlay)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    theirs = {resource_id(r): normalized(r) for r in yaml.safe_load_all(done.stdout) if r}
    mine = {resource_id(r): normalized(r) for r in objects}
    assert sorted(mine) == sorted(theirs)
    for key, resource in mine.items():
        assert resource == theirs[key], f"{overlay}: {key} renders differently from kubectl kustomize"


def test_renderer_refuses_what_it_does_not_render(tmp_path: Path) -> None:
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n")
    cases = {
        "replicas: [{name: c, count: 2}]": "replicas",
        "patches: [{patch: '{apiVersion: v1, kind: ConfigMap, metadata: {name: c}, data: {l: [1]}}'}]": "list",
        "labels: [{pairs: {a: b}, includeSelectors: true}]": "includeSelectors",
        "configMapGenerator: [{name: g, literals: [a=b]}]": "hashed",
        "patches: [{patch: '[{op: move, from: /data, path: /x}]', target: {kind: ConfigMap}}]": "move",
        "patches: [{patch: '[{op: remove, path: /data}]', target: {kind: Secret}}]": "no object",
    }
    for text, reason in cases.items():
        (tmp_path / "kustomization.yaml").write_text(f"resources: [cm.yaml]\n{text}\n")
        with pytest.raises(KustomizeError, match=reason):
            render(tmp_path)


def test_renderer_applies_patches_and_env_precedence(tmp_path: Path) -> None:
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {A: base, B: b}\n")
    (tmp_path / "kustomization.yaml").write_text(
        "namespace: n\nresources: [cm.yaml]\n"
        "generatorOptions: {disableNameSuffixHash: true}\n"
        "secretGenerator: [{name: s, literals: [B=secret, C=c]}]\n"
        "patches:\n"
        "  - patch: '{apiVersion: v1, kind: ConfigMap, metadata: {name: c}, data: {A: patched}}'\n"
        "  - {patch: '[{op: add, path: /data/D, value: d}]', target: {kind: ConfigMap, name: c}}\n"
    )
    objects = render(tmp_path)
    assert {o["metadata"]["namespace"] for o in objects} == {"n"}
    container = {
        "name": "x",
        "envFrom": [{"configMapRef": {"name": "c"}}, {"secretRef": {"name": "s"}}],
        "env": [
            {"name": "E", "value": "$(A)-$$(A)"},
            {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "D"}}},
        ],
    }
    assert container_env(objects, container) == {"A": "patched", "B": "secret", "C": "d", "D": "d", "E": "patched-$(A)"}


# --- schemas (offline) -----------------------------------------------------------------------------------


def test_objects_validate_against_the_kubernetes_openapi_schemas(objects: list[Resource], no_network: None) -> None:
    validator = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (pip install kubernetes-validate)"
    )
    bundled = validator.utils.all_versions()
    # A later kubernetes-validate may no longer bundle OLDEST_KUBERNETES: then its oldest stands in.
    oldest = OLDEST_KUBERNETES if minor(bundled[0]) <= minor(OLDEST_KUBERNETES) else bundled[0]
    versions = sorted({oldest, bundled[-1]}, key=minor)
    errors = []
    for resource in objects:
        if resource["kind"] in KEDA_KINDS:
            continue
        for version in versions:
            try:
                validator.validate(resource, version, strict=True)
            except validator.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                errors.append(f"{version} {resource['kind']}/{resource['metadata']['name']}: {path}: {exc.message}")
            except validator.SchemaNotFoundError as exc:
                errors.append(f"{version}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_keda_objects_validate_against_kedas_crd_schema(objects: list[Resource], no_network: None) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (a dependency of kubernetes-validate) is missing")
    schemas = keda_schemas()
    keda_objects = [o for o in objects if o["apiVersion"].startswith("keda.sh/")]
    assert {o["kind"] for o in keda_objects} == KEDA_KINDS
    errors = []
    for resource in keda_objects:
        validator = jsonschema.Draft202012Validator(closed(copy.deepcopy(schemas[resource["kind"]])))
        errors += validation_errors(validator, resource)
    assert not errors, "\n".join(errors)


def test_keda_schema_is_what_its_package_exports() -> None:
    try:
        exported = keda_schemas_from_package()
    except ImportError:
        pytest.skip(f"{KEDA_SCHEMA_PACKAGE} is not installed: the exported schema is not compared with it")
    assert exported == keda_schemas(), (
        f"{KEDA_SCHEMA_FILE} differs from {KEDA_SCHEMA_PACKAGE}: "
        "python -c 'from tests.deploy_manifests import write_keda_schemas; write_keda_schemas()'"
    )


def test_closed_keda_schema_refuses_misspelt_and_mistyped_fields() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (a dependency of kubernetes-validate) is missing")
    validator = jsonschema.Draft202012Validator(closed(copy.deepcopy(keda_schemas()["ScaledObject"])))
    scaled_object = copy.deepcopy(find(render_overlay("production"), "ScaledObject", "inference"))
    assert scaled_object is not None and not validation_errors(validator, scaled_object)
    scaled_object["spec"]["maxReplicaCount"] = "12"
    scaled_object["spec"]["triggers"][0]["authenticationRef"]["nmae"] = "eddy-kafka"
    del scaled_object["spec"]["scaleTargetRef"]
    messages = "\n".join(validation_errors(validator, scaled_object))
    assert "maxReplicaCount" in messages and "nmae" in messages and "scaleTargetRef" in messages, messages


# --- workloads -------------------------------------------------------------------------------------------


def test_pods_are_sized_probed_and_unprivileged(overlay: str, objects: list[Resource]) -> None:
    http_port = int(config(objects)["EDDY_HTTP_PORT"])
    assert http_port == HTTP_PORT
    for resource in pod_templates(objects):
        name = f"{overlay} {resource['kind']}/{resource['metadata']['name']}"
        pod = pod_spec(resource)
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] == EDDY_UID, name
        assert security["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod.get("automountServiceAccountToken") is False, name
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), name
        assert all("hostPath" not in v for v in pod.get("volumes", [])), name
        for container in pod["containers"]:
            resources = container["resources"]
            for kind in ("cpu", "memory"):
                request, limit = resources["requests"][kind], resources["limits"][kind]
                assert quantity(request) <= quantity(limit), f"{name}: {kind} request above its limit"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"] and not context["capabilities"].get("add"), name
            assert context.get("runAsNonRoot", True) is True and context.get("runAsUser", EDDY_UID) == EDDY_UID, name
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}, f"{name}: no writable /tmp"
            if resource["kind"] == "Job":
                continue
            assert container["image"].split("@")[0].rsplit(":", 1)[0].endswith("eddy"), name
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                check = container[probe]["httpGet"]
                assert container_port(container, check["port"]) == http_port, f"{name}: {probe} port"
            # Liveness (and startup) pass while a service starts; readiness only once it works.
            assert container["livenessProbe"]["httpGet"]["path"] == LIVENESS_PATH, name
            assert container["startupProbe"]["httpGet"]["path"] == LIVENESS_PATH, name
            path, _, query = container["readinessProbe"]["httpGet"]["path"].partition("?")
            assert path == LIVENESS_PATH and asks_readiness(query), f"{name}: readiness probe asks liveness"
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert STATE_DIR in mounts, f"{name}: EDDY_STATE_DIR is not writable"


def test_production_pins_the_image() -> None:
    for resource in pod_templates(render_overlay("production")):
        for container in pod_spec(resource)["containers"]:
            image = container["image"]
            assert "@" in image or (":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")), image


def test_scalable_services_scale_on_lag_within_the_partition_count(overlay: str, objects: list[Resource]) -> None:
    settings = config(objects)
    partitions = int(settings["EDDY_PARTITIONS"])
    streams = sorted(load_contracts(REPO_ROOT / "schemas" / "streams"))
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in of_kind(objects, "ScaledObject")}
    assert set(scaled) == set(SCALABLE), f"{overlay}: ScaledObjects target {sorted(scaled)}"
    for service, kinds in SCALABLE.items():
        workload = workload_of(objects, service)
        assert workload["kind"] == "Deployment" and "replicas" not in workload["spec"], f"{service}: KEDA owns replicas"
        scaled_object = scaled[service]["spec"]
        assert scaled_object["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        # A consumer group gives each partition to one member: replicas beyond EDDY_PARTITIONS would idle.
        replicas = (scaled_object["minReplicaCount"], scaled_object["maxReplicaCount"])
        assert 1 <= replicas[0] <= replicas[1] <= partitions, (
            f"{overlay} {service}: min/maxReplicaCount {replicas} must lie within 1..EDDY_PARTITIONS={partitions}"
        )
        wanted_topics = {getattr(StreamTopics(stream), kind) for stream in streams for kind in kinds}
        topics = set()
        for trigger in scaled_object["triggers"]:
            metadata = trigger["metadata"]
            assert trigger["type"] == "kafka", service
            assert metadata["bootstrapServers"] == settings["EDDY_BOOTSTRAP_SERVERS"], f"{overlay} {service}"
            assert metadata["consumerGroup"] == f"{settings['EDDY_GROUP_PREFIX']}-{service}", service
            assert int(metadata["lagThreshold"]) > 0, service
            assert metadata.get("offsetResetPolicy", "latest") == "earliest", f"{service}: eddy resets to earliest"
            topics.add(metadata["topic"])
            assert find(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"]) is not None
        assert topics == wanted_topics, f"{overlay} {service}: triggers on {sorted(topics)}"


def test_pod_disruption_budgets_cover_the_replicated_services_and_allow_drains(objects: list[Resource]) -> None:
    budgets = of_kind(objects, "PodDisruptionBudget")
    for workload in of_kind(objects, *WORKLOAD_KINDS):
        name = workload["metadata"]["name"]
        covering = [b["spec"] for b in budgets if selects(b["spec"]["selector"], pod_labels(workload))]
        replicated = name in SCALABLE or workload["spec"].get("replicas", 1) > 1
        assert len(covering) == (1 if replicated else 0), f"{name}: {len(covering)} budgets"
        for budget in covering:
            assert budget.get("maxUnavailable", 0) >= 1, f"{name}: a budget must let a drain evict a replica"


def test_learner_and_model_registry_are_single_writers_with_a_volume(objects: list[Resource]) -> None:
    assert config(objects)["EDDY_STATE_DIR"] == STATE_DIR
    for service in SINGLE_WRITERS_WITH_STATE:
        workload = workload_of(objects, service)
        assert workload["kind"] == "StatefulSet" and workload["spec"]["replicas"] == 1, service
        claims = {c["metadata"]["name"] for c in workload["spec"]["volumeClaimTemplates"]}
        mounts = {m["mountPath"]: m["name"] for m in main_container(workload)["volumeMounts"]}
        assert mounts.get(STATE_DIR) in claims, f"{service}: EDDY_STATE_DIR is not on its volume claim"
        assert rendered_env_in(objects, workload)["EDDY_STATE_DIR"] == STATE_DIR
    retraining = workload_of(objects, "retraining")
    assert retraining["spec"]["replicas"] == 1 and retraining["spec"]["strategy"]["type"] == "Recreate"
    targets = {s["spec"]["scaleTargetRef"]["name"] for s in of_kind(objects, "ScaledObject", "HorizontalPodAutoscaler")}
    assert not targets & {"learning", "model-registry", "retraining"}


def rendered_env_in(objects: list[Resource], workload: Resource) -> dict[str, str]:
    return container_env(objects, main_container(workload))


def test_inference_serves_predictions_on_the_port_its_env_names(overlay: str, objects: list[Resource]) -> None:
    workload = workload_of(objects, "inference")
    container = main_container(workload)
    env = rendered_env("inference", overlay)
    predict_port = read_env(InferenceConfig, env).http_port
    # 0 (the default) would be any free port, which no Service could route to.
    assert predict_port == PREDICT_PORT != int(env["EDDY_HTTP_PORT"]), f"{overlay}: prediction API on {predict_port}"
    # The API binds the service's HTTP host: every interface, so the Service reaches it.
    assert Settings.from_env(env).http_host == "0.0.0.0"
    assert container_port(container, "predict") == predict_port, f"{overlay}: no container port named predict"
    service = find(objects, "Service", "inference")
    assert service is not None and selects({"matchLabels": service["spec"]["selector"]}, pod_labels(workload))
    routed = {container_port(container, p["targetPort"]) for p in service["spec"]["ports"]}
    assert predict_port in routed, f"{overlay}: the Service inference does not route the prediction API"
    assert predict_port in ingress_ports(objects, workload, INGRESS_NAMESPACE), f"{overlay}: ingress cannot reach it"


# --- network ---------------------------------------------------------------------------------------------


def test_network_policies_deny_by_default_and_open_only_http(overlay: str, objects: list[Resource]) -> None:
    policies = [p["spec"] for p in of_kind(objects, "NetworkPolicy")]
    deny = [p for p in policies if p["podSelector"] == {} and not p.get("ingress") and not p.get("egress")]
    assert deny and {"Ingress", "Egress"} <= set(deny[0]["policyTypes"]), f"{overlay}: no default-deny policy"
    for spec in policies:
        for rule in spec.get("ingress", []):
            assert rule.get("from"), "an ingress rule without `from` admits everyone"
            ports = {(p.get("protocol", "TCP"), p["port"]) for p in rule["ports"]}
            assert ports in ({("TCP", HTTP_PORT)}, {("TCP", PREDICT_PORT)}), f"{overlay}: ingress to {sorted(ports)}"
    settings = config(objects)
    kafka_hosts = [host_port(a.strip(), 9092) for a in settings["EDDY_BOOTSTRAP_SERVERS"].split(",")]
    registry = urlsplit(settings["EDDY_SCHEMA_REGISTRY_URL"])
    registry_port = registry.port or (443 if registry.scheme == "https" else 80)
    for workload in of_kind(objects, *POD_TEMPLATE_KINDS):
        name, labels = workload["metadata"]["name"], pod_labels(workload)
        sources = set()
        for spec in policies_for(objects, labels, "Ingress"):
            for rule in spec.get("ingress", []):
                sources |= namespace_peers(rule["from"])
        if workload["kind"] != "Job":
            assert PROMETHEUS_NAMESPACE in sources, f"{name}: Prometheus cannot scrape it"
            assert ingress_ports(objects, workload, PROMETHEUS_NAMESPACE) == {HTTP_PORT}, f"{name}: scrape ports"
        assert (INGRESS_NAMESPACE in sources) == (name in HTTP_APIS), f"{name}: ingress from {sorted(sources)}"
        expected_api = {HTTP_APIS[name]} if name in HTTP_APIS else set()
        assert ingress_ports(objects, workload, INGRESS_NAMESPACE) == expected_api, f"{name}: ingress ports"
        if name == "schema-registry":
            continue
        for protocol in ("UDP", "TCP"):
            dns = egress_allows(objects, workload, 53, namespace="kube-system", pod=DNS_POD, protocol=protocol)
            assert dns, f"{name}: no DNS over {protocol}"
        for host, port in kafka_hosts:
            check_egress_to(objects, workload, host, port, "Kafka")
        check_egress_to(objects, workload, registry.hostname or "", registry_port, "the schema registry")


# --- configuration and secrets ---------------------------------------------------------------------------


def test_every_container_gets_kafka_registry_and_security_settings(
    overlay: str, objects: list[Resource], tmp_path: Path
) -> None:
    for resource in pod_templates(objects):
        for container in pod_spec(resource)["containers"]:
            name = f"{overlay} {resource['metadata']['name']}/{container['name']}"
            env = container_env(objects, container)
            for variable in ("EDDY_BOOTSTRAP_SERVERS", "EDDY_SCHEMA_REGISTRY_URL", "EDDY_KAFKA_SECURITY_PROTOCOL"):
                assert env.get(variable), f"{name}: {variable} is not set"
            settings = Settings.from_env(env)  # refuses security settings no client could connect with
            if settings.kafka_security_protocol.startswith("SASL_"):
                assert env.get("EDDY_KAFKA_SASL_MECHANISM"), f"{name}: SASL without an explicit mechanism"
            for variable in ("EDDY_KAFKA_SSL_CA_LOCATION", "EDDY_SCHEMA_REGISTRY_CA_LOCATION"):
                if env.get(variable):
                    content = mounted_file(objects, resource, container, env[variable])
                    assert content and "BEGIN CERTIFICATE" in content, f"{name}: {variable} names no mounted CA"
            if settings.kafka_security_protocol.endswith("SSL"):
                assert env.get("EDDY_KAFKA_SSL_CA_LOCATION"), f"{name}: TLS to Kafka without the cluster's CA"
            if urlsplit(settings.schema_registry_url).scheme == "https":
                assert env.get("EDDY_SCHEMA_REGISTRY_CA_LOCATION"), f"{name}: https registry without its CA"
            keys_file = env.get("EDDY_API_KEYS_FILE")
            if keys_file:
                content = mounted_file(objects, resource, container, keys_file)
                assert content is not None, f"{name}: EDDY_API_KEYS_FILE names no mounted file"
                keys_copy = tmp_path / "api-keys"
                keys_copy.write_text(content)
                assert ApiKeys.from_env({KEYS_FILE_ENV: str(keys_copy)}).enabled, name


def test_kedas_kafka_authentication_matches_eddys(overlay: str, objects: list[Resource]) -> None:
    env = rendered_env("validation", overlay)
    protocol = env["EDDY_KAFKA_SECURITY_PROTOCOL"]
    for auth in of_kind(objects, "TriggerAuthentication"):
        parameters = secret_target(objects, auth)
        if protocol.startswith("SASL_"):
            assert parameters["sasl"] == KEDA_SASL[env["EDDY_KAFKA_SASL_MECHANISM"]]
            # Its own principal: it reads consumer lag, never records (eddy.kafka.acls).
            assert parameters["username"] == principal("KEDA lag scaler").name
            assert parameters["password"]
        else:
            assert parameters.get("sasl", "none") == "none"
        if protocol.endswith("SSL"):
            workload = workload_of(objects, "validation")
            ca = mounted_file(objects, workload, main_container(workload), env["EDDY_KAFKA_SSL_CA_LOCATION"])
            assert parameters["tls"] == "enable" and parameters["ca"] == ca
        else:
            assert parameters.get("tls", "disable") == "disable"


# The principal each workload runs as (eddy.kafka.acls); the Job creates the topics.
WORKLOAD_ROLES = {"create-topics": "topics job", "model-registry": "model_registry"}


def test_each_workload_runs_as_its_own_kafka_principal(overlay: str, objects: list[Resource]) -> None:
    users = {}
    for workload in of_kind(objects, *POD_TEMPLATE_KINDS):
        name = workload["metadata"]["name"]
        if name == "schema-registry":  # eddy's own registry: no Kafka client
            continue
        env = rendered_env_in(objects, workload)
        role = WORKLOAD_ROLES.get(name, name)
        assert env.get("EDDY_KAFKA_SASL_USERNAME") == principal(role).name, f"{overlay} {name}"
        users[name] = env["EDDY_KAFKA_SASL_USERNAME"]
        if overlay == "production":
            assert env.get("EDDY_KAFKA_SASL_PASSWORD"), f"{name}: no password for its principal"
    assert len(set(users.values())) == len(users), users


def test_keda_scales_only_groups_its_principal_may_describe(objects: list[Resource]) -> None:
    keda = principal("KEDA lag scaler")
    prefix = config(objects).get("EDDY_GROUP_PREFIX", "eddy")
    allowed = {g.replace("{prefix}", prefix) for g in keda.group_describes}
    groups = {t["metadata"]["consumerGroup"] for s in of_kind(objects, "ScaledObject") for t in s["spec"]["triggers"]}
    assert groups and groups <= allowed, sorted(groups - allowed)


def test_rendered_env_builds_every_services_settings(overlay: str, objects: list[Resource]) -> None:
    settings_map = config(objects)
    for service in deployed_services(objects):
        settings = Settings.from_env(rendered_env(service, overlay))
        assert settings.bootstrap_servers == settings_map["EDDY_BOOTSTRAP_SERVERS"], service
        assert settings.schema_registry_url == settings_map["EDDY_SCHEMA_REGISTRY_URL"], service
        assert settings.kafka_security_protocol == settings_map["EDDY_KAFKA_SECURITY_PROTOCOL"], service
        assert (settings.http_host, settings.http_port) == ("0.0.0.0", HTTP_PORT), service
        assert settings.state_dir == Path(STATE_DIR), service
        assert settings.partitions == int(settings_map["EDDY_PARTITIONS"]), service
        assert settings.pii_key, f"{service}: no EDDY_PII_KEY"
    assert rendered_env("model_registry", overlay) == rendered_env("model-registry", overlay)


def test_production_secrets_are_placeholders_and_no_secret_is_real() -> None:
    for overlay in OVERLAYS:
        for secret in of_kind(render_overlay(overlay), "Secret"):
            values = config_data([secret], "Secret", secret["metadata"]["name"]) or {}
            for key, value in values.items():
                assert "PRIVATE KEY" not in value, f"{overlay}: {secret['metadata']['name']}.{key}"
                if overlay == "production" and key not in NOT_SECRET:
                    assert PLACEHOLDER in value, f"production {secret['metadata']['name']}.{key} is not a placeholder"


def test_secrets_reach_pods_only_through_references(objects: list[Resource]) -> None:
    """No credential is written into a pod template: env values are never a Secret's value."""
    secret_values = {
        v
        for s in of_kind(objects, "Secret")
        for v in (config_data([s], "Secret", s["metadata"]["name"]) or {}).values()
        if len(v) > 8
    }
    for resource in pod_templates(objects):
        for container in pod_spec(resource)["containers"]:
            literal = {str(v["value"]) for v in container.get("env", []) if "value" in v}
            assert not literal & secret_values, resource["metadata"]["name"]


def variable_names(node: Any) -> Iterator[str]:
    """Every EDDY_* name in ``node``'s keys and string values, recursively."""
    if isinstance(node, str):
        yield from re.findall(r"\bEDDY_[A-Z0-9_]+\b", node)
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from variable_names(key)
            yield from variable_names(value)
    elif isinstance(node, list):
        for value in node:
            yield from variable_names(value)


def test_manifests_name_only_variables_eddy_reads() -> None:
    """Every EDDY_* variable in the manifests is one eddy reads: a misspelt one would be silently ignored."""
    known = {f.metadata["env"] for f in dataclasses.fields(Settings)} | {KEYS_FILE_ENV, *SCHEMA_REGISTRY_ENV}
    known |= {f"{INFERENCE_PREFIX}_{f.name.upper()}" for f in dataclasses.fields(InferenceConfig)}
    named = set()
    for overlay in OVERLAYS:
        for resource in render_overlay(overlay):
            named |= set(variable_names(normalized(resource)))
    assert named and named <= known, sorted(named - known)


def test_model_services_share_the_signing_keyring_from_a_secret(
    overlay: str, objects: list[Resource], tmp_path: Path
) -> None:
    """Learning, inference, retraining and the registry read one keyring file, mounted from eddy-signing-keys."""
    model_workloads = {workload_name(service) for service in MODEL_SERVICES}
    assert model_workloads <= {w["metadata"]["name"] for w in of_kind(objects, *WORKLOAD_KINDS)}
    keyrings = set()
    for resource in pod_templates(objects):
        name = resource["metadata"]["name"]
        spec = pod_spec(resource)
        signing_volumes = {
            v["name"] for v in spec.get("volumes", []) if v.get("secret", {}).get("secretName") == SIGNING_SECRET
        }
        container = main_container(resource)
        env = container_env(objects, container)
        if name not in model_workloads:
            assert not signing_volumes, f"{name} mounts the signing keyring, which it never reads"
            assert "EDDY_SIGNING_KEYS_FILE" not in env, name
            continue
        mounts = [m for m in container.get("volumeMounts", []) if m["name"] in signing_volumes]
        assert len(mounts) == 1 and mounts[0].get("readOnly") is True, f"{name}: {mounts}"
        path = env.get("EDDY_SIGNING_KEYS_FILE", "")
        assert path == f"{mounts[0]['mountPath'].rstrip('/')}/{SIGNING_KEY}", f"{name}: {path!r} is not in the mount"
        assert Settings.from_env(env).signing_keys_file == path and not env.get("EDDY_SIGNING_KEYS"), name
        content = mounted_file(objects, resource, container, path)
        assert content is not None, f"{name}: nothing mounted at {path}"
        keyrings.add(content)
    assert len(keyrings) == 1, "the model services read different keyrings"
    (content,) = keyrings
    if overlay == "production":
        # A placeholder a service refuses: nothing signs with a key from the repository.
        assert PLACEHOLDER in content
        with pytest.raises(KeyringError):
            Keyring.from_json(content, SIGNING_SECRET)
    else:
        keyring_file = tmp_path / SIGNING_KEY
        keyring_file.write_text(content)
        source = keyring_source("", str(keyring_file), tmp_path / "state")
        assert source.verify(b"model", source.sign(b"model")) == source.current().active
        assert source.current().active.startswith("dev-only"), "the committed keyring must say it is for dev only"


def test_no_secret_is_mounted_with_subpath(objects: list[Resource]) -> None:
    """A subPath mount never sees a Secret's update, so a rotated keyring (or API key) would not reach the pod."""
    for resource in pod_templates(objects):
        spec = pod_spec(resource)
        for container in spec["containers"] + spec.get("initContainers", []):
            for mount in container.get("volumeMounts", []):
                assert not {"subPath", "subPathExpr"} & mount.keys(), f"{resource['metadata']['name']}: {mount}"
