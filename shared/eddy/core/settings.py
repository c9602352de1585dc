"""Process settings, read once from environment variables.

Every knob has a documented default (``docs/configuration.md`` lists them) so a
service starts with no configuration against the embedded stack, and points at a
production Kafka and Schema Registry by setting two variables (plus the
``EDDY_KAFKA_*`` security settings and the registry's basic auth where the
cluster requires them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from eddy.core.envconfig import SettingsError, read_env, setting, setting_rows, spelled
from eddy.core.resources import default_contracts_dir, default_schemas_dir
from eddy.core.signing import KeyringSource, keyring_source

REPO_ROOT = Path(__file__).resolve().parents[3]

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
ENDPOINT_IDENTIFICATION = ("https", "none")
ISOLATION_LEVELS = ("auto", "read_committed", "read_uncommitted")
EMBEDDED_BROKERS = ("tansu", "kafka")
# How a secret that is set appears wherever settings are shown.
MASK = "****"


__all__ = ["MASK", "REPO_ROOT", "Settings", "SettingsError", "redact_url", "settings_table"]


@dataclass(frozen=True)
class Settings:
    """All settings of an eddy process.

    Examples
    --------
    >>> s = Settings.from_env({"EDDY_BOOTSTRAP_SERVERS": "127.0.0.1:19092"})
    >>> s.bootstrap_servers
    '127.0.0.1:19092'
    >>> s.fetch_wait_max_ms
    100
    """

    bootstrap_servers: str = field(
        default="127.0.0.1:9092", metadata={"env": "EDDY_BOOTSTRAP_SERVERS", "doc": "Kafka bootstrap servers."}
    )
    schema_registry_url: str = field(
        default="http://127.0.0.1:8081",
        metadata={"env": "EDDY_SCHEMA_REGISTRY_URL", "doc": "Confluent-compatible schema registry URL."},
    )
    state_dir: Path = field(
        default=Path(".eddy"),
        metadata={"env": "EDDY_STATE_DIR", "doc": "Logs, checkpoints and the stack file of the embedded stack."},
    )
    schemas_dir: Path = field(
        default=default_schemas_dir(),
        metadata={
            "env": "EDDY_SCHEMAS_DIR",
            "doc": "Where the .avsc files live (default: the checkout's schemas/, else the installed package's copy).",
        },
    )
    contracts_dir: Path = field(
        default=default_contracts_dir(),
        metadata={"env": "EDDY_CONTRACTS_DIR", "doc": "Where the stream contracts (*.yaml) live: streams/ in those."},
    )
    streams: tuple[str, ...] = field(
        default=(),
        metadata={"env": "EDDY_STREAMS", "doc": "Comma-separated streams this process serves; empty means all."},
    )
    service_name: str = field(
        default="eddy", metadata={"env": "EDDY_SERVICE_NAME", "doc": "Name used in logs, metrics and groups."}
    )
    group_prefix: str = field(
        default="eddy",
        metadata={
            "env": "EDDY_GROUP_PREFIX",
            "doc": "Services consume in groups named PREFIX-SERVICE; deployments sharing a cluster need their own.",
        },
    )
    http_host: str = field(
        default="127.0.0.1", metadata={"env": "EDDY_HTTP_HOST", "doc": "Address of the /metrics and /healthz server."}
    )
    http_port: int = field(
        default=0, metadata={"env": "EDDY_HTTP_PORT", "doc": "Port of the /metrics and /healthz server (0: any free)."}
    )
    session_timeout_ms: int = field(
        default=45000,
        metadata={"env": "EDDY_SESSION_TIMEOUT_MS", "doc": "Consumer group session timeout (embedded stack: 6000)."},
    )
    fetch_wait_max_ms: int = field(
        default=100,
        metadata={"env": "EDDY_FETCH_WAIT_MAX_MS", "doc": "Longest a fetch waits for data (embedded stack: 10)."},
    )
    background_fetch_wait_max_ms: int = field(
        default=500,
        metadata={
            "env": "EDDY_BACKGROUND_FETCH_WAIT_MAX_MS",
            "doc": "Fetch wait of consumers off the prediction path: learning, monitoring, retraining, snapshot "
            "followers (embedded stack: 100).",
        },
    )
    batch_size: int = field(default=500, metadata={"env": "EDDY_BATCH_SIZE", "doc": "Records per micro-batch."})
    batch_timeout_s: float = field(
        default=0.05, metadata={"env": "EDDY_BATCH_TIMEOUT_S", "doc": "Longest wait to fill a micro-batch."}
    )
    partitions: int = field(
        default=4, metadata={"env": "EDDY_PARTITIONS", "doc": "Partitions of the per-stream topics eddy creates."}
    )
    replication_factor: int = field(
        default=1, metadata={"env": "EDDY_REPLICATION_FACTOR", "doc": "Replication factor of topics eddy creates."}
    )
    min_insync_replicas: int = field(
        default=1,
        metadata={
            "env": "EDDY_MIN_INSYNC_REPLICAS",
            "doc": "min.insync.replicas of topics eddy creates (with acks=all: replicas that must have a write).",
        },
    )
    retention_ms: int = field(
        default=7 * 24 * 3600 * 1000,
        metadata={
            "env": "EDDY_RETENTION_MS",
            "doc": "retention.ms of the data topics eddy creates (S.raw, S.events, S.validated, S.predictions, "
            "S.feedback, S.labeled, S.alerts); -1 keeps them forever. Must exceed each contract's allowed "
            "lateness plus the longest learner outage to survive.",
        },
    )
    dlq_retention_ms: int = field(
        default=30 * 24 * 3600 * 1000,
        metadata={
            "env": "EDDY_DLQ_RETENTION_MS",
            "doc": "retention.ms of the dead-letter topics eddy creates (S.dlq, eddy.dlq): how long a dead letter "
            "can still be read and replayed; -1 keeps them forever.",
        },
    )
    embedded_broker: str = field(
        default="tansu",
        metadata={
            "env": "EDDY_EMBEDDED_BROKER",
            "doc": "The broker `eddy up` starts when EDDY_BOOTSTRAP_SERVERS is unset: tansu (in memory, from pip) "
            "or kafka (Apache Kafka, installed by `eddy kafka install`; needs Java and Maven).",
        },
    )
    snapshot_interval_s: float = field(
        default=0.5,
        metadata={
            "env": "EDDY_SNAPSHOT_INTERVAL_S",
            "doc": "How often learning publishes a model snapshot for inference.",
        },
    )
    checkpoint_interval_s: float = field(
        default=5.0,
        metadata={
            "env": "EDDY_CHECKPOINT_INTERVAL_S",
            "doc": "How often learning writes its full checkpoint (model, join state, offsets).",
        },
    )
    pii_key: str = field(
        default="",
        repr=False,
        metadata={
            "env": "EDDY_PII_KEY",
            "doc": "Secret key of the keyed hash applied to the contract's pii.hash fields.",
            "secret": True,
        },
    )
    serde: str = setting(
        "fast",
        "EDDY_SERDE",
        "`fast` (fastavro) or `confluent` (confluent-kafka's AvroSerializer/AvroDeserializer): same bytes.",
        choices=("fast", "confluent"),
    )
    code_version: str = setting(
        "",
        "EDDY_CODE_VERSION",
        "The release the model registry records in each version's lineage; empty: the git commit, or unknown.",
    )
    tracing: str = setting(
        "auto",
        "EDDY_TRACING",
        "OpenTelemetry traces across the Kafka hops: `otlp` or `console` export spans, `off` never, `auto` as "
        "OTEL_TRACES_EXPORTER says (unset: off).",
        choices=("auto", "off", "otlp", "console"),
    )
    log_level: str = field(default="INFO", metadata={"env": "EDDY_LOG_LEVEL", "doc": "Python log level."})
    log_format: str = field(default="json", metadata={"env": "EDDY_LOG_FORMAT", "doc": "json or text."})
    # Kafka client security: passed to every producer, consumer and admin client (eddy.kafka.client.security_config).
    kafka_security_protocol: str = field(
        default="PLAINTEXT",
        metadata={
            "env": "EDDY_KAFKA_SECURITY_PROTOCOL",
            "doc": "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL. PLAINTEXT adds nothing to the client configs.",
        },
    )
    kafka_sasl_mechanism: str = field(
        default="SCRAM-SHA-512",
        metadata={
            "env": "EDDY_KAFKA_SASL_MECHANISM",
            "doc": "SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN; used with the SASL_* protocols.",
        },
    )
    kafka_sasl_username: str = field(
        default="",
        metadata={"env": "EDDY_KAFKA_SASL_USERNAME", "doc": "SASL user; required with the SASL_* protocols."},
    )
    kafka_sasl_password: str = field(
        default="",
        repr=False,
        metadata={
            "env": "EDDY_KAFKA_SASL_PASSWORD",
            "doc": "SASL password; required with the SASL_* protocols. Never logged or shown.",
            "secret": True,
        },
    )
    kafka_ssl_ca_location: str = field(
        default="",
        metadata={
            "env": "EDDY_KAFKA_SSL_CA_LOCATION",
            "doc": "PEM file of the CA that signed the brokers' certificates (SSL, SASL_SSL); empty: the system's.",
        },
    )
    kafka_ssl_certificate_location: str = field(
        default="",
        metadata={
            "env": "EDDY_KAFKA_SSL_CERTIFICATE_LOCATION",
            "doc": "Client certificate (PEM) for mutual TLS; set together with EDDY_KAFKA_SSL_KEY_LOCATION.",
        },
    )
    kafka_ssl_key_location: str = field(
        default="",
        metadata={"env": "EDDY_KAFKA_SSL_KEY_LOCATION", "doc": "Private key (PEM) of the client certificate."},
    )
    kafka_ssl_key_password: str = field(
        default="",
        repr=False,
        metadata={
            "env": "EDDY_KAFKA_SSL_KEY_PASSWORD",
            "doc": "Password of that private key, if it is encrypted. Never logged or shown.",
            "secret": True,
        },
    )
    kafka_ssl_endpoint_identification: str = field(
        default="https",
        metadata={
            "env": "EDDY_KAFKA_SSL_ENDPOINT_IDENTIFICATION",
            "doc": "https (check the broker's host name against its certificate) or none.",
        },
    )
    # Kafka transactions (docs/reliability.md, "Transactions"): off by default; correctness never needs them.
    kafka_transactions: bool = field(
        default=False,
        metadata={
            "env": "EDDY_KAFKA_TRANSACTIONS",
            "doc": "true: every stream loop writes each batch's output and commits its input offsets in one "
            "Kafka transaction. Only real Kafka keeps aborted records from read_committed readers.",
        },
    )
    kafka_isolation_level: str = field(
        default="auto",
        metadata={
            "env": "EDDY_KAFKA_ISOLATION_LEVEL",
            "doc": "isolation.level of every consumer: read_committed, read_uncommitted, or auto "
            "(read_committed with EDDY_KAFKA_TRANSACTIONS, else read_uncommitted).",
        },
    )
    instance_id: str = field(
        default="",
        metadata={
            "env": "EDDY_INSTANCE_ID",
            "doc": "This replica's stable name among its service's replicas, part of its transactional.id; "
            "empty: the host name. Replicas of one service on one host need one each.",
        },
    )
    schema_registry_basic_auth: str = field(
        default="",
        repr=False,
        metadata={
            "env": "EDDY_SCHEMA_REGISTRY_BASIC_AUTH",
            "doc": "user:password sent to the schema registry as HTTP basic auth. Never logged or shown.",
            "secret": True,
        },
    )
    schema_registry_ca_location: str = field(
        default="",
        metadata={
            "env": "EDDY_SCHEMA_REGISTRY_CA_LOCATION",
            "doc": "PEM file of the CA that signed an https schema registry's certificate; empty: the system's.",
        },
    )

    signing_keys_file: str = field(
        default="",
        metadata={
            "env": "EDDY_SIGNING_KEYS_FILE",
            "doc": "JSON keyring whose keys sign and verify every pickled model and checkpoint (a mounted secret; "
            "`eddy keys init` makes one). Empty: STATE_DIR/secrets/signing-keys.json, created when missing.",
        },
    )
    signing_keys: str = field(
        default="",
        repr=False,
        metadata={
            "env": "EDDY_SIGNING_KEYS",
            "doc": "Signing keys inline, KEY_ID:BASE64[,KEY_ID:BASE64...], the first one signing; wins over "
            "EDDY_SIGNING_KEYS_FILE. Never logged or shown.",
            "secret": True,
        },
    )

    def __post_init__(self) -> None:
        # Spellings librdkafka would accept anyway are normalized, so that configs and checks compare equal.
        object.__setattr__(self, "kafka_security_protocol", self.kafka_security_protocol.strip().upper())
        object.__setattr__(self, "kafka_sasl_mechanism", self.kafka_sasl_mechanism.strip().upper())
        object.__setattr__(
            self, "kafka_ssl_endpoint_identification", self.kafka_ssl_endpoint_identification.strip().lower()
        )
        object.__setattr__(self, "kafka_isolation_level", self.kafka_isolation_level.strip().lower())
        object.__setattr__(self, "embedded_broker", self.embedded_broker.strip().lower())
        _check_security(self)
        if self.embedded_broker not in EMBEDDED_BROKERS:
            raise SettingsError(
                f"EDDY_EMBEDDED_BROKER={self.embedded_broker!r} is not one of {', '.join(EMBEDDED_BROKERS)}"
            )
        if not 1 <= self.min_insync_replicas <= self.replication_factor:
            raise SettingsError(
                f"EDDY_MIN_INSYNC_REPLICAS={self.min_insync_replicas} must be between 1 and "
                f"EDDY_REPLICATION_FACTOR={self.replication_factor}"
            )
        for name, value in (("EDDY_RETENTION_MS", self.retention_ms), ("EDDY_DLQ_RETENTION_MS", self.dlq_retention_ms)):
            if value != -1 and value < 1:
                raise SettingsError(f"{name}={value} must be a positive number of milliseconds, or -1 (forever)")
        if self.kafka_isolation_level not in ISOLATION_LEVELS:
            raise SettingsError(
                f"EDDY_KAFKA_ISOLATION_LEVEL={self.kafka_isolation_level!r} is not one of {', '.join(ISOLATION_LEVELS)}"
            )

    @property
    def isolation_level(self) -> str:
        """The ``isolation.level`` stream loops consume with: ``auto`` resolved by whether they write transactions.

        Examples
        --------
        >>> Settings().isolation_level, Settings(kafka_transactions=True).isolation_level
        ('read_uncommitted', 'read_committed')
        >>> Settings(kafka_transactions=True, kafka_isolation_level="read_uncommitted").isolation_level
        'read_uncommitted'
        """
        if self.kafka_isolation_level != "auto":
            return self.kafka_isolation_level
        return "read_committed" if self.kafka_transactions else "read_uncommitted"

    def keyring(self) -> KeyringSource:
        """The signing keyring of these settings (``eddy.core.signing.keyring_source``)."""
        return keyring_source(self.signing_keys, self.signing_keys_file, self.state_dir)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default: ``os.environ``), through the one reader ``eddy.core.envconfig``."""
        return read_env(cls, env)

    def kafka_env(self) -> dict[str, str]:
        """The environment a child process needs to reach the same Kafka and registry."""
        return {
            "EDDY_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "EDDY_SCHEMA_REGISTRY_URL": self.schema_registry_url,
            "EDDY_SESSION_TIMEOUT_MS": str(self.session_timeout_ms),
            "EDDY_FETCH_WAIT_MAX_MS": str(self.fetch_wait_max_ms),
            "EDDY_BACKGROUND_FETCH_WAIT_MAX_MS": str(self.background_fetch_wait_max_ms),
            "EDDY_STATE_DIR": str(self.state_dir),
            "EDDY_SCHEMAS_DIR": str(self.schemas_dir),
            "EDDY_CONTRACTS_DIR": str(self.contracts_dir),
            "EDDY_PARTITIONS": str(self.partitions),
            "EDDY_REPLICATION_FACTOR": str(self.replication_factor),
            "EDDY_MIN_INSYNC_REPLICAS": str(self.min_insync_replicas),
            "EDDY_RETENTION_MS": str(self.retention_ms),
            "EDDY_DLQ_RETENTION_MS": str(self.dlq_retention_ms),
            "EDDY_STREAMS": ",".join(self.streams),
            "EDDY_GROUP_PREFIX": self.group_prefix,
            "EDDY_KAFKA_TRANSACTIONS": spelled(self.kafka_transactions),
            "EDDY_KAFKA_ISOLATION_LEVEL": self.kafka_isolation_level,
            **self.security_env(),
        }

    def security_env(self) -> dict[str, str]:
        """The Kafka and registry security settings as environment variables (secrets included: for children)."""
        return {f.metadata["env"]: str(getattr(self, f.name)) for f in fields(self) if f.name in _SECURITY_FIELDS}

    def shown(self) -> dict[str, str]:
        """Every setting by variable name, as it may be logged or printed: secrets masked, URL credentials too."""
        shown = {}
        for f in fields(self):
            value = getattr(self, f.name)
            text = spelled(value)
            if f.metadata.get("secret") and text:
                text = MASK
            elif f.name == "schema_registry_url":
                text = redact_url(text)
            shown[f.metadata["env"]] = text
        return shown


