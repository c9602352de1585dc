"""Command-line and environment settings of the registry process."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ENV_HOST: Final = "EDDY_SCHEMA_REGISTRY_HOST"
ENV_PORT: Final = "EDDY_SCHEMA_REGISTRY_PORT"
ENV_DATA_DIR: Final = "EDDY_SCHEMA_REGISTRY_DATA_DIR"

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8081  # Confluent Schema Registry's port, so default client URLs work
DEFAULT_DATA_DIR: Final = ".eddy/schema-registry"
DEFAULT_MAX_BODY_BYTES: Final = 10 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Resolved process settings.

    Attributes
    ----------
    host : str
        Interface to bind.
    port : int
        TCP port; 0 picks a free one (the startup log line shows which).
    data_dir : Path
        Where the journal lives.
    max_body_bytes : int
        Largest accepted request body; bigger ones get 413.
    log_level : str
        Python logging level name.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    log_level: str = "INFO"


def parse_settings(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from flags, falling back to environment variables, then defaults.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).
    env : mapping, optional
        Environment (default: ``os.environ``).

    Returns
    -------
    Settings
        The resolved settings; flags win over environment variables.
    """
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="python -m eddy.services.schema_registry",
        description="Confluent-compatible Avro schema registry for eddy.",
    )
    parser.add_argument("--host", default=env.get(ENV_HOST, DEFAULT_HOST), help=f"bind address (${ENV_HOST})")
    parser.add_argument(
        "--port", type=int, default=_env_int(env, ENV_PORT, DEFAULT_PORT), help=f"port, 0 = any free (${ENV_PORT})"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(env.get(ENV_DATA_DIR, DEFAULT_DATA_DIR)),
        help=f"directory for the durable journal (${ENV_DATA_DIR})",
    )
    parser.add_argument(
        "--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, help="largest accepted request body"
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING, ...)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be in [0, 65535], not {args.port}")
    return Settings(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        max_body_bytes=args.max_body_bytes,
        log_level=args.log_level.upper(),
    )


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, not {raw!r}") from None
