"""Which learners a learning process runs, and which input partitions each of them learns from.

An exact model (``learning: {mode: exact}``) is one learner, its single writer, in process 0. A sharded
model (``{mode: sharded, shards: N}``) is ``N`` learners, shard ``s`` learning only the records of the
partitions ``p`` with ``p % N == s`` (S.predictions and S.feedback are co-partitioned and keyed by
event id, see ``eddy.contracts.learning``); with ``EDDY_LEARNING_PROCESSES=M`` process ``k`` runs the
shards ``s % M == k``. Each learner is still the single writer of its model: exact within its shard.
"""

from __future__ import annotations

from eddy.contracts.learning import shard_of_partition
from eddy.contracts.stream import ModelSpec, StreamContract
from eddy.services.learning.config import LearningProcesses

# A learner's shard: None for an exact model (it learns every partition), else the shard's number.
Shard = int | None


def owned_shards(spec: ModelSpec, processes: LearningProcesses) -> list[Shard]:
    """The shards of ``spec`` that this process learns.

    >>> from eddy.contracts.learning import LearningSpec
    >>> sharded = ModelSpec("m", (), ("x",), LearningSpec("sharded", 4))
    >>> owned_shards(sharded, LearningProcesses(2, 1)), owned_shards(sharded, LearningProcesses())
    ([1, 3], [0, 1, 2, 3])
    >>> exact = ModelSpec("m", (), ("x",))
    >>> owned_shards(exact, LearningProcesses(2, 0)), owned_shards(exact, LearningProcesses(2, 1))
    ([None], [])
    """
    if spec.learning.exact:
        return [None] if processes.index == 0 else []
    return [s for s in range(spec.shards) if s % processes.count == processes.index]


def learns_partition(shard: Shard, shards: int, partition: int) -> bool:
    """Whether the learner of ``shard`` (of a model in ``shards`` shards) learns the records of ``partition``.

    >>> learns_partition(None, 1, 5), learns_partition(1, 2, 5), learns_partition(0, 2, 5)
    (True, True, False)
    """
    return shard is None or shard_of_partition(partition, shards) == shard


def needed_partitions(contract: StreamContract, processes: LearningProcesses, partitions: int) -> list[int]:
    """The partitions of the stream's S.predictions and S.feedback this process must read: its learners' own."""
    needed: set[int] = set()
    for spec in contract.models:
        for shard in owned_shards(spec, processes):
            needed.update(p for p in range(partitions) if learns_partition(shard, spec.shards, p))
    return sorted(needed)
