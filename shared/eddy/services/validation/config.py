"""Validation settings (environment variables ``EDDY_VALIDATION_*``), read by ``eddy.core.envconfig``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from eddy.core.envconfig import read_env, setting


@dataclass(frozen=True)
class ValidationConfig:
    """The fast lane and data profiling.

    Examples
    --------
    >>> validation_config({"EDDY_VALIDATION_FAST_LANE": "false"}).fast_lane
    False
    """

    fast_lane: bool = setting(
        True,
        "EDDY_VALIDATION_FAST_LANE",
        "Forward valid records without decoding them, vouched for by native code "
        "(`shared/eddy/services/validation/fastlane.py`); `false`: every record is decoded and checked in Python.",
    )
    reference_size: int = setting(
        1000,
        "EDDY_VALIDATION_REFERENCE_SIZE",
        "The first N valid records of a stream form its reference profile.",
        minimum=0,
    )
    profile_interval_s: float = setting(
        10.0,
        "EDDY_VALIDATION_PROFILE_INTERVAL_S",
        "How often the running profile is published to `S.profiles`.",
        minimum=0,
    )
    # A systematic sample keeps profiling cheap on the hot path.
    profile_every: int = setting(
        16,
        "EDDY_VALIDATION_PROFILE_EVERY",
        "After the reference, the running profile takes every k-th valid record (1: all).",
        minimum=1,
    )


def validation_config(env: Mapping[str, str] | None = None) -> ValidationConfig:
    """Validation's settings from ``env`` (default: the process environment)."""
    return read_env(ValidationConfig, env)
