"""eddy's backtests and model versions in MLflow: a one-way, idempotent mirror, and pyfunc export.

Install with ``pip install 'eddy[mlflow]'`` (mlflow-skinny); ``eddy mlflow sync|export`` drives it.

- :class:`MlflowMirror` writes to a tracking URI (a server, or a local store such as ``file:./mlruns``):
  each backtest the registry recorded as a run of the experiment ``eddy/STREAM``; each model version as a
  run and a version of the registered model ``STREAM.MODEL`` (with the model as a pyfunc when its signed
  snapshot is at hand); eddy's ``champion`` and ``challenger`` as MLflow's aliases of those versions. What is
  already mirrored is found by its ``eddy.id`` tag and not made again: a second sync changes nothing.
- Every step is retried with backoff (``eddy.integrations.mlflow_retry``); failed attempts are counted in
  ``eddy_mlflow_mirror_failures_total``. The mirror only reads eddy, so a tracking server that is down
  holds up nothing of eddy's lifecycle, only the mirror, until it is back.
- :func:`export_pyfunc` writes a version as an MLflow pyfunc model that ``mlflow.pyfunc.load_model`` loads
  and predicts with, outside eddy's services, with the same code inference serves it with
  (``eddy.ml.models.predict_batch``).

The exported model stays signed. Its directory holds eddy's signed artifact (the pickle of the river
pipeline after an ``EDDY-SIGNED`` line) and a short Python file that MLflow runs to load it ("models from
code": no pickle of MLflow's own). Loading verifies the signature with eddy's keyring (``EDDY_SIGNING_KEYS``
or ``EDDY_SIGNING_KEYS_FILE``, else the state dir's keyring if there is one) before it unpickles anything;
without the key, or with a pipeline swapped in, the load fails. That file of code is the trust boundary
MLflow sets for every pyfunc model: whoever can write the model's directory can change what loading runs.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from eddy.contracts.stream import StreamContract
from eddy.core.envconfig import read_one
from eddy.core.settings import Settings
from eddy.core.signing import DEFAULT_KEYRING, Keyring, KeyringError, KeyringSource
from eddy.integrations.mlflow_retry import MirrorUnavailable, Retry
from eddy.integrations.mlflow_runs import (
    MLFLOW_ALIASES,
    TAG_ALIAS,
    TAG_COMPLETE,
    TAG_ID,
    TAG_SHA256,
    TAG_STREAM,
    TAG_VERSION,
    RunContent,
    backtest_run,
    experiment_name,
    registered_model_name,
    version_run,
)
from eddy.integrations.mlflow_source import RegistrySource
from eddy.ml.artifacts import Signer, file_bytes, read_signed_file
from eddy.ml.models import check_snapshot, predict_batch, spec_from_json

EXTRA_HINT = "pip install 'eddy[mlflow]'"

try:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, Run
    from mlflow.exceptions import MlflowException
    from mlflow.models import ModelSignature
    from mlflow.pyfunc import PythonModel
    from mlflow.pyfunc import save_model as save_pyfunc_model
    from mlflow.types import ColSpec, Schema
except ModuleNotFoundError as exc:  # the one place eddy imports mlflow: say which extra brings it
    raise ModuleNotFoundError(
        f"eddy.integrations.mlflow needs mlflow-skinny ({exc.name} is missing): {EXTRA_HINT}", name=exc.name
    ) from exc

__all__ = ["EddyPyfunc", "MirrorUnavailable", "MlflowMirror", "SyncReport", "connect", "export_pyfunc", "sync"]

# The signed artifact's name inside an exported model's artifacts.
SNAPSHOT_ARTIFACT = "snapshot"
MODEL_ARTIFACT_PATH = "model"
# What MLflow runs to load an exported model: it imports eddy's pyfunc class, no pickle of MLflow's own.
MODEL_CODE = '''"""An eddy model version as an MLflow pyfunc model (written by eddy.integrations.mlflow.export_pyfunc).

