"""Inference settings (environment variables ``EDDY_INFERENCE_*``), read by ``eddy.core.envconfig``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from eddy.core.envconfig import read_env, setting


@dataclass(frozen=True)
class InferenceConfig:
    """The synchronous prediction API, ``POST /v1/streams/{S}/predict`` (``http.py``).

    Examples
    --------
    >>> inference_config({"EDDY_INFERENCE_HTTP_MAX_BATCH": "7"}).http_max_batch
    7
    """

    http_port: int = setting(
        0,
        "EDDY_INFERENCE_HTTP_PORT",
        "Port of inference's prediction API, `POST /v1/streams/{S}/predict` (0: any free; `/healthz` reports "
        "its URL as `predict_url`). Binds `EDDY_HTTP_HOST`.",
        minimum=0,
        maximum=65535,
    )
    http_max_batch: int = setting(
        1000, "EDDY_INFERENCE_HTTP_MAX_BATCH", "Records per prediction request; more is refused with 413.", minimum=1
    )
    http_max_body_bytes: int = setting(
        4 * 1024 * 1024,
        "EDDY_INFERENCE_HTTP_MAX_BODY_BYTES",
        "Prediction request body size; more is refused with 413.",
        minimum=1,
    )


def inference_config(env: Mapping[str, str] | None = None) -> InferenceConfig:
    """Inference's settings from ``env`` (default: the process environment)."""
    return read_env(InferenceConfig, env)
