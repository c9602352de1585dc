"""Command-line and environment settings of the registry process.

The environment is read by the one reader, ``eddy.core.envconfig``; flags win over it.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from eddy.core.envconfig import SettingsError, read_env, setting

ENV_HOST: Final = "EDDY_SCHEMA_REGISTRY_HOST"
ENV_PORT: Final = "EDDY_SCHEMA_REGISTRY_PORT"
ENV_DATA_DIR: Final = "EDDY_SCHEMA_REGISTRY_DATA_DIR"
DEFAULT_PORT: Final = 8081  # Confluent Schema Registry's port, so default client URLs work
DEFAULT_DATA_DIR: Final = Path(".eddy/schema-registry")
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
        Largest accepted request body; bigger ones get 413 (a flag only).
    log_level : str
        Python logging level name (a flag only).

    Examples
    --------
    >>> parse_settings([], {"EDDY_SCHEMA_REGISTRY_PORT": "9999"}).port
    9999
    """

    host: str = setting("127.0.0.1", ENV_HOST, "Address the schema registry process binds (`--host` wins).")
    port: int = setting(
        DEFAULT_PORT,
        ENV_PORT,
        "Port of the schema registry process, 0: any free (`--port` wins). Under `eddy up`: the port of the "
        "embedded registry, default a free one.",
        minimum=0,
        maximum=65535,
    )
    data_dir: Path = setting(
        DEFAULT_DATA_DIR,
        ENV_DATA_DIR,
        "Directory of the schema registry's durable journal (`--data-dir` wins).",
    )
    max_body_bytes: int = field(default=DEFAULT_MAX_BODY_BYTES)
    log_level: str = field(default="INFO")


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
    try:
        base = read_env(Settings, env)
    except SettingsError as exc:
        raise SystemExit(str(exc)) from None
    parser = argparse.ArgumentParser(
        prog="python -m eddy.services.schema_registry",
        description="Confluent-compatible Avro schema registry for eddy.",
    )
    parser.add_argument("--host", default=base.host, help=f"bind address (${ENV_HOST})")
    parser.add_argument("--port", type=int, default=base.port, help=f"port, 0 = any free (${ENV_PORT})")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=base.data_dir,
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
