"""Learning settings beyond the shared ones (environment variables ``EDDY_LEARNING_*``)."""

from __future__ import annotations

from eddy.core.envconfig import from_env
from eddy.services.learning.handlers import JoinLimits


def join_limits() -> JoinLimits:
    """``EDDY_LEARNING_MAX_PENDING`` (unjoined entries kept per side) and ``EDDY_LEARNING_MAX_REMEMBERED``
    (learned event ids kept for de-duplication)."""
    return from_env(JoinLimits, "EDDY_LEARNING")
