"""Times as people read them: epoch milliseconds in ISO 8601, UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 in UTC, to the millisecond, with a ``Z``.

    >>> iso_utc(1700000000123), iso_utc(0)
    ('2023-11-14T22:13:20.123Z', '1970-01-01T00:00:00.000Z')
    """
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
