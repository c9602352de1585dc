"""Validation settings (environment variables ``EDDY_VALIDATION_*``)."""

from __future__ import annotations

from dataclasses import dataclass

from eddy.core.envconfig import from_env


@dataclass(frozen=True)
class ValidationConfig:
    """The fast lane and data profiling.

    - ``fast_lane``: forward valid records without decoding them, checked by native code
      (``fastlane.py``); off, every record is decoded and checked in Python.

    - ``reference_size``: the first N valid records of a stream form its reference profile (exactly).
    - ``profile_interval_s``: how often the running profile is published.
    - ``profile_every``: after the reference is complete, the running profile takes every k-th valid
      record, a systematic sample that keeps profiling cheap on the hot path (1: every record).
    """

    fast_lane: bool = True
    reference_size: int = 1000
    profile_interval_s: float = 10.0
    profile_every: int = 16


def validation_config() -> ValidationConfig:
    return from_env(ValidationConfig, "EDDY_VALIDATION")
