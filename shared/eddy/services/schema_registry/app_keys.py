"""Typed keys for objects stored on the aiohttp application."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from .metrics import RegistryMetrics
from .service import RegistryService

SERVICE: Final = web.AppKey("service", RegistryService)
METRICS: Final = web.AppKey("metrics", RegistryMetrics)
STARTED_AT: Final = web.AppKey("started_at", float)
