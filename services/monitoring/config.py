"""Monitoring settings (environment variables ``EDDY_MONITORING_*``)."""

from __future__ import annotations

from services.monitoring.handlers import MonitorConfig
from shared.envconfig import from_env


def monitor_config() -> MonitorConfig:
    """``EDDY_MONITORING_MIN_EXAMPLES``, ``_RESOLVE_AFTER``, ``_REMEMBER``, ``_TICK_S``, ``_HISTORY``.

    Window sizes, thresholds and the drift detector are per stream, in the contract's ``monitoring:``.
    """
    return from_env(MonitorConfig, "EDDY_MONITORING")
