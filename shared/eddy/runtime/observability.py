"""Logs, metrics and health for every eddy process.

Each service exposes ``/metrics`` (Prometheus) and ``/healthz`` (JSON) on its
own port (served by eddy.runtime.server, with aiohttp) and logs one JSON object
per line. Its other routes (the model registry's API, the monitoring dashboard)
need an API key once keys are configured (see eddy.runtime.auth); ``/metrics``
and ``/healthz`` stay open for probes and Prometheus.

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
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

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


def stop_event_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so loops stop between batches and shut down cleanly."""
    stop = threading.Event()

    def _handler(signum: int, _frame: object) -> None:
        logging.getLogger("eddy").info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    return stop
