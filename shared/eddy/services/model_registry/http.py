"""The registry's REST API, served beside ``/metrics`` and ``/healthz`` (``eddy.runtime.server.serve_http``).

Reads: ``GET /api/models``, ``/api/models/show``, ``/api/models/diff``, ``/api/audit``.
Changes: ``POST /api/models/promote``, ``/api/models/rollback``, ``/api/models/archive``, ``/api/retrain``.
A change is one transaction, and its event is published before the answer
(200), so it is in effect when the client hears back; 202 says it is decided
but Kafka has not acknowledged it yet (it will be sent as soon as it can).
Experiments (backtest runs): ``GET /api/experiments``, ``/api/experiments/show``
and ``POST /api/experiments`` (201 when recorded, 200 when the same one already was).
``POST /api/audit`` records an operator action done elsewhere (``eddy dlq replay``)
in the audit log, as a model event like the others.
Every answer is JSON; errors are ``{"error": message, "status": code}``. The OpenAPI document
(``openapi.py``) is served at ``/openapi.json``.

The routes are aiohttp handlers on the server's own event loop; the registry's work (SQLite, waiting for
Kafka's acknowledgement) runs in that loop's thread pool, so a slow change never holds up another request.

With API keys configured (eddy.runtime.auth), reads need the viewer role and every POST
the operator role; the actor of a change, and the creator of an experiment, is
then the key's identity, whatever the body says. Without keys, the API is open
and the body's ``actor`` (the CLI sends the OS user) is recorded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from eddy.core.signing import KEY_AUDIT_ACTIONS
from eddy.history.dlq_tools import REPLAY_AUDIT_ACTIONS
from eddy.ml.roles import VersionKey
from eddy.runtime.http import identity, query_params
from eddy.runtime.server import HttpApi
from eddy.services.model_registry import openapi
from eddy.services.model_registry.handlers import Refused, Registry
from eddy.services.model_registry.store import ExperimentConflict, VersionRow

log = logging.getLogger(__name__)

Result = tuple[int, Any]
Read = Callable[[Registry, dict[str, Any]], Result]
# A change also gets the identity of the request's API key (None when keys are off).
Change = Callable[[Registry, dict[str, Any], str | None], Result]
MAX_AUDIT = 1000
# Operator actions done outside the registry that its audit log takes (POST /api/audit).
AUDITED_ACTIONS = REPLAY_AUDIT_ACTIONS | KEY_AUDIT_ACTIONS
MAX_CHAIN = 100
# The largest integer SQLite stores (created_at_ms): a larger one would fail the insert.
MAX_INT64 = 2**63 - 1
MAX_EXPERIMENTS = 1000
# Ids go into URLs and file names: keep them to a safe alphabet.
EXPERIMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# Fields of an experiment the registry indexes in columns; the rest of the body is its document.
EXPERIMENT_COLUMNS = ("id", "stream", "title", "created_by", "created_at_ms")


class RegistryApi:
    """The routes; they answer 503 until :meth:`attach` gives them the registry (after start-up)."""

    def __init__(self) -> None:
        self.registry: Registry | None = None
        self.publish: Callable[[], bool] = lambda: True

    def attach(self, registry: Registry, publish: Callable[[], bool]) -> None:
        self.publish = publish
        self.registry = registry

    def http_api(self) -> HttpApi:
        """The routes and their OpenAPI description, for ``eddy.runtime.service.bootstrap``."""
        return HttpApi("eddy model registry", self.routes(), openapi.PATHS, openapi.SCHEMAS, openapi.DESCRIPTION)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/models", self._read(self.list_versions)),
            web.get("/api/models/show", self._read(self.show)),
            web.get("/api/models/diff", self._read(self.diff)),
            web.get("/api/audit", self._read(self.audit)),
            web.post("/api/audit", self._change(self.record)),
            web.post("/api/models/promote", self._change(self.promote)),
            web.post("/api/models/rollback", self._change(self.rollback)),
            web.post("/api/models/archive", self._change(self.archive)),
            web.post("/api/retrain", self._change(self.retrain)),
            web.get("/api/experiments", self._read(self.list_experiments)),
            web.get("/api/experiments/show", self._read(self.show_experiment)),
            web.post("/api/experiments", self._change(self.add_experiment)),
        ]

    def _read(self, action: Read) -> Handler:
        async def read(request: web.Request) -> web.StreamResponse:
            params = query_params(request)
            return await self._answer(lambda registry: action(registry, params))

        return read

    def _change(self, action: Change) -> Handler:
        async def change(request: web.Request) -> web.StreamResponse:
            text = (await request.read()).decode("utf-8", errors="replace")
            # The identity comes from the server (the API key), never from the body.
            who = identity(request)
            return await self._answer(lambda registry: action(registry, _body(text), who))

        return change

    async def _answer(self, answer: Callable[[Registry], Result]) -> web.Response:
        """``answer``'s status and document, worked out in the loop's thread pool: it blocks (SQLite, Kafka)."""
        registry = self.registry
        if registry is None:
            return _json(503, {"error": "the model registry is starting", "status": 503})
        try:
            return _json(*await asyncio.to_thread(answer, registry))
        except Refused as exc:
            return _json(exc.status, {"error": exc.reason, "status": exc.status})
        except Exception:
            log.exception("request failed")
            return _json(500, {"error": "internal error; see the model registry's log", "status": 500})

    # -- reads ----------------------------------------------------------------------

    def list_versions(self, registry: Registry, args: dict[str, Any]) -> tuple[int, Any]:
        stream = _stream(registry, args)
        roles = registry.roles(stream)
        versions = [
            {
                "version": str(row.key),
                "name": row.name,
                "number": row.version,
                "alias": roles.alias_of(row.key),
                "parent": row.parent,
                "created_by": row.created_by,
                "created_at_ms": row.created_at_ms,
                "learned_count": row.learned_count,
                "online_learned_count": row.online_learned_count,
                "metrics": metrics_summary(row.metrics),
                "reason": row.reason,
                "sha256": row.sha256,
                "size": row.size,
            }
            for row in registry.store.versions(stream)
        ]
        challenger = roles.challenger
        doc = {"stream": stream, "champion": str(roles.champion), "canary": roles.canary, "versions": versions}
        return 200, {**doc, "challenger": str(challenger) if challenger else None}

    def show(self, registry: Registry, args: dict[str, Any]) -> tuple[int, Any]:
        stream = _stream(registry, args)
        row = registry.row(stream, _key(args, "version"))
        doc = row.to_doc()
        doc["alias"] = registry.roles(stream).alias_of(row.key)
        doc["lineage"] = [_ancestor(a, registry) for a in chain(registry, row)]
        doc["audit"] = registry.store.audit(stream, MAX_AUDIT, row.key)
        return 200, doc

    def diff(self, registry: Registry, args: dict[str, Any]) -> tuple[int, Any]:
        stream = _stream(registry, args)
        a, b = registry.row(stream, _key(args, "a")), registry.row(stream, _key(args, "b"))
        spec_a, spec_b = flatten(json.loads(a.spec)), flatten(json.loads(b.spec))
        changes = [
            {"path": path, "a": spec_a.get(path), "b": spec_b.get(path)}
            for path in sorted(spec_a.keys() | spec_b.keys())
            if spec_a.get(path) != spec_b.get(path)
        ]
        metrics_a, metrics_b = flatten(a.metrics), flatten(b.metrics)
        paths = sorted(metrics_a.keys() | metrics_b.keys())
        metrics = {p: {"a": metrics_a.get(p), "b": metrics_b.get(p)} for p in paths}
        chain_a, chain_b = [a, *chain(registry, a)], [b, *chain(registry, b)]
        in_b = {r.key for r in chain_b}
        common = next((str(r.key) for r in chain_a if r.key in in_b), None)
        return 200, {
            "stream": stream,
            "a": str(a.key),
            "b": str(b.key),
            "spec": {"same": not changes, "changes": changes},
            "metrics": metrics,
            "lineage": {"a": _lineage(chain_a), "b": _lineage(chain_b), "common_ancestor": common},
        }

    def audit(self, registry: Registry, args: dict[str, Any]) -> tuple[int, Any]:
        stream = _stream(registry, args)
        limit = _limit(args, 50, MAX_AUDIT)
        return 200, {"stream": stream, "events": registry.store.audit(stream, limit)}

    # -- experiments ----------------------------------------------------------------

    def list_experiments(self, registry: Registry, args: dict[str, Any]) -> tuple[int, Any]:
        stream = _stream(registry, args)
        limit = _limit(args, 50, MAX_EXPERIMENTS)
        return 200, {"stream": stream, "experiments": registry.store.experiments(stream, limit)}

    def show_experiment(self, registry: Registry, args: dict[str, Any]) -> tuple[int, Any]:
        experiment_id = args.get("id")
        if not experiment_id:
            raise Refused(400, "id is required: the experiment's id")
        doc = registry.store.experiment(experiment_id)
        if doc is None:
            raise Refused(404, f"no experiment {experiment_id!r}")
        return 200, doc

    def add_experiment(self, registry: Registry, body: dict[str, Any], identity: str | None) -> tuple[int, Any]:
        stream = _stream(registry, body)
        experiment_id = body.get("id") or str(uuid.uuid4())
        if not isinstance(experiment_id, str) or not EXPERIMENT_ID.fullmatch(experiment_id):
            raise Refused(400, "id must be 1 to 128 letters, digits or . _ : - (starting with a letter or digit)")
        created_at_ms = body.get("created_at_ms")
        if created_at_ms is not None and (type(created_at_ms) is not int or not 0 <= created_at_ms <= MAX_INT64):
            raise Refused(400, "created_at_ms must be epoch milliseconds (a non-negative integer)")
        doc = {k: v for k, v in body.items() if k not in EXPERIMENT_COLUMNS}
        doc.update(experiment_doc(doc))
        try:
            experiment, new = registry.store.add_experiment(
                experiment_id,
                stream,
                identity or _optional_text(body, "created_by") or "api",
                _optional_text(body, "title"),
                doc,
                created_at_ms,
            )
        except ExperimentConflict as exc:
            raise Refused(409, str(exc)) from exc
        return (201 if new else 200), {"id": experiment_id, "created": new, "experiment": experiment}

    # -- changes --------------------------------------------------------------------

    def promote(self, registry: Registry, body: dict[str, Any], identity: str | None) -> tuple[int, Any]:
        stream = _stream(registry, body)
        key = _key(body, "version")
        event = registry.promote(stream, key, _actor(body, identity), _text(body, "reason"), {"source": "api"})
        return self._applied(registry, stream, event)

    def rollback(self, registry: Registry, body: dict[str, Any], identity: str | None) -> tuple[int, Any]:
        stream = _stream(registry, body)
        to = _key(body, "to") if body.get("to") else None
        event = registry.rollback(stream, _actor(body, identity), to, _text(body, "reason"), {"source": "api"})
        return self._applied(registry, stream, event)

    def archive(self, registry: Registry, body: dict[str, Any], identity: str | None) -> tuple[int, Any]:
        stream = _stream(registry, body)
        actor = _actor(body, identity)
        event = registry.archive(stream, _key(body, "version"), actor, _text(body, "reason"), {"source": "api"})
        return self._applied(registry, stream, event)

    def retrain(self, registry: Registry, body: dict[str, Any], identity: str | None) -> tuple[int, Any]:
        stream = _stream(registry, body)
        event = registry.request_retrain(stream, _actor(body, identity), _text(body, "reason"))
        return self._applied(registry, stream, event)

    def record(self, registry: Registry, body: dict[str, Any], identity: str | None) -> tuple[int, Any]:
        """An operator action done outside the registry, in the audit log: ``{stream, action, details}``.

        Only the actions of :data:`eddy.history.dlq_tools.REPLAY_AUDIT_ACTIONS` and of
        :data:`eddy.core.signing.KEY_AUDIT_ACTIONS` (``eddy keys rotate|remove``) are taken: the entry is
        published on ``eddy.model-events``, where a request type (a promotion, say) would be applied.
        """
        stream = _stream(registry, body)
        action = body.get("action")
        # Not a string (a JSON object, say) is no action: and it could not be looked up in a set.
        if not isinstance(action, str) or action not in AUDITED_ACTIONS:
            raise Refused(400, f"action must be one of {', '.join(sorted(AUDITED_ACTIONS))}")
        details = body.get("details", {})
        if not isinstance(details, dict):
            raise Refused(400, "details must be a JSON object")
        event = registry.record_action(stream, action, _actor(body, identity), details)
        return self._applied(registry, stream, event)

    def _applied(self, registry: Registry, stream: str, event: dict[str, Any]) -> tuple[int, Any]:
        published = self.publish()
        doc = {"event": {**event, "details": json.loads(event["details"])}, "published": published}
        return (200 if published else 202), {**doc, **registry.roles(stream).to_details()}


# -- helpers ----------------------------------------------------------------------------


def chain(registry: Registry, row: VersionRow) -> list[VersionRow]:
    """The ancestors of ``row`` through ``parent``, nearest first (stops at a missing one or a cycle)."""
    out: list[VersionRow] = []
    seen = {row.key}
    parent = row.parent
    while parent and len(out) < MAX_CHAIN:
        try:
            key = VersionKey.parse(parent)
        except ValueError:
            break
        ancestor = registry.store.version(row.stream, key)
        if ancestor is None or key in seen:
            break
        seen.add(key)
        out.append(ancestor)
        parent = ancestor.parent
    return out


def _ancestor(row: VersionRow, registry: Registry) -> dict[str, Any]:
    return {
        "version": str(row.key),
        "alias": registry.roles(row.stream).alias_of(row.key),
        "created_at_ms": row.created_at_ms,
        "created_by": row.created_by,
        "reason": row.reason,
        "training_offsets": row.training_offsets,
    }


def _lineage(rows: list[VersionRow]) -> dict[str, Any]:
    head = rows[0]
    return {
        "chain": [str(r.key) for r in rows],
        "code_version": head.code_version,
        "learned_count": head.learned_count,
        "online_learned_count": head.online_learned_count,
        "training_offsets": head.training_offsets,
        "online_ranges": head.online_ranges,
        "schema_ids": head.schema_ids,
    }


def flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    """Nested JSON as ``{"a.b.0.c": leaf}``, so two documents compare path by path.

    >>> flatten({"pipeline": [{"linear_model.LogisticRegression": {"l2": 0.1}}]})
    {'pipeline.0.linear_model.LogisticRegression.l2': 0.1}
    """
    if isinstance(doc, dict) and doc:
        return {k: v for key, value in doc.items() for k, v in flatten(value, f"{prefix}{key}.").items()}
    if isinstance(doc, list) and doc:
        return {k: v for i, value in enumerate(doc) for k, v in flatten(value, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): doc}


# Leaves by these names are what a listing shows first: quality metrics rather than counts and settings.
METRIC_NAMES = ("accuracy", "log_loss", "mae", "rmse", "r2", "f1", "auc", "roc_auc", "precision", "recall", "p_value")


def metrics_summary(metrics: dict[str, Any], limit: int = 4) -> dict[str, float]:
    """A few numeric metrics, flattened, for listings: named quality metrics first, shallow paths first.

    >>> metrics_summary({"holdout": {"accuracy": 0.9, "n": 30}, "note": "x", "runs": [{"accuracy": 0.5}]})
    {'holdout.accuracy': 0.9, 'holdout.n': 30}
    """
    numbers = {
        path: value
        for path, value in flatten(metrics).items()
        if isinstance(value, int | float)
        and not isinstance(value, bool)
        and not any(part.isdigit() for part in path.split("."))  # entries of lists: per-candidate details
    }
    ranked = sorted(numbers, key=lambda p: (p.rsplit(".", 1)[-1] not in METRIC_NAMES, p.count(".")))
    return {p: numbers[p] for p in ranked[:limit]}


def _json(status: int, doc: Any) -> web.Response:
    return web.Response(body=json.dumps(doc, default=str).encode(), status=status, content_type="application/json")


def _body(text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text or "{}")
    except ValueError as exc:
        raise Refused(400, f"the body is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise Refused(400, "the body is JSON nested too deeply") from exc
    if not isinstance(doc, dict):
        raise Refused(400, "the body must be a JSON object")
    try:
        # A lone surrogate (\ud800) is valid JSON but no text: SQLite and Avro could not store it.
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Refused(400, "the body holds a lone UTF-16 surrogate (like \\ud800), which is not text") from exc
    return doc


def _stream(registry: Registry, args: dict[str, Any]) -> str:
    stream = args.get("stream")
    if not stream or not isinstance(stream, str):
        raise Refused(400, f"name the stream (stream=...); known: {', '.join(sorted(registry.contracts))}")
    registry.contract(stream)
    return stream


def _key(args: dict[str, Any], field: str) -> VersionKey:
    value = args.get(field)
    if not value or not isinstance(value, str):
        raise Refused(400, f"{field} is required: a model version like default@3")
    try:
        key = VersionKey.parse(value)
    except ValueError as exc:
        raise Refused(400, str(exc)) from exc
    if key.version > MAX_INT64:
        raise Refused(400, f"{field}: no version number is over {MAX_INT64}")
    return key


def experiment_doc(body: dict[str, Any]) -> dict[str, Any]:
    """The checked fields of an experiment's document: models, data, metrics, report, output.

    >>> experiment_doc({"models": ["default@2"], "data": {"rows": 10}, "metrics": {}})["report"] is None
    True

    Raises
    ------
    Refused
        (400) naming the first field that is missing or of the wrong type.
    """
    models = body.get("models")
    if not isinstance(models, list) or not models:
        raise Refused(400, "models must be a non-empty list (of versions like default@2, or of spec objects)")
    for i, model in enumerate(models):
        if not (isinstance(model, str) and model) and not isinstance(model, dict):
            raise Refused(400, f"models[{i}] must be a version like default@2 or a spec object")
    for field in ("data", "metrics"):
        if not isinstance(body.get(field), dict):
            raise Refused(400, f"{field} must be a JSON object")
    paths = {field: body.get(field) for field in ("report", "output")}
    for field, value in paths.items():
        if value is not None and not isinstance(value, str):
            raise Refused(400, f"{field} must be a path (a string) or null")
    return {"models": models, "data": body["data"], "metrics": body["metrics"], **paths}


def _limit(args: dict[str, Any], default: int, most: int) -> int:
    try:
        return max(1, min(most, int(args.get("limit") or default)))
    except ValueError as exc:
        raise Refused(400, f"limit must be a number, not {args.get('limit')!r}") from exc


def _optional_text(args: dict[str, Any], field: str) -> str:
    value = args.get(field)
    if value is not None and not isinstance(value, str):
        raise Refused(400, f"{field} must be a string")
    return value or ""


def _text(args: dict[str, Any], field: str) -> str:
    value = args.get(field)
    return "" if value is None else str(value)


def _actor(args: dict[str, Any], identity: str | None) -> str:
    """``user:`` and who made a change: the API key's identity when keys are on, else the body's ``actor``.

    >>> _actor({"actor": "mallory"}, "otto"), _actor({"actor": "ann"}, None), _actor({}, None)
    ('user:otto', 'user:ann', 'user:cli')
    """
    actor = identity or str(args.get("actor") or "cli")
    return actor if actor.startswith("user:") else f"user:{actor}"
