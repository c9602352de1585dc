"""One end of a range of a topic's history: an offset (in every partition) or a time.

``eddy replay``, ``eddy dataset export`` and ``eddy backtest`` take their
``--from`` / ``--until`` options in this one form (:func:`parse_bound`);
``--from`` is inclusive, ``--until`` exclusive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from eddy.core.times import iso_utc

EPOCH_MS_FROM = 10**11
"""A plain integer bound this large or larger is a time in epoch ms (10**11 ms: 1973-03-03), a smaller one an offset."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


class BoundError(ValueError):
    """A bound or a range that cannot be read as one: one line naming the option, fit for the CLI."""


@dataclass(frozen=True)
class Bound:
    """One end of a range: an offset (per partition) or a time in epoch milliseconds.

    ``given`` is the text it was read from (empty when built in code); it is not part of its value.
    """

    kind: Literal["offset", "time"]
    value: int
    given: str = field(default="", compare=False, repr=False)

    def __str__(self) -> str:
        if self.kind == "offset":
            return f"offset {self.value}"
        return f"{iso_utc(self.value)} ({self.value} ms)"


def parse_bound(text: str, option: str = "bound") -> Bound:
    """Read a ``--from`` / ``--until`` value.

    - ``offset:N`` is offset N; ``ms:N`` is N epoch milliseconds;
    - a plain integer below 10**11 is an offset, one of 10**11 or more is epoch milliseconds
      (every time after 1973-03-03 has at least 12 digits; no partition holds 10**11 records);
    - anything else must be an ISO 8601 time such as ``2026-11-20T10:00:00Z`` or ``2026-11-20``;
      a time without a zone is UTC. Sub-millisecond parts round up, which keeps both bounds exact
      for records, whose timestamps are whole milliseconds.

    Examples
    --------
    >>> parse_bound("42"), parse_bound("1700000000000")
    (Bound(kind='offset', value=42), Bound(kind='time', value=1700000000000))
    >>> parse_bound("2023-11-14T22:13:20Z"), parse_bound("2023-11-14T23:13:20+01:00").value
    (Bound(kind='time', value=1700000000000), 1700000000000)
    >>> parse_bound("ms:5"), parse_bound("offset:100000000000"), parse_bound(" 7 ").given
    (Bound(kind='time', value=5), Bound(kind='offset', value=100000000000), '7')

    Raises
    ------
    BoundError
        Naming ``option`` and what is accepted, when ``text`` is none of these.
    """
    s = text.strip()
    prefix, sep, rest = s.partition(":")
    if sep and prefix in ("offset", "ms"):
        if not re.fullmatch(r"\d+", rest.strip()):
            raise BoundError(f"{option} {text!r}: {prefix}: must be followed by a non-negative integer")
        return Bound("offset" if prefix == "offset" else "time", int(rest), s)
    if re.fullmatch(r"[+-]?\d+", s):
        number = int(s)
        if number < 0:
            raise BoundError(f"{option} {text!r}: offsets and times cannot be negative")
        return Bound("time" if number >= EPOCH_MS_FROM else "offset", number, s)
    try:
        when = datetime.fromisoformat(s)
    except ValueError:
        raise BoundError(
            f"{option} {text!r} is not an offset, epoch milliseconds (13 digits) or an ISO 8601 time "
            f"like 2026-11-20T10:00:00Z"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    # Ceiling division: a record (whole ms) is at or after the exact time exactly when it is at or after its ceiling.
    return Bound("time", -((_EPOCH - when) // _ONE_MS), s)


def check_range(start: Bound | None, until: Bound | None) -> None:
    """Refuse a range that is empty by construction (``until`` at or before ``start``, of the same kind).

    >>> check_range(Bound("offset", 10), Bound("offset", 5))
    Traceback (most recent call last):
    ...
    eddy.history.bounds.BoundError: --until offset 5 is not after --from offset 10: the range is empty
    """
    if start is not None and until is not None and start.kind == until.kind and until.value <= start.value:
        raise BoundError(f"--until {until} is not after --from {start}: the range is empty")
