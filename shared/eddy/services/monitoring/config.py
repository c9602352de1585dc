"""Monitoring settings (environment variables ``EDDY_MONITORING_*``)."""

from __future__ import annotations

from eddy.core.envconfig import from_env
from eddy.services.monitoring.handlers import MonitorConfig


def monitor_config() -> MonitorConfig:
    """``EDDY_MONITORING_MIN_EXAMPLES``, ``_RESOLVE_AFTER``, ``_REMEMBER``, ``_TICK_S``, ``_HISTORY``.

    Window sizes, thresholds and the drift detector are per stream, in the contract's ``monitoring:``.
    """
    return from_env(MonitorConfig, "EDDY_MONITORING")
