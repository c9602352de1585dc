"""Process settings, read once from environment variables.

Every knob has a documented default (``docs/configuration.md`` lists them) so a
service starts with no configuration against the embedded stack, and points at a
production Kafka and Schema Registry by setting two variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


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
        default=REPO_ROOT / "schemas", metadata={"env": "EDDY_SCHEMAS_DIR", "doc": "Where the .avsc files live."}
    )
    contracts_dir: Path = field(
        default=REPO_ROOT / "schemas" / "streams",
        metadata={"env": "EDDY_CONTRACTS_DIR", "doc": "Where the stream contracts (*.yaml) live."},
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
        metadata={
            "env": "EDDY_PII_KEY",
            "doc": "Secret key of the keyed hash applied to the contract's pii.hash fields.",
        },
    )
    log_level: str = field(default="INFO", metadata={"env": "EDDY_LOG_LEVEL", "doc": "Python log level."})
    log_format: str = field(default="json", metadata={"env": "EDDY_LOG_FORMAT", "doc": "json or text."})

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default: ``os.environ``)."""
        source = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = source.get(f.metadata["env"])
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, f.type, raw)
        return cls(**values)  # type: ignore[arg-type]

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
            "EDDY_STREAMS": ",".join(self.streams),
            "EDDY_GROUP_PREFIX": self.group_prefix,
        }


def _convert(name: str, type_name: object, raw: str) -> object:
    kind = str(type_name)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind.startswith("tuple"):
            return tuple(s.strip() for s in raw.split(",") if s.strip())
    except ValueError as exc:
        raise ValueError(f"setting {name}: cannot read {raw!r} as {kind}") from exc
    return raw


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting, for the docs and ``eddy config``."""
    rows = []
    for f in fields(Settings):
        default = f.default
        shown = ",".join(default) if isinstance(default, tuple) else str(default)
        if isinstance(default, Path) and default.is_absolute():
            shown = f"<repo>/{default.relative_to(REPO_ROOT)}"
        rows.append((f.metadata["env"], shown, f.metadata["doc"]))
    return rows
