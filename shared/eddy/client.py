"""``eddy.Client``: a running eddy stack from Python, over its HTTP APIs (httpx).

Three services answer it: the ingestion gateway (events and labels in), the
inference service's prediction API, and the model registry (versions,
promotion, rollback, retraining). Their URLs are given explicitly, or found as
the CLI finds them: ``EDDY_MODEL_REGISTRY_URL`` for the registry, else the
``stack.json`` of the ``eddy up`` running from ``EDDY_STATE_DIR`` (``.eddy``).
Every request carries the API key (``api_key=``, else ``EDDY_API_KEY``) as
``X-API-Key``.

An HTTP-level failure (unreachable, 4xx, 5xx) raises :class:`ClientError` with
the service's own message; records that a service rejected one by one are not
an error but part of the answer (its ``results``), as the HTTP APIs report them
with 207 or 422.

>>> import httpx
>>> def answer(request: httpx.Request) -> httpx.Response:
...     assert request.url.path == "/v1/streams/demo/predict"
...     return httpx.Response(200, json={"predicted": 1, "rejected": 0, "results": [
...         {"index": 0, "status": "predicted", "event_id": "e1", "prediction": True}]})
>>> with Client(predict_url="http://inference:8001", transport=httpx.MockTransport(answer)) as client:
...     [r["prediction"] for r in client.predict("demo", {"event_id": "e1", "x0": 1.0, "x1": 2.0, "x2": 3.0})]
[True]
>>> Client(state_dir="/no/stack/here").models("demo")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
eddy.client.ClientError: no running eddy stack in /no/stack/here to find the model registry: start one ...
"""

from __future__ import annotations

import getpass
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from eddy.runtime.auth import CLIENT_KEY_ENV, KEY_HEADER

REGISTRY_URL_ENV = "EDDY_MODEL_REGISTRY_URL"
TIMEOUT_S = 10.0
# Argument name and stack.json service of each API the client talks to.
INGESTION, INFERENCE, REGISTRY = "ingestion", "inference", "model_registry"
WHAT = {INGESTION: "the ingestion gateway", INFERENCE: "the prediction API", REGISTRY: "the model registry"}
ARGUMENT = {INGESTION: "ingestion_url=", INFERENCE: "predict_url=", REGISTRY: "registry_url="}

Records = Mapping[str, Any] | Iterable[Mapping[str, Any]]


