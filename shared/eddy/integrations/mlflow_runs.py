"""What an eddy backtest or model version becomes in MLflow: a run's name, tags, parameters and metrics.

Pure shaping, no MLflow: ``eddy.integrations.mlflow`` writes what these functions return. Every mirrored run
carries ``eddy.id`` (what it mirrors, so a second sync finds it instead of making another) and, once all of
it is written, ``eddy.mirrored`` (a run without it was cut short and is made again).

- A backtest (an experiment of the model registry, ``eddy backtest``) is a run of the stream's MLflow
  experiment ``eddy/STREAM``: its models, label delay and data range as parameters, each model's metrics as
  ``MODEL.METRIC``, its start at the experiment's creation time.
- A model version is a run too (its spec, lineage and training range as parameters, the registry's metrics)
  and a version of the registered model ``STREAM.MODEL`` made from that run.

Examples
--------
>>> run = backtest_run({"id": "x1", "stream": "demo", "title": "t", "created_at_ms": 5, "created_by": "ann",
...     "models": ["default@2", {"name": "wide", "pipeline": []}], "label_delay": "observed",
...     "data": {"source": "validated", "from": None, "events": 10, "offsets": {"demo.validated:0": [0, 9]}},
...     "metrics": {"default@2": {"accuracy": 0.75, "labels": 10}, "spec:wide": {"accuracy": None}}})
>>> run.tags["eddy.id"], run.name, run.start_ms
('backtest:x1', 't', 5)
>>> run.params["models.0"], run.params["data.from"], run.params["data.offsets.demo.validated:0.1"]
('default@2', 'None', '9')
>>> run.metrics
{'default_v2.accuracy': 0.75, 'default_v2.labels': 10.0}
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eddy.ml.roles import CHALLENGER, CHAMPION

TAG_ID = "eddy.id"
TAG_KIND = "eddy.kind"
TAG_STREAM = "eddy.stream"
TAG_VERSION = "eddy.version"
TAG_ALIAS = "eddy.alias"
TAG_SHA256 = "eddy.sha256"
# Set last: a run without it was cut short (a crash, the server gone mid-way) and is made again.
TAG_COMPLETE = "eddy.mirrored"
# MLflow's aliases name one version each; eddy's shadow and archived name many, so they stay a version tag.
MLFLOW_ALIASES = (CHAMPION, CHALLENGER)
# MLflow refuses longer parameter values (6000 characters in 2.x and 3.x).
MAX_PARAM_CHARS = 6000
# Characters MLflow allows in the key of a parameter, metric or tag; others become "_".
_NOT_A_KEY_CHAR = re.compile(r"[^\w\-. /:]")


@dataclass(frozen=True)
class RunContent:
    """One MLflow run to make: its name, tags, parameters, metrics and start (epoch ms)."""

    name: str
    tags: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    start_ms: int | None = None


def experiment_name(stream: str) -> str:
    """The MLflow experiment holding a stream's runs.

    >>> experiment_name("demo")
    'eddy/demo'
    """
    return f"eddy/{stream}"


def registered_model_name(stream: str, model: str) -> str:
    """The MLflow registered model of one of a stream's models.

    >>> registered_model_name("demo", "default")
    'demo.default'
    """
    return f"{stream}.{model}"


def mlflow_key(text: str) -> str:
    """``text`` as a key MLflow takes (letters, digits, ``_ - . / :`` and spaces); a version's ``@N`` is ``_vN``.

    >>> mlflow_key("default@2.holdout[accuracy]")
    'default_v2.holdout_accuracy_'
    """
    return _NOT_A_KEY_CHAR.sub("_", text.replace("@", "_v"))


def flat_numbers(doc: Any, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a JSON document as metrics: ``{"a.b": 1.0}``; booleans, text and nulls are left out.

    >>> flat_numbers({"holdout": {"accuracy": 0.9, "n": 30, "ok": True}, "runs": [{"auc": 0.5}], "note": "x"})
    {'holdout.accuracy': 0.9, 'holdout.n': 30.0, 'runs.0.auc': 0.5}
    """
    return {
        mlflow_key(path): float(value)
        for path, value in _leaves(doc, prefix).items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def flat_params(doc: Any, prefix: str = "") -> dict[str, str]:
    """Every leaf of a JSON document as a parameter's text, cut to what MLflow takes.

    >>> flat_params({"pipeline": [{"linear_model.LogisticRegression": {"l2": 0.1}}], "flag": True}, "spec.")
    {'spec.pipeline.0.linear_model.LogisticRegression.l2': '0.1', 'spec.flag': 'True'}
    """
    return {mlflow_key(path): str(value)[:MAX_PARAM_CHARS] for path, value in _leaves(doc, prefix).items()}


def _leaves(doc: Any, prefix: str) -> dict[str, Any]:
    if isinstance(doc, Mapping) and doc:
        return {k: v for key, value in doc.items() for k, v in _leaves(value, f"{prefix}{key}.").items()}
    if isinstance(doc, list | tuple) and doc:
        return {k: v for i, value in enumerate(doc) for k, v in _leaves(value, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): doc} if prefix else {}


def backtest_run(experiment: Mapping[str, Any]) -> RunContent:
    """The run of one backtest, as the model registry recorded it (``GET /api/experiments``)."""
    experiment_id = _required(experiment, "id")
    # A backtest lists its models as summaries ({"model": "default@2", ...}); other clients as versions or specs.
    models = [_model_name(m) for m in experiment.get("models") or []]
    tags = {
        TAG_ID: f"backtest:{experiment_id}",
        TAG_KIND: "backtest",
        TAG_STREAM: _required(experiment, "stream"),
        "eddy.experiment_id": experiment_id,
        "eddy.created_by": str(experiment.get("created_by") or ""),
        "eddy.models": ", ".join(models),
    }
    for path in ("report", "output"):
        if experiment.get(path):
            tags[f"eddy.{path}"] = str(experiment[path])
    params = {
        **{f"models.{i}": name for i, name in enumerate(models)},
        **flat_params(experiment.get("data") or {}, "data."),
        "label_delay": str(experiment.get("label_delay")),
    }
    return RunContent(
        name=str(experiment.get("title") or f"backtest {experiment_id}"),
        tags=tags,
        params=params,
        metrics=flat_numbers(experiment.get("metrics") or {}),
        start_ms=_ms(experiment.get("created_at_ms")),
    )


def version_run(stream: str, version: Mapping[str, Any]) -> RunContent:
    """The run of one registered version, from the registry's ``GET /api/models/show``.

    >>> run = version_run("demo", {"name": "default", "version": 2, "parent": "default@1", "created_at_ms": 7,
    ...     "spec": '{"name": "default", "features": ["x0"], "pipeline": []}', "metrics": {"accuracy": 0.9},
    ...     "sha256": "ab", "learned_count": 300, "alias": "challenger", "reason": "drift"})
    >>> run.name, run.tags["eddy.id"], run.tags["eddy.alias"], run.params["spec.features.0"], run.metrics
    ('default@2', 'version:demo/default@2', 'challenger', 'x0', {'accuracy': 0.9, 'learned_count': 300.0})
    """
    key = f"{_required(version, 'name')}@{_required(version, 'version')}"
    spec = version.get("spec") or "{}"
    tags = {
        TAG_ID: f"version:{stream}/{key}",
        TAG_KIND: "version",
        TAG_STREAM: stream,
        TAG_VERSION: key,
        TAG_ALIAS: str(version.get("alias") or ""),
        TAG_SHA256: str(version.get("sha256") or ""),
        "eddy.created_by": str(version.get("created_by") or ""),
        "eddy.reason": str(version.get("reason") or "")[:MAX_PARAM_CHARS],
    }
    params = {
        **flat_params(json.loads(spec) if isinstance(spec, str) else spec, "spec."),
        "parent": str(version.get("parent")),
        "code_version": str(version.get("code_version") or "unknown"),
        **flat_params(version.get("training_offsets") or [], "training_offsets."),
    }
    counts = {k: version[k] for k in ("learned_count", "online_learned_count") if version.get(k) is not None}
    return RunContent(
        name=key,
        tags=tags,
        params=params,
        metrics={**flat_numbers(version.get("metrics") or {}), **flat_numbers(counts)},
        start_ms=_ms(version.get("created_at_ms")),
    )


def _model_name(model: Any) -> str:
    if isinstance(model, Mapping):
        return str(model.get("model") or model.get("name") or json.dumps(model, default=str))[:MAX_PARAM_CHARS]
    return str(model)


def _required(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key)
    if value is None or value == "":
        raise ValueError(f"the registry's document has no {key!r}: {json.dumps(doc, default=str)[:200]}")
    return str(value)


def _ms(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
