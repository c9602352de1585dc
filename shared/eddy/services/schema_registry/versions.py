"""Parsing of the ``{version}`` path segment, shared by several routes."""

from __future__ import annotations

from typing import Final

from . import errors

LATEST: Final = -1
_MAX_VERSION: Final = 2**31 - 1


def parse_version(text: str) -> int:
    """Parse a version path segment like Confluent's ``VersionId``.

    Parameters
    ----------
    text : str
        ``"latest"`` (any case), ``"-1"`` or an integer in ``[1, 2^31-1]``.

    Returns
    -------
    int
        The version number, or :data:`LATEST` (-1).

    Raises
    ------
    RegistryError
        42202 for anything else (``"abc"``, ``"0"``, ``"-2"``, overflow).
    """
    stripped = text.strip()
    if stripped.lower() == "latest":
        return LATEST
    try:
        value = int(stripped)
    except ValueError:
        raise errors.invalid_version(text) from None
    if value == LATEST or 1 <= value <= _MAX_VERSION:
        return value
    raise errors.invalid_version(text)
