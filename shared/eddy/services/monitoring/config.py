"""Monitoring settings (environment variables ``EDDY_MONITORING_*``), read by ``eddy.core.envconfig``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from eddy.core.envconfig import read_env, setting


@dataclass(frozen=True)
class MonitorConfig:
    """Service-wide settings; per-stream ones (windows, thresholds, the drift detector) live in the contract's
    ``monitoring:``.

    Examples
    --------
    >>> monitor_config({"EDDY_MONITORING_RESOLVE_AFTER": "34"}).resolve_after
    34
    """

    min_examples: int = setting(
        200, "EDDY_MONITORING_MIN_EXAMPLES", "Labeled examples before a drift may raise an alert.", minimum=1
    )
    resolve_after: int = setting(
        2000,
        "EDDY_MONITORING_RESOLVE_AFTER",
        "Labeled examples without drift before a concept-drift alert resolves.",
        minimum=1,
    )
    remember: int = setting(
        200_000,
        "EDDY_MONITORING_REMEMBER",
        "(model, event id) pairs remembered to count each labeled example once.",
        minimum=1,
    )
    tick_s: float = setting(
        1.0,
        "EDDY_MONITORING_TICK_S",
        "How often gauges and the dashboard document are refreshed (one dashboard point per tick).",
        minimum=0.001,
    )
    history: int = setting(600, "EDDY_MONITORING_HISTORY", "Dashboard points kept (600 ticks: ten minutes).", minimum=1)


def monitor_config(env: Mapping[str, str] | None = None) -> MonitorConfig:
    """Monitoring's settings from ``env`` (default: the process environment)."""
    return read_env(MonitorConfig, env)
