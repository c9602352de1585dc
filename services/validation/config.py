"""Validation settings (environment variables ``EDDY_VALIDATION_*``)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.envconfig import from_env


@dataclass(frozen=True)
class ValidationConfig:
    """Data profiling.

    - ``reference_size``: the first N valid records of a stream form its reference profile (exactly).
    - ``profile_interval_s``: how often the running profile is published.
    - ``profile_every``: after the reference is complete, the running profile takes every k-th valid
      record, a systematic sample that keeps profiling cheap on the hot path (1: every record).
    """

    reference_size: int = 1000
    profile_interval_s: float = 10.0
    profile_every: int = 16


def validation_config() -> ValidationConfig:
    return from_env(ValidationConfig, "EDDY_VALIDATION")