_SECURITY_FIELDS = frozenset(
    {
        "kafka_security_protocol",
        "kafka_sasl_mechanism",
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_ssl_ca_location",
        "kafka_ssl_certificate_location",
        "kafka_ssl_key_location",
        "kafka_ssl_key_password",
        "kafka_ssl_endpoint_identification",
        "schema_registry_basic_auth",
        "schema_registry_ca_location",
        "signing_keys_file",
        "signing_keys",
    }
)


def _check_security(settings: Settings) -> None:
    """Raise ``SettingsError`` for security settings no client could connect with.

    Settings of a protocol not in use (a CA file with PLAINTEXT, say) are ignored rather than refused:
    one environment may serve several deployments.
    """
    protocol = settings.kafka_security_protocol
    if protocol not in SECURITY_PROTOCOLS:
        raise SettingsError(f"EDDY_KAFKA_SECURITY_PROTOCOL={protocol!r} is not one of {', '.join(SECURITY_PROTOCOLS)}")
    if settings.kafka_sasl_mechanism not in SASL_MECHANISMS:
        raise SettingsError(
            f"EDDY_KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism!r} is not one of {', '.join(SASL_MECHANISMS)}"
        )
    if settings.kafka_ssl_endpoint_identification not in ENDPOINT_IDENTIFICATION:
        raise SettingsError(
            f"EDDY_KAFKA_SSL_ENDPOINT_IDENTIFICATION={settings.kafka_ssl_endpoint_identification!r} is not one of "
            f"{', '.join(ENDPOINT_IDENTIFICATION)}"
        )
    if protocol.startswith("SASL_"):
        missing = [
            name
            for name, value in (
                ("EDDY_KAFKA_SASL_USERNAME", settings.kafka_sasl_username),
                ("EDDY_KAFKA_SASL_PASSWORD", settings.kafka_sasl_password),
            )
            if not value
        ]
        if missing:
            raise SettingsError(f"EDDY_KAFKA_SECURITY_PROTOCOL={protocol} needs {' and '.join(missing)}")
    if protocol.endswith("SSL") and bool(settings.kafka_ssl_certificate_location) != bool(
        settings.kafka_ssl_key_location
    ):
        raise SettingsError(
            "mutual TLS needs both EDDY_KAFKA_SSL_CERTIFICATE_LOCATION and EDDY_KAFKA_SSL_KEY_LOCATION, or neither"
        )
    if settings.schema_registry_basic_auth:
        if ":" not in settings.schema_registry_basic_auth:
            raise SettingsError("EDDY_SCHEMA_REGISTRY_BASIC_AUTH must be user:password")
        if urlsplit(settings.schema_registry_url).username is not None:
            # The registry client refuses both; say which variables clash instead of its own message.
            raise SettingsError(
                "EDDY_SCHEMA_REGISTRY_URL carries credentials and EDDY_SCHEMA_REGISTRY_BASIC_AUTH is set: keep one"
            )


def redact_url(url: str) -> str:
    """``url`` with the password of any ``user:password@`` part masked, for logs and status output.

    Examples
    --------
    >>> redact_url("https://eddy:s3cret@registry:8081")
    'https://eddy:****@registry:8081'
    >>> redact_url("http://127.0.0.1:8081,http://u:p@other:8081")
    'http://127.0.0.1:8081,http://u:****@other:8081'
    """
    if "," in url:  # the registry client takes a comma-separated list of URLs
        return ",".join(redact_url(one) for one in url.split(","))
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{MASK}@{host}"))


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting, for the docs and ``eddy config``."""
    return setting_rows(Settings, _shown_default)


def _shown_default(default: object) -> str:
    """A default as the docs show it: paths inside the repository relative to ``<repo>``."""
    if isinstance(default, Path) and default.is_absolute() and default.is_relative_to(REPO_ROOT):
        return f"<repo>/{default.relative_to(REPO_ROOT)}"
    return spelled(default)
