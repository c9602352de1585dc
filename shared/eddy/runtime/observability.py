"""Logs, metrics and health for every eddy process.

Each service exposes ``/metrics`` (Prometheus) and ``/healthz`` (JSON) on its
own port and logs one JSON object per line. Its other routes (the model
registry's API, the monitoring dashboard) need an API key once keys are
configured (see eddy.runtime.auth); ``/metrics`` and ``/healthz`` stay open for
probes and Prometheus.

``/healthz`` answers two questions (:func:`health_code`): plain, whether the
process is alive (200 unless it reports "failing": a liveness probe restarts
it only then); as ``/healthz?ready=1``, whether it does its work (200 only once
its status is "ok", e.g. its stream loop consumes: a readiness probe, or a
compose healthcheck that others wait for). Both answer with the same JSON doc.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from eddy.runtime.auth import ApiKeys, Denied, needed_role

# An extra HTTP route: query parameters in, (status, content type, body) out.
Route = Callable[[dict[str, str]], tuple[int, str, bytes]]
# A route keyed "POST /path" answers POST requests; it gets the request body (UTF-8) under this parameter.
BODY_PARAM = "_body"
# When API keys are configured, a route gets the identity of the request's key under this parameter.
IDENTITY_PARAM = "_identity"
MAX_POST_BYTES = 1_000_000
# The query parameter that turns /healthz into the readiness question: ``/healthz?ready=1``.
READY_PARAM = "ready"
# The statuses in which a service does its work (a stream loop sets "ok" once it consumes); any other is not ready.
READY_STATUSES = frozenset({"ok"})
# The one status in which the process is not alive: restarting it is the remedy.
FAILING_STATUS = "failing"
# Values of READY_PARAM that still ask the liveness question.
_NOT_READINESS = frozenset({"0", "false", "no", "off"})

RECORDS_IN = Counter("eddy_records_in_total", "Records consumed.", ["service", "stream", "topic"])
RECORDS_OUT = Counter("eddy_records_out_total", "Records produced.", ["service", "stream", "topic"])
DEAD_LETTERS = Counter("eddy_dlq_total", "Records sent to the dead-letter topic.", ["service", "stream", "reason"])
BATCH_SIZE = Histogram(
    "eddy_batch_size", "Records per micro-batch.", ["service"], buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 5000)
)
BATCH_SECONDS = Histogram(
    "eddy_batch_seconds",
    "Time to handle one micro-batch, from consume to commit.",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CONSUMER_LAG = Gauge("eddy_consumer_lag", "Records behind the end of the partition.", ["service", "topic", "partition"])

_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with any ``extra=`` fields included."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class Health:
    """What ``/healthz`` reports: a status plus whatever the service adds."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.status = "starting"
        self.started_at = time.time()
        self.details: dict[str, Any] = {}
        self._lock = threading.Lock()

    def set(self, status: str | None = None, **details: Any) -> None:
        with self._lock:
            if status is not None:
                self.status = status
            self.details.update(details)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "service": self.service,
                "status": self.status,
                "uptime_s": round(time.time() - self.started_at, 1),
                **self.details,
            }


def health_code(status: str, readiness: bool) -> int:
    """The HTTP status ``/healthz`` answers for a service in ``status``.

    Parameters
    ----------
    status : str
        The service's :attr:`Health.status` ("starting", "ok", "failing", ...).
    readiness : bool
        Whether the request asks readiness (``/healthz?ready=1``) rather than liveness (``/healthz``).

    Returns
    -------
    int
        Liveness: 200 unless ``status`` is :data:`FAILING_STATUS`, so a service still starting (waiting for
        Kafka or the registry) is not restarted. Readiness: 200 only in one of :data:`READY_STATUSES`, so no
        rollout counts a pod that has not begun its work; 503 otherwise.
    """
    if readiness:
        return 200 if status in READY_STATUSES else 503
    return 503 if status == FAILING_STATUS else 200


