"""faust-streaming apps on eddy's topics: Confluent-wire Avro through the schema registry, string keys.

Install with ``pip install 'eddy[faust]'``. A faust agent reads and writes eddy's topics with eddy's own serde
(``eddy.avro.serde``): values are dicts of the topic's schema (``schemas/*.avsc``, or the stream contract's
event schema), written with the id the registry holds for the topic, so eddy's services read what a faust app
produces and the other way round. Keys are UTF-8 strings (the event id), as eddy writes them.

- ``eddy_app(app_id, settings)``: a ``faust.App`` on eddy's broker (``EDDY_BOOTSTRAP_SERVERS`` and the
  ``EDDY_KAFKA_*`` security settings);
- ``eddy_topic(app, topic)``: any eddy topic as a faust topic with its codec and key type;
  ``predictions_topic(app, stream)`` and its siblings name a stream's topics through ``StreamTopics``;
- ``EddyCodec``: the faust codec itself, for apps that build their topics themselves.

A faust app reads what is in a topic, committed or not: under ``EDDY_KAFKA_TRANSACTIONS`` it also sees the
records of aborted transactions unless it runs with faust's own ``processing_guarantee="exactly_once"``.

Examples
--------
A faust app that prints every served prediction (``docs/examples/faust_predictions.py`` runs this)::

    app = eddy_app("prediction-printer", Settings.from_env(), web_enabled=False)
    predictions = predictions_topic(app, "demo")

    @app.agent(predictions)
    async def show(stream):
        async for event_id, prediction in stream.items():
            if prediction["served"]:
                print(event_id, prediction["model_name"], prediction["prediction"])
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from eddy.avro.serde import JsonSerde, SerdeError, SerdeRegistry, TopicSerde, registry_client
from eddy.contracts.stream import load_contracts
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics

EXTRA_HINT = "pip install 'eddy[faust]'"

try:
    import faust
    from aiokafka.codec import has_lz4
    from faust.serializers.codecs import Codec
except ModuleNotFoundError as exc:  # the one place eddy imports faust: say which extra brings it
    raise ModuleNotFoundError(
        f"eddy.integrations.faust needs faust-streaming ({exc.name} is missing): {EXTRA_HINT}", name=exc.name
    ) from exc
# eddy's producers compress with lz4, which aiokafka (faust's client) reads only with its lz4 extra; without it
# the first fetch of an eddy topic would crash the worker.
if not has_lz4():
    raise ModuleNotFoundError(
        f"eddy.integrations.faust needs aiokafka's lz4 codec to read eddy's topics: {EXTRA_HINT}", name="cramjam"
    )


class EddyCodec(Codec):
    """A faust codec for one eddy topic: its values through eddy's serde, in the Confluent wire format.

    faust chains codecs (``codec | other``) by cloning them with their keyword arguments, so the serde is
    kept as one.

    Examples
    --------
    >>> codec = EddyCodec(JsonSerde("demo.raw"))
    >>> codec.dumps({"event_id": "e1", "x0": 1.5})
    b'{"event_id":"e1","x0":1.5}'
    >>> codec.loads(b'{"event_id":"e1"}')
    {'event_id': 'e1'}
    >>> codec.loads(b"[1]")
    Traceback (most recent call last):
    ...
    eddy.avro.serde.SerdeError: a raw record must be a JSON object, got list
    """

    def __init__(self, serde: TopicSerde | JsonSerde, children: tuple[Any, ...] | None = None, **kwargs: Any) -> None:
        super().__init__(children=children, serde=serde, **kwargs)
        self.serde = serde

    def _loads(self, s: bytes) -> dict[str, Any]:
        return self.serde.decode(s)

    def _dumps(self, s: Any) -> bytes:
        if not isinstance(s, Mapping):
            raise SerdeError(
                f"{self.serde.topic}: a value must be a dict of the topic's schema, got {type(s).__name__}"
            )
        return self.serde.encode(dict(s))


@lru_cache(maxsize=16)
def serdes_for(settings: Settings) -> SerdeRegistry:
    """eddy's serde of the settings' registry, schemas and contracts, shared by every topic of a process."""
    contracts = load_contracts(settings.contracts_dir, settings.streams)
    return SerdeRegistry(registry_client(settings), settings.schemas_dir, contracts)


def eddy_codec(topic: str, settings: Settings | None = None) -> EddyCodec:
    """The codec of ``topic``, with its schema registered (or found) in the settings' registry now.

    Raises
    ------
    KeyError
        For a topic of no known stream, or one that carries raw bytes (the dead-letter topics).

    Examples
    --------
    >>> mock = Settings(schema_registry_url="mock://")  # confluent-kafka's in-process registry
    >>> codec = eddy_codec("demo.feedback", mock)
    >>> data = codec.dumps({"event_id": "e1", "label": True, "label_time_ms": 1, "source": None})
    >>> data[:1], codec.loads(data)["label"]
    (b'\\x00', True)
    """
    return EddyCodec(serdes_for(settings or Settings.from_env()).for_topic(topic))


def eddy_topic(app: faust.App, topic: str, settings: Settings | None = None, **options: Any) -> faust.TopicT:
    """``topic`` as a topic of ``app``: string keys, dict values through its ``EddyCodec``.

    ``options`` go to ``app.topic`` (``partitions``, ``acks``, ...).

    Examples
    --------
    >>> mock = Settings(schema_registry_url="mock://")
    >>> app = eddy_app("doc-app", mock)
    >>> topic = eddy_topic(app, "demo.alerts", mock)
    >>> topic.get_topic_name(), topic.key_type, type(topic.value_serializer).__name__
    ('demo.alerts', <class 'str'>, 'EddyCodec')
    """
    return app.topic(
        topic,
        key_type=str,
        key_serializer="raw",
        value_type=None,
        value_serializer=eddy_codec(topic, settings),
        **options,
    )


def predictions_topic(app: faust.App, stream: str, settings: Settings | None = None, **options: Any) -> faust.TopicT:
    """``S.predictions``: every model's answer for every validated event, keyed by event id.

    Examples
    --------
    >>> mock = Settings(schema_registry_url="mock://")
    >>> predictions_topic(eddy_app("doc-app", mock), "demo", mock).get_topic_name()
    'demo.predictions'
    """
    return eddy_topic(app, StreamTopics(stream).predictions, settings, **options)


def validated_topic(app: faust.App, stream: str, settings: Settings | None = None, **options: Any) -> faust.TopicT:
    """``S.validated``: events that passed their stream's contract (the event schema of the contract)."""
    return eddy_topic(app, StreamTopics(stream).validated, settings, **options)