Loading verifies the river pipeline's signature with eddy's keyring (EDDY_SIGNING_KEYS or
EDDY_SIGNING_KEYS_FILE) before unpickling it.
"""

import mlflow.models

from eddy.integrations.mlflow import EddyPyfunc

mlflow.models.set_model(EddyPyfunc())
'''
# A contract feature's type as an MLflow column type.
COLUMN_TYPES = {"double": "double", "long": "long", "string": "string", "boolean": "boolean"}
# MLflow takes at most this many parameters and metrics in one log_batch call.
PARAMS_PER_CALL, METRICS_PER_CALL = 100, 1000


def connect(tracking_uri: str) -> MlflowClient:
    """An MLflow client of ``tracking_uri`` for both runs and the model registry.

    MLflow's own HTTP retries are turned off (unless set in the environment): the mirror retries, and counts
    every failure. A local file store (``file:...`` or a path) is asked for explicitly here, so MLflow's
    opt-in for it is given.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    if tracking_uri.startswith("file:") or "://" not in tracking_uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def retryable(exc: BaseException) -> bool:
    """Whether a later attempt may succeed: the server unreachable or failing (5xx), not a refusal (4xx).

    >>> retryable(MlflowException("API request failed: connection refused")), retryable(ConnectionRefusedError())
    (True, True)
    >>> retryable(MlflowException.invalid_parameter_value("bad key")), retryable(KeyError("x"))
    (False, False)
    """
    if isinstance(exc, MlflowException):
        return exc.get_http_status_code() >= 500
    # requests' errors (MLflow's HTTP client) are OSErrors.
    return isinstance(exc, OSError | TimeoutError)


@dataclass
class SyncReport:
    """What one sync did: runs and versions made (and found already there), aliases moved."""

    backtests_created: int = 0
    backtests_found: int = 0
    versions_created: int = 0
    versions_found: int = 0
    aliases_changed: int = 0
    without_model: list[str] = field(default_factory=list)

    def changed(self) -> bool:
        return bool(self.backtests_created or self.versions_created or self.aliases_changed)

    def line(self, stream: str) -> str:
        return (
            f"{stream}: backtests {self.backtests_created} mirrored, {self.backtests_found} already there; "
            f"versions {self.versions_created} mirrored, {self.versions_found} already there; "
            f"aliases {self.aliases_changed} changed"
            + (f"; without their model (no snapshot): {', '.join(self.without_model)}" if self.without_model else "")
        )


