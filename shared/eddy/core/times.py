"""Times as people read them: epoch milliseconds in ISO 8601 (UTC) for records and documents, or on the local
clock for tables printed to a terminal."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def iso_utc(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 in UTC, to the millisecond, with a ``Z``.

    >>> iso_utc(1700000000123), iso_utc(0)
    ('2023-11-14T22:13:20.123Z', '1970-01-01T00:00:00.000Z')
    """
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def local_clock(ms: int | None) -> str:
    """Epoch milliseconds on this machine's clock, to the second, for a table's column; ``-`` for none.

    >>> local_clock(None), local_clock(0), len(local_clock(1700000000123))
    ('-', '-', 19)
    """
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"
