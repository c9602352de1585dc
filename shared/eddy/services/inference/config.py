"""Inference settings (environment variables ``EDDY_INFERENCE_*``)."""

from __future__ import annotations

from dataclasses import dataclass

from eddy.core.envconfig import from_env


@dataclass(frozen=True)
class InferenceConfig:
    """The synchronous prediction API, ``POST /v1/streams/{S}/predict`` (``http.py``).

    - ``http_port``: its port (0: any free one); ``/healthz`` reports its URL as ``predict_url``.
    - ``http_max_batch``: records per request; more is refused with 413.
    - ``http_max_body_bytes``: request body size; more is refused with 413.
    """

    http_port: int = 0
    http_max_batch: int = 1000
    http_max_body_bytes: int = 4 * 1024 * 1024


def inference_config() -> InferenceConfig:
    return from_env(InferenceConfig, "EDDY_INFERENCE")
