"""Learning settings beyond the shared ones (``EDDY_LEARNING_*``), read by ``eddy.core.envconfig``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from eddy.core.envconfig import read_env, setting


@dataclass(frozen=True)
class JoinLimits:
    """How much of the prediction/label join learning keeps in memory.

    Examples
    --------
    >>> join_limits({"EDDY_LEARNING_MAX_PENDING": "12"})
    JoinLimits(max_pending=12, max_remembered=2000000)
    """

    max_pending: int = setting(
        500_000,
        "EDDY_LEARNING_MAX_PENDING",
        "Unjoined predictions (and labels) kept per stream; past it the oldest are evicted (labels to the DLQ "
        "with reason `join_expired`).",
        minimum=1,
    )
    max_remembered: int = setting(
        2_000_000, "EDDY_LEARNING_MAX_REMEMBERED", "Learned event ids remembered to refuse duplicates.", minimum=1
    )


def join_limits(env: Mapping[str, str] | None = None) -> JoinLimits:
    """Learning's join limits from ``env`` (default: the process environment)."""
    return read_env(JoinLimits, env)