def asks_readiness(query: str) -> bool:
    """Whether a ``/healthz`` query string asks readiness: ``ready``, ``ready=1`` or ``ready=true``, not ``ready=0``."""
    values = urllib.parse.parse_qs(query, keep_blank_values=True).get(READY_PARAM)
    return values is not None and values[0].strip().lower() not in _NOT_READINESS


def serve_http(
    host: str,
    port: int,
    health: Health,
    extra_routes: dict[str, Route] | None = None,
    keys: ApiKeys | None = None,
) -> ThreadingHTTPServer:
    """Serve ``/metrics``, ``/healthz`` and ``extra_routes`` from a daemon thread; returns the server (port bound).

    A route gets the request's query parameters (the first value of each). Routes keyed ``"POST /path"``
    answer POSTs to ``/path``, with the body as text under :data:`BODY_PARAM` (at most
    :data:`MAX_POST_BYTES`); every other route answers GET only.

    ``extra_routes`` need an API key when ``keys`` (by default those of :meth:`ApiKeys.from_env`) are
    configured: the viewer role to GET, operator to POST (see eddy.runtime.auth). A route then gets the key's
    identity under :data:`IDENTITY_PARAM`, which a client cannot set. ``/metrics`` and ``/healthz`` are
    always open: Kubernetes probes and Prometheus scrape them without a key. ``/healthz`` is the liveness
    answer, ``/healthz?ready=1`` the readiness one (:func:`health_code`), both with ``health``'s JSON doc.
    """
    routes = dict(extra_routes or {})
    # Loaded only for a server with an API, so a bad key setting stops that service, not every one.
    guard = keys if keys is not None else (ApiKeys.from_env() if routes else ApiKeys())

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest())
            elif path == "/healthz":
                doc = health.snapshot()
                code = health_code(doc["status"], asks_readiness(query))
                self._send(code, "application/json", json.dumps(doc).encode())
            elif path in routes:
                params = _query_params(query)
                if self._authorized("GET", path, params):
                    self._send(*routes[path](params))
            else:
                self._send(404, "application/json", b'{"error": "not found"}')

        def do_POST(self) -> None:
            path, _, query = self.path.partition("?")
            route = routes.get(f"POST {path}")
            length = int(self.headers.get("Content-Length") or 0)
            if route is None or length > MAX_POST_BYTES:
                self.close_connection = True  # the body is left unread
                code, error = (404, "not found") if route is None else (413, "request body too large")
                self._send(code, "application/json", json.dumps({"error": error}).encode())
                return
            params = _query_params(query)
            # A refused request's body is left unread, so its answer closes the connection (and says so).
            keep_open, self.close_connection = self.close_connection, True
            if not self._authorized("POST", path, params):
                return
            self.close_connection = keep_open
            params[BODY_PARAM] = self.rfile.read(length).decode("utf-8", errors="replace")
            self._send(*route(params))

        def _authorized(self, method: str, path: str, params: dict[str, str]) -> bool:
            """Whether the request's key may use the route; if not, the 401 or 403 is sent."""
            verdict = guard.check(dict(self.headers.items()), needed_role(method), f"{method} {path}")
            if isinstance(verdict, Denied):
                self._send(verdict.status, "application/json", json.dumps(verdict.body()).encode(), verdict.headers)
                return False
            if verdict.authenticated:
                params[IDENTITY_PARAM] = verdict.name
            return True

        def _send(self, code: int, ctype: str, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                # Without the header a keep-alive client sends its next request on the closing connection
                # and finds it closed without an answer.
                self.send_header("Connection", "close")
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def _query_params(query: str) -> dict[str, str]:
    """The first value of each query parameter, less those the server sets itself (body, identity)."""
    params = {k: v[0] for k, v in urllib.parse.parse_qs(query).items()}
    return {k: v for k, v in params.items() if k not in (BODY_PARAM, IDENTITY_PARAM)}


def stop_event_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so loops stop between batches and shut down cleanly."""
    stop = threading.Event()

    def _handler(signum: int, _frame: object) -> None:
        logging.getLogger("eddy").info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    return stop
