"""Ingestion settings (environment variables ``EDDY_INGEST_*``)."""

from __future__ import annotations

from dataclasses import dataclass

from eddy.core.envconfig import from_env


@dataclass(frozen=True)
class IngestionConfig:
    """Limits of the HTTP gateway.

    - ``max_batch``: records per request; more is refused with 413.
    - ``max_body_bytes``: request body size; more is refused with 413.
    - ``queue_max``: records waiting for broker acknowledgement; a request that would go past it is
      refused whole with 429 and Retry-After (backpressure instead of unbounded memory).
    - ``dedup_window_s`` / ``dedup_max_ids``: an event id accepted within the window is acknowledged
      again but not produced twice.
    """

    max_batch: int = 10_000
    max_body_bytes: int = 16 * 1024 * 1024
    queue_max: int = 100_000
    dedup_window_s: float = 600.0
    dedup_max_ids: int = 1_000_000


def ingestion_config() -> IngestionConfig:
    return from_env(IngestionConfig, "EDDY_INGEST")
