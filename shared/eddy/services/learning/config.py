"""Learning settings beyond the shared ones (``EDDY_LEARNING_*``), read by ``eddy.core.envconfig``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from eddy.core.envconfig import read_env, setting


@dataclass(frozen=True)
class JoinLimits:
    """How much of the prediction/label join learning keeps in memory, and how much input it takes at a time.

    Examples
    --------
    >>> join_limits({"EDDY_LEARNING_MAX_PENDING": "12"})
    JoinLimits(max_pending=12, max_remembered=2000000, batch_size=500, max_records_per_s=0.0)
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
    # Learning keeps one batch in flight (its checkpoints must see each batch's output acknowledged), so every
    # batch pays a broker round trip and the producer's linger. Draining a backlog with a core to itself, 5,000
    # records a batch learn twice as fast as 500 (bench_learning); in the demo stack at 5,000 events/s on 2 busy
    # cores they read half the input where 500 read 85% (docs/benchmarks.md, "Freshness under load"): 500 stays.
    batch_size: int = setting(
        500,
        "EDDY_LEARNING_BATCH_SIZE",
        "Records per micro-batch of the learning service (predictions and labels; `EDDY_BATCH_SIZE` applies to the "
        "other services). Batches fill only under load; larger ones drain a backlog faster when the learner has a "
        "core to itself (5,000: about twice as fast), but kept pace worse in a busy 2-core stack.",
        minimum=1,
    )
    # A drill, not a tuning knob: it holds the learner below its input rate to show what lagging costs.
    max_records_per_s: float = setting(
        0.0,
        "EDDY_LEARNING_MAX_RECORDS_PER_S",
        "For drills and tests: hold the learning service to this many input records a second (predictions and "
        "labels), sleeping after each batch; 0: as fast as it can. The soak test holds it at half its input rate.",
        minimum=0.0,
    )


def join_limits(env: Mapping[str, str] | None = None) -> JoinLimits:
    """Learning's join limits from ``env`` (default: the process environment)."""
    return read_env(JoinLimits, env)