class MlflowMirror:
    """Mirrors eddy's backtests, versions and aliases to one MLflow tracking URI, each step idempotent."""

    def __init__(self, client: MlflowClient, retry: Retry | None = None) -> None:
        self.client = client
        self.retry = retry or Retry()
        self._experiments: dict[str, str] = {}

    def _call(self, operation: str, step: Callable[[], Any]) -> Any:
        return self.retry.call(operation, step, retryable)

    # -- runs ---------------------------------------------------------------------------

    def experiment_id(self, stream: str) -> str:
        """The id of the stream's MLflow experiment, made if missing."""
        if stream not in self._experiments:
            self._experiments[stream] = self._call("experiment", lambda: self._experiment(stream))
        return self._experiments[stream]

    def _experiment(self, stream: str) -> str:
        name = experiment_name(stream)
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(name, tags={TAG_STREAM: stream}))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # another mirror made it in between
                raise
            again = self.client.get_experiment_by_name(name)
            assert again is not None
            return str(again.experiment_id)

    def find_run(self, stream: str, eddy_id: str) -> Run | None:
        """The run that mirrors ``eddy_id`` (complete or not), if any."""
        runs = self.client.search_runs(
            [self.experiment_id(stream)], filter_string=f"tags.`{TAG_ID}` = '{_quoted(eddy_id)}'", max_results=10
        )
        complete = [r for r in runs if r.data.tags.get(TAG_COMPLETE) == "true"]
        return (complete or runs or [None])[0]  # type: ignore[list-item]

    def ensure_run(
        self, stream: str, content: RunContent, artifacts: Callable[[str], None] | None = None
    ) -> tuple[str, bool]:
        """The id of the run of ``content`` and whether it was made now; a run cut short is made again."""
        found = self.find_run(stream, content.tags[TAG_ID])
        if found is not None and found.data.tags.get(TAG_COMPLETE) == "true":
            return found.info.run_id, False
        if found is not None:
            self.client.delete_run(found.info.run_id)
        start_ms = content.start_ms if content.start_ms is not None else int(time.time() * 1000)
        run = self.client.create_run(
            self.experiment_id(stream), start_time=start_ms, tags=content.tags, run_name=content.name
        )
        run_id = run.info.run_id
        params = [Param(k, v) for k, v in content.params.items()]
        metrics = [Metric(k, v, start_ms, 0) for k, v in content.metrics.items()]
        for i in range(0, len(params), PARAMS_PER_CALL):
            self.client.log_batch(run_id, params=params[i : i + PARAMS_PER_CALL])
        for i in range(0, len(metrics), METRICS_PER_CALL):
            self.client.log_batch(run_id, metrics=metrics[i : i + METRICS_PER_CALL])
        if artifacts is not None:
            artifacts(run_id)
        self.client.set_terminated(run_id, "FINISHED", end_time=start_ms)
        self.client.set_tag(run_id, TAG_COMPLETE, "true")
        return run_id, True

    def mirror_backtest(self, stream: str, experiment: Mapping[str, Any]) -> bool:
        """One backtest as a run, with the registry's document and its report (when on this machine) as artifacts.

        Returns whether it was mirrored now (False: it already was).
        """
        content = backtest_run(experiment)

        def artifacts(run_id: str) -> None:
            self.client.log_text(run_id, json.dumps(experiment, indent=2, default=str), "experiment.json")
            report = Path(str(experiment.get("report") or ""))
            if experiment.get("report") and report.is_file():
                self.client.log_artifact(run_id, str(report), "report")

        return bool(self._call("backtest", lambda: self.ensure_run(stream, content, artifacts))[1])

    # -- versions and aliases --------------------------------------------------------------

    def model_version(self, stream: str, key: str) -> Any | None:
        """The MLflow model version that mirrors eddy's version ``key`` (``default@2``), if any."""
        name = registered_model_name(stream, key.rpartition("@")[0])
        found = self.client.search_model_versions(
            f"name = '{_quoted(name)}' and tags.`{TAG_VERSION}` = '{_quoted(key)}'"
        )
        return found[0] if found else None

    def mirror_version(
        self, stream: str, version: Mapping[str, Any], save_model: Callable[[Path], None] | None = None
    ) -> bool:
        """One version as a run and a registered model version (its model saved by ``save_model``, if given).

        A version already mirrored only gets its ``eddy.alias`` tag brought up to date. Returns whether it
        was mirrored now.
        """
        content = version_run(stream, version)
        return bool(self._call("version", lambda: self._version(stream, content, save_model)))

    def _version(self, stream: str, content: RunContent, save_model: Callable[[Path], None] | None) -> bool:
        key = content.tags[TAG_VERSION]
        existing = self.model_version(stream, key)
        if existing is not None:
            if existing.tags.get(TAG_ALIAS) != content.tags[TAG_ALIAS]:
                self.client.set_model_version_tag(existing.name, existing.version, TAG_ALIAS, content.tags[TAG_ALIAS])
            return False
        name = registered_model_name(stream, key.rpartition("@")[0])
        self._registered_model(stream, name)

        def artifacts(run_id: str) -> None:
            if save_model is None:
                return
            with tempfile.TemporaryDirectory(prefix="eddy-mlflow-") as tmp:
                save_model(Path(tmp) / MODEL_ARTIFACT_PATH)
                self.client.log_artifacts(run_id, str(Path(tmp) / MODEL_ARTIFACT_PATH), MODEL_ARTIFACT_PATH)

        run_id, _ = self.ensure_run(stream, content, artifacts)
        run = self.client.get_run(run_id)
        tags = {k: content.tags[k] for k in (TAG_ID, TAG_VERSION, TAG_ALIAS, TAG_SHA256)}
        self.client.create_model_version(
            name,
            source=f"{run.info.artifact_uri}/{MODEL_ARTIFACT_PATH}",
            run_id=run_id,
            tags=tags,
            description=content.tags.get("eddy.reason") or None,
        )
        return True

    def _registered_model(self, stream: str, name: str) -> None:
        try:
            self.client.create_registered_model(name, tags={TAG_STREAM: stream})
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def mirror_aliases(self, stream: str, aliases: Mapping[str, str]) -> int:
        """eddy's champion and challenger (``{"default@2": "champion", ...}``) as MLflow's aliases; how many moved.

        MLflow's ``champion`` and ``challenger`` of the stream's registered models follow eddy's; an alias
        eddy no longer gives is removed. Other aliases, set in MLflow by people, are left alone.
        """
        return int(self._call("aliases", lambda: self._aliases(stream, aliases)))

    def _aliases(self, stream: str, aliases: Mapping[str, str]) -> int:
        changed = 0
        for model in sorted({key.rpartition("@")[0] for key in aliases}):
            name = registered_model_name(stream, model)
            try:
                current = dict(self.client.get_registered_model(name).aliases)
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    continue  # none of its versions mirrored yet
                raise
            for alias in MLFLOW_ALIASES:
                key = next((k for k, a in aliases.items() if a == alias and k.rpartition("@")[0] == model), None)
                target = self.model_version(stream, key) if key else None
                if target is not None and str(current.get(alias)) != str(target.version):
                    self.client.set_registered_model_alias(name, alias, target.version)
                    changed += 1
                elif target is None and alias in current:
                    self.client.delete_registered_model_alias(name, alias)
                    changed += 1
        return changed


