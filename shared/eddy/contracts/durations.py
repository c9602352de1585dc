"""Durations in contracts (``500ms``, ``30s``, ``15m``, ``2h``, ``7d``), and the error every contract section raises."""

from __future__ import annotations

import re
from typing import Any

from eddy.contracts.shapes import DURATION_PATTERN


class ContractError(ValueError):
    """A contract that does not parse or contradicts its schema."""


def parse_duration_ms(value: Any, what: str = "duration") -> int:
    """Milliseconds from ``500ms``, ``30s``, ``15m``, ``2h``, ``7d`` or a plain number of milliseconds.

    >>> parse_duration_ms("90s"), parse_duration_ms("2h"), parse_duration_ms(250)
    (90000, 7200000, 250)
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = re.fullmatch(DURATION_PATTERN, str(value))
    if not match:
        raise ContractError(f"{what} {value!r} is not a duration like 500ms, 30s, 15m, 2h or 7d")
    number, unit = float(match.group(1)), match.group(2)
    return int(number * {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[unit])