class ClientError(RuntimeError):
    """A service that cannot be found, reached, or refused the request; ``status`` and ``body`` of an answer."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class Client:
    """A running eddy stack: send events and labels, get predictions, manage model versions.

    Parameters
    ----------
    ingestion_url, predict_url, registry_url
        The ingestion gateway, the prediction API (``/v1/streams/S/predict``) and the model registry; each one
        not given is found in the running stack's ``stack.json`` when first needed.
    state_dir
        Where that stack runs from (default: ``EDDY_STATE_DIR``, else ``.eddy``).
    api_key
        Sent as ``X-API-Key`` (default: ``EDDY_API_KEY``): producer role for events, labels and predictions,
        viewer to read the registry, operator to promote, roll back or retrain.
    timeout_s
        Of each request.
    transport
        An httpx transport to use instead of the network (tests).
    """

    def __init__(
        self,
        *,
        ingestion_url: str | None = None,
        predict_url: str | None = None,
        registry_url: str | None = None,
        state_dir: str | Path | None = None,
        api_key: str | None = None,
        timeout_s: float = TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._urls = {INGESTION: ingestion_url, INFERENCE: predict_url, REGISTRY: registry_url}
        if not registry_url and os.environ.get(REGISTRY_URL_ENV):
            self._urls[REGISTRY] = os.environ[REGISTRY_URL_ENV]
        self._state_dir = Path(state_dir) if state_dir is not None else None
        key = (api_key if api_key is not None else os.environ.get(CLIENT_KEY_ENV, "")).strip()
        headers = {KEY_HEADER: key} if key else {}
        self._http = httpx.Client(timeout=timeout_s, headers=headers, transport=transport)

    # -- events, labels, predictions -----------------------------------------------------------------

    def send_events(self, stream: str, events: Records) -> dict[str, Any]:
        """Send events to ``stream`` through the ingestion gateway; its answer once Kafka has them.

        The answer counts ``accepted``, ``rejected`` and ``duplicates`` and has one of ``results`` per event.
        Events are mappings (a DataFrame's ``to_dict("records")``); NaN is sent as a missing value.
        """
        return self._post(INGESTION, f"/v1/streams/{stream}/events", events)

    def send_labels(self, stream: str, labels: Records) -> dict[str, Any]:
        """Send labels (``{"event_id": ..., "label": ...}``) of earlier events of ``stream``."""
        return self._post(INGESTION, f"/v1/streams/{stream}/feedback", labels)

    def predict(self, stream: str, events: Records) -> list[dict[str, Any]]:
        """Predictions for events of ``stream``, one result per event in order (``status`` ``predicted``, with
        ``prediction``, ``probabilities`` and the model, or ``rejected``, with ``reasons``)."""
        doc = self._post(INFERENCE, f"/v1/streams/{stream}/predict", events)
        results: list[dict[str, Any]] = doc["results"]
        return results

    # -- the model registry --------------------------------------------------------------------------

    def models(self, stream: str) -> dict[str, Any]:
        """``stream``'s model versions (``versions``), ``champion`` and ``canary`` share, as the registry has them."""
        return self._request(REGISTRY, "GET", "/api/models", params={"stream": stream})

    def promote(self, stream: str, version: str, reason: str = "") -> dict[str, Any]:
        """Make ``version`` (``name@N``) the champion of ``stream``; probation applies."""
        return self._change(stream, "/api/models/promote", {"version": version}, reason)

    def rollback(self, stream: str, to: str | None = None, reason: str = "") -> dict[str, Any]:
        """Archive the champion of ``stream`` and restore ``to`` (default: the previous champion)."""
        return self._change(stream, "/api/models/rollback", {"to": to} if to else {}, reason)

    def retrain(self, stream: str, reason: str = "") -> dict[str, Any]:
        """Ask the retraining service to retrain ``stream``'s model."""
        return self._change(stream, "/api/retrain", {}, reason)

    # -- plumbing ------------------------------------------------------------------------------------

    def url(self, service: str) -> str:
        """The base URL of ``service`` (``ingestion``, ``inference``, ``model_registry``), found once."""
        known = self._urls.get(service)
        if known is None and service not in self._urls:
            raise ValueError(f"unknown service {service!r}; one of {', '.join(self._urls)}")
        if not known:
            known = self._from_stack(service)
            self._urls[service] = known
        return known.rstrip("/")

    def _from_stack(self, service: str) -> str:
        from eddy.core.settings import Settings
        from eddy.stack.up import pid_alive, read_stack

        state_dir = self._state_dir or Settings.from_env().state_dir
        stack = read_stack(state_dir)
        if not stack or not pid_alive(stack.get("supervisor_pid")):
            env = f" (or set {REGISTRY_URL_ENV})" if service == REGISTRY else ""
            raise ClientError(
                f"no running eddy stack in {state_dir} to find {WHAT[service]}: start one with `eddy up`, "
                f"or pass {ARGUMENT[service]}{env}"
            )
        url = (stack.get("services", {}).get(service) or {}).get("url")
        if not url:
            raise ClientError(f"the stack in {state_dir} runs no {service} service")
        if service != INFERENCE:
            return str(url)
        # The prediction API listens on a port of its own, which inference reports in its health.
        health = self._json(INFERENCE, self._send(INFERENCE, "GET", f"{url}/healthz"))
        predict_url = health.get("predict_url") if isinstance(health, dict) else None
        if not predict_url:
            raise ClientError(f"inference at {url} reports no prediction API yet (still starting?); retry shortly")
        return str(predict_url)

    def _post(self, service: str, path: str, records: Records) -> dict[str, Any]:
        try:
            body = json.dumps(_json_records(records), allow_nan=False)
        except ValueError as exc:  # an infinity: JSON has no spelling for it
            raise ValueError(f"records: a value JSON cannot carry ({exc})") from exc
        return self._request(service, "POST", path, content=body, headers={"Content-Type": "application/json"})

    def _change(self, stream: str, path: str, body: dict[str, Any], reason: str) -> dict[str, Any]:
        doc = {"stream": stream, "actor": _actor(), **body, **({"reason": reason} if reason else {})}
        return self._request(REGISTRY, "POST", path, json=doc)

    def _request(self, service: str, method: str, path: str, **kw: Any) -> dict[str, Any]:
        response = self._send(service, method, f"{self.url(service)}{path}", **kw)
        doc = self._json(service, response)
        # 422 from ingestion or inference: every record rejected, each with its reasons in the results.
        per_record = response.status_code == 422 and service != REGISTRY
        if response.status_code >= 400 and not per_record:
            raise ClientError(_refusal(response.status_code, doc, WHAT[service]), response.status_code, doc)
        if not isinstance(doc, dict):
            raise ClientError(f"{WHAT[service]} answered {response.status_code} with JSON that is no object", None, doc)
        return doc

    def _send(self, service: str, method: str, url: str, **kw: Any) -> httpx.Response:
        try:
            return self._http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach {WHAT[service]} at {url}: {exc}") from exc

    @staticmethod
    def _json(service: str, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise ClientError(
                f"{WHAT[service]} answered {response.status_code} without JSON", response.status_code
            ) from exc

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        known = ", ".join(f"{s}={u}" for s, u in self._urls.items() if u)
        return f"Client({known or 'from the running stack'})"


def _json_records(records: Records) -> list[dict[str, Any]]:
    """Records as JSON can carry them: a single mapping becomes a list of one, NaN and numpy scalars plain.

    >>> import numpy as np
    >>> _json_records({"x0": np.float64(1.5), "region": float("nan"), "n": np.int64(2)})
    [{'x0': 1.5, 'region': None, 'n': 2}]
    """
    if isinstance(records, Mapping):
        records = [records]
    elif isinstance(records, str | bytes) or not isinstance(records, Iterable):
        raise TypeError(f"records: a mapping or an iterable of mappings, not {type(records).__name__}")
    out = []
    for record in records:
        if not isinstance(record, Mapping):
            raise TypeError(f"records: each one a mapping, not {type(record).__name__}")
        out.append({str(k): _plain(v) for k, v in record.items()})
    return out


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        value = item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _refusal(status: int, doc: Any, what: str) -> str:
    """One line for an error answer; for 401 and 403, what to do about the API key.

    >>> _refusal(403, {"error": "the viewer role may not POST /api/retrain"}, "the model registry")
    'the model registry refused: the viewer role may not POST /api/retrain (HTTP 403: the API key needs another role)'
    """
    message = doc.get("error", "request failed") if isinstance(doc, dict) else "request failed"
    hint = ""
    if status == 401:
        hint = f": pass api_key= or set {CLIENT_KEY_ENV}"
    elif status == 403:
        hint = ": the API key needs another role"
    return f"{what} refused: {message} (HTTP {status}{hint})"


def _actor() -> str:
    try:
        return f"python:{getpass.getuser()}"
    except (KeyError, OSError):
        return "python"
