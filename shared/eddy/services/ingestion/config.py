"""Ingestion settings (environment variables ``EDDY_INGEST_*``), read by ``eddy.core.envconfig``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from eddy.core.envconfig import read_env, setting


@dataclass(frozen=True)
class IngestionConfig:
    """Limits of the HTTP gateway.

    Examples
    --------
    >>> ingestion_config({"EDDY_INGEST_DEDUP_WINDOW_S": "60"}).dedup_window_s
    60.0
    """

    max_batch: int = setting(
        10_000, "EDDY_INGEST_MAX_BATCH", "Records per HTTP request; more is refused with 413.", minimum=1
    )
    max_body_bytes: int = setting(
        16 * 1024 * 1024, "EDDY_INGEST_MAX_BODY_BYTES", "Request body size; more is refused with 413.", minimum=1
    )
    queue_max: int = setting(
        100_000,
        "EDDY_INGEST_QUEUE_MAX",
        "Records awaiting broker acknowledgement; a request that would go past it is refused whole with 429 "
        "and Retry-After (backpressure instead of unbounded memory).",
        minimum=1,
    )
    dedup_window_s: float = setting(
        600.0,
        "EDDY_INGEST_DEDUP_WINDOW_S",
        "An event id accepted within this window is acknowledged again but not produced twice.",
        minimum=0,
    )
    dedup_max_ids: int = setting(1_000_000, "EDDY_INGEST_DEDUP_MAX_IDS", "Event ids remembered for that.", minimum=0)


def ingestion_config(env: Mapping[str, str] | None = None) -> IngestionConfig:
    """Ingestion's settings from ``env`` (default: the process environment)."""
    return read_env(IngestionConfig, env)
