"""The composition root every service shares: settings, contracts, Kafka, registry, HTTP.

A service's ``__main__`` calls :func:`bootstrap`, builds its handler from pure
code, and hands both to a :class:`~eddy.runtime.loop.StreamLoop`.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TypeVar

from confluent_kafka import Consumer

from eddy.avro.serde import SerdeRegistry, registry_client
from eddy.contracts.stream import StreamContract, load_contracts
from eddy.core.envconfig import read_one
from eddy.core.resources import checkout_root
from eddy.core.settings import Settings, redact_url
from eddy.core.signing import KeyringSource
from eddy.core.topics import PLATFORM_TOPICS, StreamTopics
from eddy.kafka.client import NotAuthorized, consumer_config, ensure_topics, producer_config
from eddy.kafka.producer import ConfirmedProducer
from eddy.kafka.transactions import transactional_id
from eddy.runtime import gc_policy, tracing
from eddy.runtime import observability as obs
from eddy.runtime.loop import UNAUTHORIZED, Handler, StreamLoop
from eddy.runtime.server import HttpApi, HttpServer, serve_http

log = logging.getLogger(__name__)
T = TypeVar("T")
BACKGROUND_LINGER_MS = 25
# How often a start-up read the cluster's ACLs refuse is tried again.
AUTHORIZATION_RETRY_S = 5.0
# Loops that stay out of transactions even with EDDY_KAFKA_TRANSACTIONS, and why (docs/reliability.md, "Transactions").
NOT_TRANSACTIONAL = {
    "learning": "its exactness comes from its checkpoints, outside Kafka: after an aborted transaction, or a crash "
    "in one, it would not write again the labeled examples it already learned or finds in S.labeled, so "
    "read_committed readers would never see them",
}


@dataclass
class ServiceContext:
    """Everything a service needs, built once."""

    name: str
    settings: Settings
    contracts: dict[str, StreamContract]
    serdes: SerdeRegistry
    producer: ConfirmedProducer
    health: obs.Health
    stop: threading.Event
    http_port: int
    background: bool = False
    http: HttpServer | None = None
    signing_keys: KeyringSource | None = None

    @property
    def keys(self) -> KeyringSource:
        """The keyring that signs and verifies every pickle this service moves (``eddy.core.signing``).

        Read when first asked for: the services that move models (learning, inference, retraining, the model
        registry) ask at start, so a missing or unreadable keyring stops them there, with its reason; the
        others never need one.
        """
        if self.signing_keys is None:
            self.signing_keys = self.settings.keyring()
        return self.signing_keys

    def consumer(self, group_id: str, **overrides: Any) -> Consumer:
        return Consumer(consumer_config(self.settings, group_id, background=self.background, **overrides))

    def stream_loop(self, topics: list[str], handler: Handler, group: str | None = None, **options: Any) -> StreamLoop:
        """A :class:`StreamLoop` for this service, in its own consumer group (``group``, by default
        ``PREFIX-SERVICE``), with the configured batching.

        With ``EDDY_KAFKA_TRANSACTIONS`` the loop gets a transactional producer of its own (except the
        loops of ``NOT_TRANSACTIONAL``): the service's ``producer`` keeps writing outside transactions
        (learning's snapshots, inference's HTTP answers).
        """
        group = group or f"{self.settings.group_prefix}-{self.name}"
        transactional = self.settings.kafka_transactions and self.name not in NOT_TRANSACTIONAL
        if self.settings.kafka_transactions and not transactional:
            log.info("stream loop not transactional", extra={"reason": NOT_TRANSACTIONAL[self.name]})
        return StreamLoop(
            service=self.name,
            consumer=self.consumer(group),
            producer=self._loop_producer(group, topics) if transactional else self.producer,
            serdes=self.serdes,
            topics=topics,
            handler=handler,
            batch_size=self.settings.batch_size,
            batch_timeout_s=self.settings.batch_timeout_s,
            health=self.health,
            transactional=transactional,
            **options,
        )

    def _loop_producer(self, group: str, topics: list[str]) -> ConfirmedProducer:
        tid = transactional_id(group, self.settings.instance_id or socket.gethostname(), topics)
        linger = {"linger.ms": BACKGROUND_LINGER_MS} if self.background else {}
        conf = producer_config(self.settings, **linger, **{"transactional.id": tid})
        self.health.set(transactional_id=tid)
        # Delivered offsets go to the service producer's table, where code tracking them reads them.
        return ConfirmedProducer(conf, self.producer.track_offsets, self.producer.last_offsets)

    def until_authorized(self, read: Callable[[], T], what: str) -> T:
        """``read()``, tried again every few seconds while the cluster's ACLs refuse it.

        Meanwhile the service stays alive and not ready, its ``/healthz`` naming the refusal, as its stream
        loop does: a rollout waits for an operator to grant the ACLs instead of restarting it in a loop.
        Stopped while refused, it raises the refusal.
        """
        status = self.health.status
        while True:
            try:
                result = read()
            except NotAuthorized as exc:
                log.error("refused by the cluster's ACLs; trying again", extra={"action": what, "error": str(exc)})
                self.health.set(UNAUTHORIZED, authorization_error=str(exc))
                if self.stop.wait(AUTHORIZATION_RETRY_S):
                    raise
                continue
            if self.health.status == UNAUTHORIZED:
                self.health.set(status, authorization_error=None)  # what it was: granted is not yet ready
            return result

    def topics(self, kind: str) -> list[str]:
        """The topic of ``kind`` (events, predictions, ...) of every stream this process serves."""
        return [getattr(StreamTopics(s), kind) for s in self.contracts]


def bootstrap(
    name: str,
    http_api: HttpApi | None = None,
    serve: bool = True,
    background: bool = False,
) -> ServiceContext:
    """Read settings, load contracts, create topics, register schemas, start /metrics and /healthz.

    The HTTP server (``/healthz``, ``/metrics``, ``/openapi.json`` and ``http_api``'s routes) runs in a
    thread of its own with its own event loop (eddy.runtime.server), so the stream loop, which blocks the
    main thread, never waits for a request, nor a request for a batch.

    Kafka and the registry may still be starting (under ``eddy up`` or in
    Compose), so each is retried for a while before giving up with a clear error.

    A ``background`` service is off the prediction path (learning, monitoring,
    retraining): its consumers wait longer per fetch and its producer batches
    longer, which spares the broker thousands of requests a second.
    """
    settings = Settings.from_env()
    settings = Settings(**{**settings.__dict__, "service_name": name})
    obs.setup_logging(name, settings.log_level, settings.log_format)
    if tracing.configure(name, settings):
        log.info("tracing on", extra={"tracing": settings.tracing})
    stop = obs.stop_event_on_signals()
    health = obs.Health(name)
    server = serve_http(settings.http_host, settings.http_port, health, http_api) if serve else None
    if server is not None:
        log.info("serving /metrics and /healthz", extra={"url": server.url})
    contracts = load_contracts(settings.contracts_dir, settings.streams)
    topics = [t for s in contracts for t in StreamTopics(s).all()] + list(PLATFORM_TOPICS)
    retry(lambda: ensure_topics(settings, topics), "create topics", stop)
    serdes = retry(
        lambda: _registered(settings, contracts, topics),
        f"register schemas at {redact_url(settings.schema_registry_url)}",
        stop,
    )
    linger = {"linger.ms": BACKGROUND_LINGER_MS} if background else {}
    producer = ConfirmedProducer(producer_config(settings, **linger))
    health.set(streams=sorted(contracts))
    port = server.port if server is not None else 0
    gc_policy.tune_for_streaming()
    return ServiceContext(name, settings, contracts, serdes, producer, health, stop, port, background, server)


def _registered(settings: Settings, contracts: dict[str, StreamContract], topics: list[str]) -> SerdeRegistry:
    serdes = SerdeRegistry(registry_client(settings), settings.schemas_dir, contracts)
    serdes.register(topics)
    return serdes


def retry(action: Callable[[], T], what: str, stop: threading.Event | None = None, timeout_s: float = 60.0) -> T:
    """Run ``action`` until it succeeds, backing off; re-raise after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        try:
            return action()
        except Exception as exc:
            if time.monotonic() + delay > deadline or (stop is not None and stop.is_set()):
                raise RuntimeError(f"could not {what}: {exc}") from exc
            log.warning("retrying", extra={"action": what, "error": str(exc)[:300]})
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def code_version() -> str:
    """What code this is, for lineage: the checkout's git commit, else the installed distribution's version.

    ``EDDY_CODE_VERSION`` overrides both (an image build stamps its commit there).
    """
    env = read_one(Settings, "code_version")
    if env:
        return env
    root = checkout_root()
    if root is not None and (root / ".git").exists():
        try:
            out = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
            if out.stdout.strip():
                return out.stdout.strip()
        except OSError:
            pass
    try:
        return f"eddy {metadata.version('eddy')}"
    except metadata.PackageNotFoundError:
        return "unknown"
