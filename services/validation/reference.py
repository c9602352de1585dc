"""Reference profiles published earlier, read back so a restarted validator keeps the same reference."""

from __future__ import annotations

from typing import Any

from services.validation.profile import REFERENCE
from shared.kafka import scan
from shared.serde import SerdeError, SerdeRegistry
from shared.settings import Settings
from shared.topics import StreamTopics


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
