"""Reference profiles published earlier, read back so a restarted validator keeps the same reference."""

from __future__ import annotations

from typing import Any

from eddy.avro.serde import SerdeError, SerdeRegistry
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics
from eddy.kafka.client import scan
from eddy.services.validation.profile import REFERENCE


def published_references(settings: Settings, serdes: SerdeRegistry, streams: list[str]) -> dict[str, dict[str, Any]]:
    """The last reference profile in each stream's S.profiles."""
    found: dict[str, dict[str, Any]] = {}
    for msg in scan(settings, [StreamTopics(s).profiles for s in streams]):
        if not (msg.key() or b"").endswith(f":{REFERENCE}".encode()):
            continue
        try:
            record = serdes.for_topic(msg.topic() or "").decode(msg.value())
        except SerdeError:
            continue
        found[record["stream"]] = record
    return found
