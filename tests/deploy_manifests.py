"""The Kubernetes manifests of ``infra/k8s``, rendered offline, and what a container would see.

No kustomize package installs from PyPI or Debian, so :func:`render` is a small kustomize of its own that
renders exactly the features the manifests use, and refuses every other one (:class:`KustomizeError`)
rather than render it wrongly:

- ``resources`` (files and kustomization directories) and ``components`` (``kind: Component``);
- ``configMapGenerator`` and ``secretGenerator`` with ``literals`` and ``files``, only with
  ``disableNameSuffixHash`` (no hashed names, so no reference rewriting), plus the generator labels;
- ``patches``: strategic-merge patches of maps and scalars (a list in one is refused: its merge depends on
  the field's merge key) and JSON 6902 patches (``add``, ``replace``, ``remove``), selected by the patch's
  own kind and name or by a ``target`` of group, version, kind and exact name;
- ``namespace``, ``labels`` (metadata labels only: no selectors, no templates) and ``images``.

Where ``kubectl`` is installed, ``tests/unit/deploy/test_k8s_manifests.py`` checks that this renders the same
objects as ``kubectl kustomize``.

KEDA's CRDs are not among the Kubernetes OpenAPI schemas. Their schema comes from the PyPI package
cloudcoil-models-keda (pydantic models generated from KEDA's CRDs), exported once by
:func:`write_keda_schemas` into ``infra/k8s/schemas/`` so the tests need neither that package nor its
pytest plugin; where the package is installed a test checks that the file is still what it exports.

:func:`rendered_env` is the environment of a service's container: its ``envFrom`` ConfigMaps and Secrets
and its ``env``, resolved from the rendered objects, in Kubernetes' order of precedence.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import re
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml
from eddy.core.settings import REPO_ROOT

K8S_DIR = REPO_ROOT / "infra" / "k8s"
OVERLAYS = ("dev", "production")
KEDA_SCHEMA_FILE = K8S_DIR / "schemas" / "keda.sh-v1alpha1.json"
KEDA_SCHEMA_PACKAGE = "cloudcoil-models-keda"
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
POD_TEMPLATE_KINDS = (*WORKLOAD_KINDS, "Job")
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# Kinds the namespace transformer leaves alone (those of the manifests, and the common others).
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "ClusterTriggerAuthentication",
    }
)
SUPPORTED_FIELDS = frozenset(
    {
        "apiVersion",
        "kind",
        "resources",
        "components",
        "namespace",
        "labels",
        "images",
        "patches",
        "configMapGenerator",
        "secretGenerator",
        "generatorOptions",
    }
)
_VARIABLE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")

Resource = dict[str, Any]


class KustomizeError(ValueError):
    """A kustomization this renderer cannot render faithfully, or one kustomize itself would refuse."""


def render(directory: Path) -> list[Resource]:
    """Render the kustomization in ``directory`` like ``kubectl kustomize`` (the supported features only).

    Parameters
    ----------
    directory : Path
        A directory holding a ``kustomization.yaml`` of kind ``Kustomization``.

    Returns
    -------
    list of dict
        The rendered objects.
    """
    kustomization = _load_kustomization(directory)
    if kustomization.get("kind", "Kustomization") != "Kustomization":
        raise KustomizeError(f"{directory}: a {kustomization['kind']} is used through `components`, not rendered")
    return _build(directory, kustomization, [])


@functools.cache
def _render_overlay(overlay: str) -> tuple[Resource, ...]:
    if overlay not in OVERLAYS:
        raise KeyError(f"unknown overlay {overlay!r}; known: {', '.join(OVERLAYS)}")
    return tuple(render(K8S_DIR / "overlays" / overlay))


def render_overlay(overlay: str) -> list[Resource]:
    """The objects of ``infra/k8s/overlays/<overlay>`` (a fresh copy: callers may change them)."""
    return copy.deepcopy(list(_render_overlay(overlay)))


def resource_id(resource: Resource) -> tuple[str, str, str, str]:
    """(apiVersion, kind, namespace, name): what kustomize tells objects apart by."""
    metadata = resource.get("metadata", {})
    return (resource["apiVersion"], resource["kind"], metadata.get("namespace", ""), metadata["name"])


def find(objects: list[Resource], kind: str, name: str) -> Resource | None:
    """The object of ``kind`` named ``name``, or None."""
    return next((o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name), None)


def of_kind(objects: list[Resource], *kinds: str) -> list[Resource]:
    """The objects of any of ``kinds``."""
    return [o for o in objects if o["kind"] in kinds]


def workload_name(service: str) -> str:
    """The Kubernetes name of a service (``model_registry`` -> ``model-registry``)."""
    return service.replace("_", "-")


def workload_of(objects: list[Resource], service: str) -> Resource:
    """The Deployment or StatefulSet that runs ``service`` (a module name or the Kubernetes name)."""
    name = workload_name(service)
    found = [o for o in of_kind(objects, *WORKLOAD_KINDS) if o["metadata"]["name"] == name]
    if len(found) != 1:
        raise LookupError(f"{len(found)} workloads named {name!r}, expected one")
    return found[0]


def pod_spec(resource: Resource) -> dict[str, Any]:
    """The pod spec of a Deployment, StatefulSet or Job."""
    spec: dict[str, Any] = resource["spec"]["template"]["spec"]
    return spec


def main_container(resource: Resource) -> dict[str, Any]:
    """The container named like the workload, else its only container."""
    containers: list[dict[str, Any]] = pod_spec(resource)["containers"]
    named = [c for c in containers if c["name"] == resource["metadata"]["name"]]
    if named:
        return named[0]
    if len(containers) == 1:
        return containers[0]
    raise LookupError(f"{resource['metadata']['name']}: no container named like the workload among several")


def config_data(objects: list[Resource], kind: str, name: str) -> dict[str, str] | None:
    """The decoded data of a ConfigMap or Secret (Secret ``stringData`` wins over ``data``), or None."""
    found = find(objects, kind, name)
    if found is None:
        return None
    if kind == "Secret":
        values = {k: base64.b64decode(v).decode() for k, v in (found.get("data") or {}).items()}
        values.update(found.get("stringData") or {})
        return values
    return dict(found.get("data") or {})


def container_env(objects: list[Resource], container: Mapping[str, Any]) -> dict[str, str]:
    """The environment ``container`` gets from its ``envFrom`` and ``env``, resolved against ``objects``.

    Later ``envFrom`` sources win over earlier ones and ``env`` over all of them, and ``$(NAME)`` in an
    ``env`` value expands to a variable defined before it, as Kubernetes does. A reference to a missing
    ConfigMap, Secret or key raises ``LookupError`` unless it is ``optional``; ``fieldRef`` and
    ``resourceFieldRef`` (known only at run time) raise ``KustomizeError``.
    """
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        kind, ref = (
            ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else ("Secret", source["secretRef"])
        )
        data = config_data(objects, kind, ref["name"])
        if data is None:
            if ref.get("optional"):
                continue
            raise LookupError(f"container {container['name']}: envFrom names a missing {kind} {ref['name']!r}")
        env.update({source.get("prefix", "") + key: value for key, value in data.items()})
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = _expand(str(variable["value"]), env)
            continue
        value = _value_from(objects, container["name"], variable)
        if value is not None:
            env[variable["name"]] = value
    return env


def rendered_env(service: str, overlay: str) -> dict[str, str]:
    """The environment the container of ``service`` sees in ``overlay`` (ConfigMap and Secret values resolved).

    Parameters
    ----------
    service : str
        A service's module name (``inference``, ``model_registry``, ...) or its Kubernetes name.
    overlay : str
        One of :data:`OVERLAYS`.

    Returns
    -------
    dict of str to str
        Variable name to value, as ``eddy.core.settings.Settings.from_env`` takes it. Variables the image sets
        (``ENV`` in the Dockerfile) and that the manifests do not are not included.
    """
    objects = render_overlay(overlay)
    return container_env(objects, main_container(workload_of(objects, service)))


def _value_from(objects: list[Resource], container: str, variable: Mapping[str, Any]) -> str | None:
    source = variable.get("valueFrom", {})
    for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
        if key in source:
            ref = source[key]
            data = config_data(objects, kind, ref["name"])
            if data is not None and ref["key"] in data:
                return data[ref["key"]]
            if ref.get("optional"):
                return None
            raise LookupError(f"container {container}: {variable['name']} names missing {kind} key {ref}")
    raise KustomizeError(f"container {container}: {variable['name']} is known only at run time ({source})")


def _expand(value: str, env: Mapping[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        return env.get(name, match.group(0))

    return _VARIABLE.sub(substitute, value)


def _load_kustomization(directory: Path) -> dict[str, Any]:
    for file_name in KUSTOMIZATION_FILES:
        path = directory / file_name
        if path.is_file():
            loaded = yaml.safe_load(path.read_text()) or {}
            unsupported = sorted(set(loaded) - SUPPORTED_FIELDS)
            if unsupported:
                raise KustomizeError(f"{path}: {', '.join(unsupported)} not rendered here")
            return dict(loaded)
    raise KustomizeError(f"{directory}: no kustomization file")


def _build(directory: Path, kustomization: Mapping[str, Any], accumulated: list[Resource]) -> list[Resource]:
    # kustomize's order: resources, then components (over everything so far), generators, then transformers.
    for entry in kustomization.get("resources", []):
        path = directory / entry
        accumulated.extend(render(path) if path.is_dir() else _load_documents(path))
    for entry in kustomization.get("components", []):
        component_dir = directory / entry
        component = _load_kustomization(component_dir)
        if component.get("kind") != "Component":
            raise KustomizeError(f"{component_dir}: listed in components but of kind {component.get('kind')}")
        accumulated = _build(component_dir, component, accumulated)
    accumulated.extend(_generated(directory, kustomization))
    _check_unique(accumulated)
    for patch in kustomization.get("patches", []):
        _apply_patch(directory, patch, accumulated)
    if "namespace" in kustomization:
        for resource in accumulated:
            if resource["kind"] not in CLUSTER_SCOPED_KINDS:
                resource.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
    for label_set in kustomization.get("labels", []):
        _apply_labels(label_set, accumulated)
    for image in kustomization.get("images", []):
        for resource in accumulated:
            _set_images(resource, image)
    _check_unique(accumulated)
    return accumulated


def _load_documents(path: Path) -> list[Resource]:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for document in documents:
        if not isinstance(document, dict) or "kind" not in document or "apiVersion" not in document:
            raise KustomizeError(f"{path}: every document must be an object with apiVersion and kind")
    return documents


def _check_unique(resources: list[Resource]) -> None:
    seen: set[tuple[str, str, str, str]] = set()
    for resource in resources:
        key = resource_id(resource)
        if key in seen:
            raise KustomizeError(f"{key} is defined twice")
        seen.add(key)


def _generated(directory: Path, kustomization: Mapping[str, Any]) -> list[Resource]:
    options = kustomization.get("generatorOptions", {})
    unknown_options = set(options) - {"disableNameSuffixHash", "labels", "annotations"}
    if unknown_options:
        raise KustomizeError(f"{directory}: generatorOptions {sorted(unknown_options)} not rendered here")
    generated = []
    for field_name, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
        for spec in kustomization.get(field_name, []):
            generated.append(_generate(directory, kind, spec, options))
    return generated


def _generate(directory: Path, kind: str, spec: Mapping[str, Any], defaults: Mapping[str, Any]) -> Resource:
    unknown = set(spec) - {"name", "literals", "files", "type", "options"}
    if unknown or spec.get("behavior", "create") != "create":
        raise KustomizeError(f"{directory}: {kind} generator fields {sorted(unknown)} not rendered here")
    options = {**defaults, **spec.get("options", {})}
    if not options.get("disableNameSuffixHash"):
        raise KustomizeError(f"{directory}: {spec['name']}: hashed generator names are not rendered here")
    values: dict[str, str] = {}
    for literal in spec.get("literals", []):
        key, sep, value = literal.partition("=")
        if not sep:
            raise KustomizeError(f"{directory}: literal {literal!r} is not KEY=VALUE")
        values[key] = value
    for entry in spec.get("files", []):
        key, sep, file_name = entry.partition("=")
        path = directory / (file_name if sep else key)
        values[key if sep else path.name] = path.read_text()
    metadata: dict[str, Any] = {"name": spec["name"]}
    labels = {**defaults.get("labels", {}), **spec.get("options", {}).get("labels", {})}
    annotations = {**defaults.get("annotations", {}), **spec.get("options", {}).get("annotations", {})}
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    resource: Resource = {"apiVersion": "v1", "kind": kind, "metadata": metadata}
    if kind == "Secret":
        resource["type"] = spec.get("type", "Opaque")
        resource["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())}
    else:
        resource["data"] = dict(sorted(values.items()))
    return resource


def _apply_patch(directory: Path, patch: Mapping[str, Any], resources: list[Resource]) -> None:
    unknown = set(patch) - {"path", "patch", "target"}
    if unknown:
        raise KustomizeError(f"{directory}: patch fields {sorted(unknown)} not rendered here")
    text = (directory / patch["path"]).read_text() if "path" in patch else patch["patch"]
    body = yaml.safe_load(text)
    target = patch.get("target")
    if isinstance(body, list):
        if target is None:
            raise KustomizeError(f"{directory}: a JSON 6902 patch needs a target")
        for resource in _targets(resources, target, directory):
            _json_patch(resource, body)
        return
    if not isinstance(body, dict):
        raise KustomizeError(f"{directory}: a patch must be an object or a list of operations")
    if target is None:
        group, _, version = body["apiVersion"].rpartition("/")
        target = {"group": group, "version": version, "kind": body["kind"], "name": body["metadata"]["name"]}
    for resource in _targets(resources, target, directory):
        _merge(resource, body, resource["kind"])


def _targets(resources: list[Resource], target: Mapping[str, Any], directory: Path) -> list[Resource]:
    unknown = set(target) - {"group", "version", "kind", "name"}
    if unknown:
        raise KustomizeError(f"{directory}: patch target fields {sorted(unknown)} not rendered here")
    matched = []
    for resource in resources:
        group, _, version = resource["apiVersion"].rpartition("/")
        actual = {"group": group, "version": version, "kind": resource["kind"], "name": resource["metadata"]["name"]}
        if all(actual[key] == value for key, value in target.items()):
            matched.append(resource)
    if not matched:
        raise KustomizeError(f"{directory}: no object matches the patch target {dict(target)}")
    return matched


def _merge(base: dict[str, Any], patch: Mapping[str, Any], where: str) -> None:
    for key, value in patch.items():
        if key.startswith("$"):
            raise KustomizeError(f"{where}: patch directive {key} not rendered here")
        if value is None:
            base.pop(key, None)
        elif isinstance(value, list):
            raise KustomizeError(f"{where}.{key}: a list in a strategic-merge patch; use a JSON 6902 patch")
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, f"{where}.{key}")
        else:
            base[key] = copy.deepcopy(value)


def _json_patch(resource: Resource, operations: list[Mapping[str, Any]]) -> None:
    for operation in operations:
        op = operation["op"]
        if op not in ("add", "replace", "remove"):
            raise KustomizeError(f"JSON 6902 operation {op!r} not rendered here")
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in operation["path"].split("/")[1:]]
        if not tokens:
            raise KustomizeError("a JSON 6902 patch of the whole object is not rendered here")
        parent: Any = resource
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        last = tokens[-1]
        value = copy.deepcopy(operation.get("value"))
        if isinstance(parent, list):
            if op == "add":
                parent.insert(len(parent) if last == "-" else int(last), value)
            elif op == "replace":
                parent[int(last)] = value
            else:
                del parent[int(last)]
        elif op == "add":
            parent[last] = value
        elif last not in parent:
            raise KustomizeError(f"{resource_id(resource)}: {op} of missing {operation['path']}")
        elif op == "replace":
            parent[last] = value
        else:
            del parent[last]


def _apply_labels(label_set: Mapping[str, Any], resources: list[Resource]) -> None:
    if label_set.get("includeSelectors") or label_set.get("includeTemplates") or "fields" in label_set:
        raise KustomizeError("labels with includeSelectors, includeTemplates or fields are not rendered here")
    for resource in resources:
        labels = resource.setdefault("metadata", {}).setdefault("labels", {})
        labels.update(label_set["pairs"])


def _set_images(node: Any, image: Mapping[str, Any]) -> None:
    if isinstance(node, list):
        for item in node:
            _set_images(item, image)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in ("containers", "initContainers") and isinstance(value, list):
            for container in value:
                container["image"] = _new_image(container["image"], image)
        else:
            _set_images(value, image)


def _new_image(reference: str, image: Mapping[str, Any]) -> str:
    name, _, digest = reference.partition("@")
    repository, tag = name, ""
    if ":" in name.rsplit("/", 1)[-1]:
        repository, _, tag = name.rpartition(":")
    if repository != image["name"]:
        return reference
    repository = image.get("newName", repository)
    if "digest" in image:
        return f"{repository}@{image['digest']}"
    tag = str(image.get("newTag", tag))
    if tag:
        return f"{repository}:{tag}"
    return f"{repository}@{digest}" if digest else repository


def keda_schemas_from_package() -> dict[str, Any]:
    """The JSON schemas of KEDA's ScaledObject and TriggerAuthentication, from cloudcoil-models-keda.

    Raises
    ------
    ImportError
        Without that package (it is not a dev dependency: its pytest plugin needs more packages still).
    """
    from cloudcoil.models.keda import v1alpha1 as keda

    schemas: dict[str, Any] = {
        "$comment": (
            f"KEDA's CRD schemas as {KEDA_SCHEMA_PACKAGE} {version(KEDA_SCHEMA_PACKAGE)} (PyPI) carries them; "
            "written by tests.deploy_manifests.write_keda_schemas, do not edit"
        )
    }
    for kind in ("ScaledObject", "TriggerAuthentication"):
        schemas[kind] = getattr(keda, kind).model_json_schema(by_alias=True, mode="validation")
    return schemas


def write_keda_schemas() -> Path:
    """Export :func:`keda_schemas_from_package` to :data:`KEDA_SCHEMA_FILE` (run where the package is installed)."""
    KEDA_SCHEMA_FILE.parent.mkdir(parents=True, exist_ok=True)
    KEDA_SCHEMA_FILE.write_text(json.dumps(keda_schemas_from_package(), indent=1, sort_keys=True) + "\n")
    return KEDA_SCHEMA_FILE


def keda_schemas() -> dict[str, Any]:
    """The exported KEDA schemas, by kind."""
    schemas: dict[str, Any] = json.loads(KEDA_SCHEMA_FILE.read_text())
    return schemas
