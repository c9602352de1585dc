"""Learning settings beyond the shared ones (``EDDY_LEARNING_*``), read by ``eddy.core.envconfig``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from eddy.core.envconfig import SettingsError, read_env, setting


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


@dataclass(frozen=True)
class LearningProcesses:
    """Which share of the sharded models' shards this learning process owns (see ``eddy.services.learning.shards``).

    Process ``index`` of ``count`` learns the shards ``s`` with ``s % count == index`` of every sharded model;
    process 0 alone learns the exact models.

    Examples
    --------
    >>> learning_processes({"EDDY_LEARNING_PROCESSES": "2", "EDDY_LEARNING_PROCESS": "1"})
    LearningProcesses(count=2, index=1)
    >>> learning_processes({"EDDY_LEARNING_PROCESSES": "2", "EDDY_LEARNING_PROCESS": "2"})
    Traceback (most recent call last):
    ...
    eddy.core.envconfig.SettingsError: EDDY_LEARNING_PROCESS=2 must be below EDDY_LEARNING_PROCESSES=2 (0..1)
    """

    count: int = setting(
        1,
        "EDDY_LEARNING_PROCESSES",
        "Learning processes sharing the shards of the sharded models (`learning: {mode: sharded}` in the contract); "
        "each runs with its own `EDDY_LEARNING_PROCESS`. 1: one process learns every model and shard.",
        minimum=1,
    )
    index: int = setting(
        0,
        "EDDY_LEARNING_PROCESS",
        "This learning process's index, 0 to `EDDY_LEARNING_PROCESSES` - 1 (a StatefulSet's ordinal): it learns "
        "the shards s with s % processes == index; process 0 also learns the exact models.",
        minimum=0,
    )

    def __post_init__(self) -> None:
        if self.index >= self.count:
            raise SettingsError(
                f"EDDY_LEARNING_PROCESS={self.index} must be below EDDY_LEARNING_PROCESSES={self.count} "
                f"(0..{self.count - 1})"
            )


def learning_processes(env: Mapping[str, str] | None = None) -> LearningProcesses:
    """This process's place among the learning processes, from ``env`` (default: the process environment)."""
    return read_env(LearningProcesses, env)
