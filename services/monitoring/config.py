"""Monitoring settings (environment variables ``EDDY_MONITORING_*``)."""

from __future__ import annotations

from services.monitoring.handlers import MonitorConfig
from shared.envconfig import from_env


def monitor_config() -> MonitorConfig:
    """``EDDY_MONITORING_QUALITY_WINDOW``, ``_RESOLVE_AFTER``, ``_MIN_EXAMPLES``, ``_REMEMBER``."""
    return from_env(MonitorConfig, "EDDY_MONITORING")
