"""Reading a service's own settings (beyond shared Settings) from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def from_env(cls: type[T], prefix: str, env: Mapping[str, str] | None = None) -> T:
    """An instance of dataclass ``cls`` with each field read from ``PREFIX_FIELD`` when set.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Limits:
    ...     max_pending: int = 10
    ...     strict: bool = True
    >>> from_env(Limits, "EDDY_LEARNING", {"EDDY_LEARNING_MAX_PENDING": "7", "EDDY_LEARNING_STRICT": "false"})
    Limits(max_pending=7, strict=False)
    """
    source = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        name = f"{prefix}_{f.name.upper()}"
        raw = source.get(name)
        if raw:
            kind: type = type(f.default) if f.default is not None else str
            try:
                values[f.name] = _boolean(raw) if kind is bool else kind(raw)
            except ValueError as exc:
                raise ValueError(f"{name}: cannot read {raw!r} as {kind.__name__}") from exc
    return cls(**values)


def _boolean(raw: str) -> bool:
    """``true``/``false`` and their usual spellings; anything else is an error, not a silent True."""
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{raw!r} is not a boolean (true or false)")
