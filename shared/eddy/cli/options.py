"""Argument types for ``eddy``'s options: a bad value is a usage error (exit code 2) that names what is wanted.

argparse turns the ``ValueError`` these raise into ``eddy X: error: argument --max: ...``,
so a wrong number is refused before the command touches Kafka or the registry.
"""

from __future__ import annotations

import argparse

from eddy.ml.roles import VersionKey


def positive_int(text: str) -> int:
    """A whole number above 0 (``--max``, ``--limit``, ``--nodes``).

    >>> positive_int("3")
    3
    >>> positive_int("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: 0 is not a whole number above 0
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number above 0")
    return value


def non_negative_int(text: str) -> int:
    """A whole number, 0 or more (``--count``, where 0 means "until stopped"; ``--drift-at``).

    >>> non_negative_int("0")
    0
    """
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number of 0 or more")
    return value


def positive_number(text: str) -> float:
    """A number above 0 (``--timeout`` in seconds, ``--rate`` in events per second).

    >>> positive_number("1.5")
    1.5
    >>> positive_number("-1")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: -1 is not a number above 0
    """
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number above 0")
    return value


def non_negative_number(text: str) -> float:
    """A number, 0 or more (``--label-delay`` in seconds).

    >>> non_negative_number("0")
    0.0
    """
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number of 0 or more")
    return value


def model_version(text: str) -> str:
    """A model version like ``default@2``, checked before it is sent to the registry.

    >>> model_version("default@2")
    'default@2'
    >>> model_version("default")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: 'default' is not a model version like default@3
    """
    try:
        return str(VersionKey.parse(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")  # refused by every check above, with the text as given