def sync(
    stream: str,
    source: RegistrySource,
    mirror: MlflowMirror,
    save_model: Callable[[Mapping[str, Any], Path], None] | None = None,
    has_model: Callable[[str], bool] = lambda _key: True,
) -> SyncReport:
    """Mirror a stream's versions, aliases and backtests, oldest first; what it did.

    ``save_model(version, path)`` writes a version's pyfunc model (see :func:`export_pyfunc`);
    ``has_model(key)`` says whether it can (the version's snapshot was found).

    Raises
    ------
    MirrorUnavailable
        When the tracking server stays away: what was mirrored before stays, the next sync goes on from there.
    eddy.integrations.mlflow_source.SourceError
        When the model registry cannot be read.
    """
    report = SyncReport()
    versions = source.versions(stream)
    for version in versions:
        key = f"{version['name']}@{version['version']}"
        writer = None
        if save_model is not None and has_model(key):
            writer = _bind(save_model, version)
        elif save_model is not None:
            report.without_model.append(key)
        if mirror.mirror_version(stream, version, writer):
            report.versions_created += 1
        else:
            report.versions_found += 1
    report.aliases_changed = mirror.mirror_aliases(
        stream, {f"{v['name']}@{v['version']}": v["alias"] for v in versions}
    )
    for experiment in source.experiments(stream):
        if mirror.mirror_backtest(stream, experiment):
            report.backtests_created += 1
        else:
            report.backtests_found += 1
    return report


def _bind(save_model: Callable[[Mapping[str, Any], Path], None], version: Mapping[str, Any]) -> Callable[[Path], None]:
    return lambda path: save_model(version, path)


# -- pyfunc --------------------------------------------------------------------------------


def export_pyfunc(snapshot: Mapping[str, Any], contract: StreamContract, signer: Signer, out: Path) -> Path:
    """Write the version in ``snapshot`` (the registry's, from ``S.models``) to ``out`` as an MLflow pyfunc model.

    The snapshot's signature and checksum are checked first (nothing is unpickled here): an unsigned or
    forged snapshot is refused (``eddy.ml.models.SnapshotError``). The model keeps the signed bytes; loading
    it checks them again (:class:`EddyPyfunc`).
    """
    record = dict(snapshot)
    check_snapshot(record, signer)
    spec = spec_from_json(record["spec"])
    config = {
        "stream": contract.name,
        "model": spec.name,
        "version": f"{spec.name}@{record['model_version']}",
        "task": contract.task,
        "features": list(spec.features),
        "sha256": record["sha256"],
        "signed_by": str(record["signature"]).split(":")[1],
    }
    with tempfile.TemporaryDirectory(prefix="eddy-pyfunc-") as tmp:
        signed = Path(tmp) / "model.eddy-signed"
        signed.write_bytes(file_bytes(record["artifact"], record["signature"]))
        code = Path(tmp) / "eddy_model.py"
        code.write_text(MODEL_CODE)
        with warnings.catch_warnings():
            # The signature comes from the contract; an input example would only make MLflow run the model.
            warnings.filterwarnings("ignore", message=".*input example was not provided")
            save_pyfunc_model(
                path=str(out),
                python_model=str(code),
                artifacts={SNAPSHOT_ARTIFACT: str(signed)},
                model_config=config,
                signature=_signature(contract, spec.features),
                pip_requirements=requirements(),
                metadata={"eddy": config},
            )
    return out


