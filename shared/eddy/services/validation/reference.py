"""Reference profiles published earlier, read back so a restarted validator keeps the same reference."""

from __future__ import annotations

from typing import Any

from eddy.avro.serde import SerdeError, SerdeRegistry
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics
from eddy.history.reader import start_up_records
from eddy.services.validation.profile import REFERENCE

# Longer than any start-up read of a few profiles; a read that cannot finish fails the start, loudly.
TIMEOUT_S = 120.0


def published_references(settings: Settings, serdes: SerdeRegistry, streams: list[str]) -> dict[str, dict[str, Any]]:
    """The last reference profile in each stream's S.profiles."""
    found: dict[str, dict[str, Any]] = {}
    for msg in start_up_records(settings, [StreamTopics(s).profiles for s in streams], TIMEOUT_S):
        if not (msg.key() or b"").endswith(f":{REFERENCE}".encode()):
            continue
        try:
            record = serdes.for_topic(msg.topic() or "").decode(msg.value())
        except SerdeError:
            continue
        found[record["stream"]] = record
    return found