def feedback_topic(app: faust.App, stream: str, settings: Settings | None = None, **options: Any) -> faust.TopicT:
    """``S.feedback``: labels, keyed by the event id they label; a faust app may produce them."""
    return eddy_topic(app, StreamTopics(stream).feedback, settings, **options)


def alerts_topic(app: faust.App, stream: str, settings: Settings | None = None, **options: Any) -> faust.TopicT:
    """``S.alerts``: monitoring's alerts (quality, drift, latency)."""
    return eddy_topic(app, StreamTopics(stream).alerts, settings, **options)


def eddy_app(app_id: str, settings: Settings | None = None, **options: Any) -> faust.App:
    """A faust app on the settings' Kafka cluster, with their security and topic defaults.

    ``options`` go to ``faust.App`` and win over the defaults (an in-memory table store, eddy's partition
    count and replication factor for the topics faust creates, eddy's group session timeout
    ``EDDY_SESSION_TIMEOUT_MS`` and heartbeat). The session timeout is eddy's rather than faust's 60 s
    because Tansu, the embedded broker, answers a group's first JoinGroup only after half the session
    timeout: with faust's own, a worker waited 30 s before it read a record (3 s on the embedded stack's 6 s).

    faust's ``worker`` command sets ``web_enabled`` from its own ``--with-web/--without-web`` option (on
    by default, port 6066), so an app made with ``web_enabled=False`` still runs ``worker --without-web``.

    Examples
    --------
    >>> app = eddy_app("doc-app", Settings(bootstrap_servers="k1:9092,k2:9092", session_timeout_ms=6000))
    >>> [str(url) for url in app.conf.broker], app.conf.broker_credentials
    (['kafka://k1:9092', 'kafka://k2:9092'], None)
    >>> app.conf.broker_session_timeout, app.conf.broker_heartbeat_interval
    (6.0, 1.0)
    """
    settings = settings or Settings.from_env()
    defaults: dict[str, Any] = {
        "broker": [f"kafka://{server.strip()}" for server in settings.bootstrap_servers.split(",") if server.strip()],
        "broker_credentials": credentials(settings),
        "store": "memory://",
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "broker_session_timeout": settings.session_timeout_ms / 1000,
        # As eddy's own consumers (eddy.kafka.client): a sixth of the session, within 0.5-3 s.
        "broker_heartbeat_interval": max(0.5, min(3.0, settings.session_timeout_ms / 6000)),
    }
    return faust.App(app_id, **{**defaults, **options})


def credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """faust's credentials for the ``EDDY_KAFKA_*`` security settings; None for PLAINTEXT.

    Examples
    --------
    >>> creds = credentials(Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u",
    ...                              kafka_sasl_password="p"))
    >>> creds.protocol.value, creds.mechanism.value, creds.username
    ('SASL_PLAINTEXT', 'SCRAM-SHA-512', 'u')
    """
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings) if protocol.endswith("SSL") else None
    if protocol.startswith("SASL_"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    return faust.SSLCredentials(context)


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context of the ``EDDY_KAFKA_SSL_*`` files: the system's CAs unless a CA file is named."""
    context = ssl.create_default_context(cafile=settings.kafka_ssl_ca_location or None)
    if settings.kafka_ssl_endpoint_identification == "none":
        context.check_hostname = False
    if settings.kafka_ssl_certificate_location:
        context.load_cert_chain(
            settings.kafka_ssl_certificate_location,
            settings.kafka_ssl_key_location or None,
            settings.kafka_ssl_key_password or None,
        )
    return context
