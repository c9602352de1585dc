"""What each topic family keeps, and for how long: the topic configs eddy creates topics with.

The reasoning per family is in docs/operations.md ("Retention and compaction"). In short:

- the data topics (``S.raw``, ``S.events``, ``S.validated``, ``S.predictions``, ``S.feedback``,
  ``S.labeled``, ``S.alerts``) are deleted after ``EDDY_RETENTION_MS``. ``S.predictions`` and
  ``S.feedback`` must outlive a learner outage plus the contract's allowed lateness
  (:func:`join_retention_problem`);
- dead letters (``S.dlq``, ``eddy.dlq``) after ``EDDY_DLQ_RETENTION_MS``, long enough to fix a
  contract and replay;
- ``S.profiles`` and ``S.models`` are compacted: every reader wants the latest record of each key
  (the reference and running profile; a version's registered artifact and its latest online
  snapshot, see :func:`snapshot_key`);
- ``eddy.model-events`` (the audit trail and alias tables) and ``eddy.model-candidates`` (the
  registry's input, which a restore rolls forward through) never expire.

Tansu ignores topic configs (it has no retention), so these matter on Apache Kafka only.

Examples
--------
>>> from eddy.core.settings import Settings
>>> topic_retention(Settings(), "demo.predictions")
{'cleanup.policy': 'delete', 'retention.ms': '604800000'}
>>> topic_retention(Settings(), "demo.models")
{'cleanup.policy': 'compact', 'segment.ms': '3600000'}
>>> topic_retention(Settings(), "eddy.model-events")
{'cleanup.policy': 'delete', 'retention.ms': '-1', 'retention.bytes': '-1'}
>>> family_of("eddy.dlq"), family_of("demo.dlq"), family_of("demo.labeled")
('dlq', 'dlq', 'labeled')
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eddy.core.settings import Settings
from eddy.core.topics import MODEL_CANDIDATES_TOPIC, MODEL_EVENTS_TOPIC, PLATFORM_DLQ_TOPIC

if TYPE_CHECKING:
    from eddy.contracts.stream import StreamContract

DATA = ("raw", "events", "validated", "predictions", "feedback", "labeled", "alerts")
DEAD_LETTERS = ("dlq",)
COMPACTED = ("profiles", "models")
FOREVER = ("model-events", "model-candidates")

# Compaction only ever cleans closed segments: an hour-long segment lets S.models shrink to one record per
# key within about an hour, where the broker's default (7 days or 1 GB) would let it grow for a week.
COMPACTED_SEGMENT_MS = 3_600_000


def family_of(topic: str) -> str:
    """The family of a topic eddy creates: the kind of a stream topic, or the platform topic's own name."""
    if topic == MODEL_EVENTS_TOPIC:
        return "model-events"
    if topic == MODEL_CANDIDATES_TOPIC:
        return "model-candidates"
    if topic == PLATFORM_DLQ_TOPIC:
        return "dlq"
    return topic.rpartition(".")[2]


def topic_retention(settings: Settings, topic: str) -> dict[str, str]:
    """The cleanup and retention configs of ``topic``; empty for a topic eddy does not know (broker defaults)."""
    family = family_of(topic)
    if family in DATA:
        return {"cleanup.policy": "delete", "retention.ms": str(settings.retention_ms)}
    if family in DEAD_LETTERS:
        return {"cleanup.policy": "delete", "retention.ms": str(settings.dlq_retention_ms)}
    if family == "profiles":
        return {"cleanup.policy": "compact"}
    if family == "models":
        return {"cleanup.policy": "compact", "segment.ms": str(COMPACTED_SEGMENT_MS)}
    if family in FOREVER:
        # retention.bytes too: a broker-wide log.retention.bytes must not expire the audit trail either.
        return {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}
    return {}


def snapshot_key(name: str, version: int, registered: bool = False) -> str:
    """The key of a model snapshot on ``S.models``: compaction keeps the newest record of each.

    One key per version, so a challenger's snapshots never compact away the champion's (they share
    the model name); the registry's snapshot of a version's registered artifact has a key of its
    own, so learning's progress never compacts it away (a new learner and ``eddy backtest name@N``
    start from it).

    >>> snapshot_key("default", 2), snapshot_key("default", 2, registered=True)
    ('default@2', 'default@2/registered')
    """
    return f"{name}@{version}/registered" if registered else f"{name}@{version}"


def join_retention_problem(contract: StreamContract, settings: Settings) -> str | None:
    """Why ``S.predictions``/``S.feedback`` retention is too short for ``contract``'s join, or None.

    A label may come up to the allowed lateness after its prediction, and a restarted learner re-reads
    the input after its last checkpoint: retention must cover both, plus however long a learner may be
    down. Shorter, and labels lose their predictions to retention (dead-lettered as ``prediction_deleted``).
    """
    if settings.retention_ms < 0:
        return None
    needed = contract.allowed_lateness_ms + int(settings.checkpoint_interval_s * 1000)
    if settings.retention_ms >= needed:
        return None
    return (
        f"EDDY_RETENTION_MS={settings.retention_ms} is shorter than stream {contract.name}'s allowed lateness "
        f"({contract.allowed_lateness_ms} ms) plus the checkpoint interval ({settings.checkpoint_interval_s} s): "
        "labels can outlive their predictions"
    )