def requirements() -> list[str]:
    """What loading an exported model needs: eddy itself (its pyfunc class and keyring), river, MLflow."""
    return [f"eddy=={metadata.version('eddy')}", f"river=={metadata.version('river')}", "mlflow-skinny"]


def _signature(contract: StreamContract, features: tuple[str, ...]) -> ModelSignature | None:
    columns = []
    for name in features:
        feature = contract.feature(name)
        kind = COLUMN_TYPES.get(feature.type)
        if kind is None:
            return None  # a type MLflow has no column for: no signature rather than a wrong one
        columns.append(ColSpec(kind, name, required=feature.required))
    return ModelSignature(inputs=Schema(columns))  # type: ignore[arg-type]


def pyfunc_keyring(environ: Mapping[str, str]) -> Keyring | KeyringSource:
    """The keyring that verifies an exported model: ``EDDY_SIGNING_KEYS``, ``EDDY_SIGNING_KEYS_FILE``, else the
    state dir's keyring file if there is one. Never a new one: a model no key verifies must not load.

    >>> pyfunc_keyring({"EDDY_STATE_DIR": "/no/such/dir"})
    Traceback (most recent call last):
    ...
    eddy.core.signing.KeyringError: an eddy model loads only once its signature verifies: set EDDY_SIGNING_KEYS ...
    """
    keys, keys_file = (read_one(Settings, name, environ) for name in ("signing_keys", "signing_keys_file"))
    if keys.strip():
        return Keyring.from_setting(keys)
    path = Path(keys_file) if keys_file else Path(read_one(Settings, "state_dir", environ)) / DEFAULT_KEYRING
    if not path.is_file():
        raise KeyringError(
            "an eddy model loads only once its signature verifies: set EDDY_SIGNING_KEYS or EDDY_SIGNING_KEYS_FILE "
            f"to the keyring that signed it (no keyring at {path})"
        )
    return KeyringSource(path)


class EddyPyfunc(PythonModel):
    """An eddy model version in MLflow: a DataFrame of the model's features in, its predictions out.

    ``predict`` answers a DataFrame with ``prediction`` and ``probabilities`` (each class's probability, as
    eddy writes them on ``S.predictions``; None for regression), one row per input row, as eddy's inference
    serves them. A feature left out, or null, is None to the model, as in an event.
    """

    def load_context(self, context: Any) -> None:
        config = context.model_config or {}
        self.task: str = config["task"]
        self.features: list[str] = list(config["features"])
        # Verified with eddy's keyring before it is unpickled (eddy.ml.artifacts.read_signed_file).
        self.estimator = read_signed_file(
            Path(context.artifacts[SNAPSHOT_ARTIFACT]), pyfunc_keyring(os.environ), "mlflow pyfunc model"
        )

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        # A feature the frame lacks is a column of NaN here, None to the model.
        records = frame.reindex(columns=self.features).to_dict("records")
        rows = [{str(name): _plain(value) for name, value in record.items()} for record in records]
        answers = predict_batch(self.estimator, self.task, rows)
        return pd.DataFrame(
            {"prediction": [p for p, _ in answers], "probabilities": [q for _, q in answers]}, index=frame.index
        )


def _plain(value: Any) -> Any:
    """A DataFrame cell as an event holds it: None for a missing value, Python scalars for numpy ones."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")
