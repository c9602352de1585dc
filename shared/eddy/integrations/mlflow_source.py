"""What the MLflow mirror reads from eddy: the model registry's REST API, and the versions' signed snapshots.

The registry answers which versions a stream has (with their alias, metrics, spec and lineage) and which
backtests it recorded (``GET /api/models``, ``/api/models/show``, ``/api/experiments``). The models
themselves are the snapshots the registry published on ``S.models`` (the ones without source offsets:
learning's later snapshots of the same version carry offsets), kept signed: the mirror verifies them and
never unpickles one (``eddy.ml.models.check_snapshot``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from eddy.avro.serde import SerdeRegistry, registry_client
from eddy.contracts.stream import load_contracts
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics
from eddy.history.reader import read_to_end
from eddy.runtime.auth import client_headers

TIMEOUT_S = 10.0
# The most experiments the registry lists at once (its MAX_EXPERIMENTS).
MAX_EXPERIMENTS = 1000


class SourceError(RuntimeError):
    """The model registry could not be reached, or refused a read."""


class RegistrySource:
    """The model registry's REST API at ``url``, read with ``EDDY_API_KEY`` (a viewer's key is enough).

    Examples
    --------
    >>> def answer(request: httpx.Request) -> httpx.Response:
    ...     if request.url.path == "/api/models":
    ...         return httpx.Response(200, json={"versions": [{"version": "default@1", "alias": "champion"}]})
    ...     return httpx.Response(200, json={"name": "default", "version": 1, "metrics": {}})
    >>> source = RegistrySource("http://registry:8005", transport=httpx.MockTransport(answer))
    >>> [v["name"] for v in source.versions("demo")], source.aliases("demo")
    (['default'], {'default@1': 'champion'})
    """

    def __init__(self, url: str, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=TIMEOUT_S, transport=transport)

    def aliases(self, stream: str) -> dict[str, str]:
        """Each version's alias now (``champion``, ``challenger``, ``shadow``, ``archived``)."""
        listed = self._get("/api/models", stream=stream)
        return {str(v["version"]): str(v.get("alias") or "") for v in listed.get("versions", [])}

    def versions(self, stream: str) -> list[dict[str, Any]]:
        """Every version of ``stream``, oldest first, each as ``/api/models/show`` gives it (with its alias)."""
        listed = self._get("/api/models", stream=stream)
        return [self._get("/api/models/show", stream=stream, version=v["version"]) for v in listed["versions"]]

    def experiments(self, stream: str) -> list[dict[str, Any]]:
        """The backtests recorded for ``stream``, oldest first (the newest thousand)."""
        listed = self._get("/api/experiments", stream=stream, limit=str(MAX_EXPERIMENTS))
        return list(reversed(listed.get("experiments", [])))

    def _get(self, path: str, **params: str) -> dict[str, Any]:
        try:
            response = self._client.get(path, params=params, headers=client_headers())
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot reach the model registry at {self.url}: {exc}") from exc
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if response.status_code != 200 or not isinstance(doc, dict):
            message = doc.get("error") if isinstance(doc, dict) else response.text[:200]
            raise SourceError(f"the model registry refused GET {path}: {message} (HTTP {response.status_code})")
        return doc

    def close(self) -> None:
        self._client.close()


def registry_snapshots(
    settings: Settings, stream: str, read: Callable[..., Any] = read_to_end
) -> dict[str, dict[str, Any]]:
    """The registry's snapshot of each version of ``stream`` on ``S.models``, by version (``default@2``).

    Signatures are not checked here: whoever uses a snapshot checks it with its keyring first.
    """
    contracts = load_contracts(settings.contracts_dir, (stream,))
    serdes = SerdeRegistry(registry_client(settings), settings.schemas_dir, contracts)
    topic = StreamTopics(stream).models
    found: dict[str, dict[str, Any]] = {}
    for batch in read(settings, [topic], purpose="mlflow"):
        for value in serdes.for_topic(topic).decode_many([m.value() for m in batch]):
            # The registry's snapshots carry no source offsets; learning's later ones of a version do.
            if isinstance(value, dict) and not value["source_offsets"]:
                found[f"{value['model_name']}@{value['model_version']}"] = value
    return found
