"""How a model learns: ``learning: {mode: exact}`` (one writer) or ``{mode: sharded, shards: N}`` (N writers).

Exact, the default, is one model learned by one writer from every label in order: the model river
would build, capped by what one process can learn. Sharded splits a model version into ``N``
independent models, each learning the labels of its share of the stream: every eddy topic is keyed
(murmur2, like Kafka's producers) and S.validated, S.predictions and S.feedback are co-partitioned,
so the record of partition ``p`` belongs to shard ``p % N``. With events keyed by event id the shards
are a uniform split of the stream; a producer keying by an entity gets one model per entity range.
The stream's partition count must be a multiple of ``N`` (see :func:`partition_problem`), so that the
shard of a key is also ``murmur2(key) % N`` (:func:`shard_of_key`), whatever the partition count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eddy.contracts.durations import ContractError

EXACT = "exact"
SHARDED = "sharded"


@dataclass(frozen=True)
class LearningSpec:
    """A model's learning mode: ``shards`` independent single writers (1: exact).

    >>> LearningSpec().exact, LearningSpec(SHARDED, 4).shards
    (True, 4)
    """

    mode: str = EXACT
    shards: int = 1

    @property
    def exact(self) -> bool:
        return self.mode == EXACT


def parse_learning(doc: Any, model: str) -> LearningSpec:
    """A model's ``learning:`` section.

    >>> parse_learning(None, "m"), parse_learning({"mode": "sharded", "shards": 2}, "m")
    (LearningSpec(mode='exact', shards=1), LearningSpec(mode='sharded', shards=2))
    >>> parse_learning({"mode": "sharded", "shards": 1}, "m")
    Traceback (most recent call last):
    ...
    eddy.contracts.durations.ContractError: model 'm': learning.shards must be an integer of at least 2, got 1
    """
    if doc is None:
        return LearningSpec()
    if not isinstance(doc, dict):
        raise ContractError(f"model {model!r}: learning must be a mapping like {{mode: sharded, shards: 2}}")
    unknown = sorted(set(doc) - {"mode", "shards"})
    if unknown:
        raise ContractError(f"model {model!r}: unknown learning key(s) {unknown}; known: mode, shards")
    mode = doc.get("mode", EXACT)
    if mode == EXACT:
        if "shards" in doc:
            raise ContractError(f"model {model!r}: learning.shards applies to mode sharded only")
        return LearningSpec()
    if mode != SHARDED:
        raise ContractError(f"model {model!r}: learning.mode {mode!r} is not one of ['exact', 'sharded']")
    shards = doc.get("shards")
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 2:
        raise ContractError(f"model {model!r}: learning.shards must be an integer of at least 2, got {shards!r}")
    return LearningSpec(SHARDED, shards)


def partition_problem(shards_of_models: dict[str, int], partitions: int, where: str) -> str | None:
    """Why ``partitions`` partitions cannot carry the models' shards (``{model: shards}``), or None.

    A shard is a set of partitions: with a partition count that is not a multiple of the shards, the
    shard of a partition would not be the shard of its keys, and inference would route HTTP requests
    to another shard than the one that learns their labels.

    >>> partition_problem({"m": 2}, 4, "s.predictions"), partition_problem({"m": 1}, 3, "s.predictions")
    (None, None)
    >>> partition_problem({"m": 2}, 3, "s.predictions")
    "s.predictions has 3 partitions: model 'm' learns in 2 shards, and a stream's partition count must be ..."
    """
    for model, shards in shards_of_models.items():
        if shards > 1 and partitions % shards:
            return (
                f"{where} has {partitions} partitions: model {model!r} learns in {shards} shards, and a stream's "
                "partition count must be a multiple of its models' shards (set EDDY_PARTITIONS, or change "
                "learning.shards)"
            )
    return None


def shard_of_partition(partition: int, shards: int) -> int:
    """The shard that learns (and serves) the records of ``partition``.

    >>> [shard_of_partition(p, 2) for p in range(4)]
    [0, 1, 0, 1]
    """
    return partition % shards


def shard_of_key(key: str, shards: int) -> int:
    """The shard of a record keyed ``key``: the shard of the partition Kafka's producers put it in.

    A producer's partition is ``murmur2(key) % partitions``; with ``partitions`` a multiple of ``shards``
    its shard is ``murmur2(key) % shards``, so a request that never went through Kafka (inference's
    HTTP predict) is answered by the shard that learns its label.

    >>> shard_of_key("e1", 2), shard_of_key("e1", 4) % 2
    (1, 1)
    """
    return murmur2(key.encode()) % shards


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of a key, made positive as its partitioner does (``& 0x7fffffff``).

    The same number Kafka's Java client and librdkafka's ``murmur2_random`` partitioner compute.

    >>> murmur2(b"21"), murmur2(b"foobar")  # Kafka's own test vectors, made positive
    (1173551340, 1357151166)
    """
    m, r, mask = 0x5BD1E995, 24, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    full = length - length % 4
    for i in range(0, full, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = (h * m) & mask
        h ^= k
    tail = length % 4
    if tail == 3:
        h ^= data[full + 2] << 16
    if tail >= 2:
        h ^= data[full + 1] << 8
    if tail >= 1:
        h ^= data[full]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h & 0x7FFFFFFF
