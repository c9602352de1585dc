"""The one reader of eddy's configuration: typed, validated, documented settings from environment variables.

Every setting is a field of a frozen dataclass, declared with :func:`setting`: its variable, type (the
field's annotation), default, doc line and checks live there, in one place. :func:`read_env` builds the
dataclass from an environment; :func:`setting_rows` lists its settings for ``docs/configuration.md`` and
``eddy config``. A value that cannot be read raises :class:`SettingsError` naming the variable.

Examples
--------
>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Limits:
...     max_pending: int = setting(10, "EDDY_DEMO_MAX_PENDING", "Entries kept.", minimum=1)
...     strict: bool = setting(True, "EDDY_DEMO_STRICT", "Refuse unknown fields.")
>>> read_env(Limits, {"EDDY_DEMO_MAX_PENDING": "7", "EDDY_DEMO_STRICT": "false"})
Limits(max_pending=7, strict=False)
>>> read_env(Limits, {"EDDY_DEMO_MAX_PENDING": "0"})
Traceback (most recent call last):
...
eddy.core.envconfig.SettingsError: EDDY_DEMO_MAX_PENDING=0 (Limits.max_pending) must be at least 1
"""

from __future__ import annotations

import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


class SettingsError(ValueError):
    """A setting that cannot be read, or settings that cannot work together: found at startup, naming the variable."""


def setting(
    default: Any,
    env: str,
    doc: str,
    *,
    secret: bool = False,
    choices: tuple[str, ...] = (),
    minimum: float | None = None,
    maximum: float | None = None,
) -> Any:
    """A dataclass field read from variable ``env``: its default, doc line and checks.

    ``choices`` are compared case-insensitively (the value is kept lower-cased); ``minimum``/``maximum``
    bound a number; a ``secret`` is left out of ``repr`` and masked wherever settings are shown.
    """
    metadata = {"env": env, "doc": doc, "secret": secret, "choices": choices, "minimum": minimum, "maximum": maximum}
    return field(default=default, repr=not secret, metadata=metadata)


def env_fields(cls: type) -> list[Field[Any]]:
    """The fields of dataclass ``cls`` that are read from a variable (those declared with :func:`setting`)."""
    if not is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    return [f for f in fields(cls) if "env" in f.metadata]


def read_env(cls: type[T], env: Mapping[str, str] | None = None, **given: Any) -> T:
    """An instance of dataclass ``cls``: each setting from its variable in ``env`` (default: ``os.environ``).

    An unset or empty variable leaves the default. ``given`` passes fields that are not settings (or
    overrides). Raises :class:`SettingsError`, naming the variable, for a value that cannot be read.
    """
    source = os.environ if env is None else env
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in env_fields(cls):
        raw = source.get(f.metadata["env"])
        if raw is None or raw == "" or f.name in given:
            continue
        values[f.name] = _checked(cls, f, _parse(cls, f, hints[f.name], raw))
    return cls(**values, **given)


def read_one(cls: type, name: str, env: Mapping[str, str] | None = None, default: Any = MISSING) -> Any:
    """Setting ``name`` of dataclass ``cls`` alone, read and checked like :func:`read_env` does.

    For a process that needs one setting without the checks across all of them; ``default``, when
    given, replaces the field's (a command that is quieter than a service, say).

    >>> from eddy.core.settings import Settings
    >>> read_one(Settings, "batch_size", {"EDDY_BATCH_SIZE": "64"}), read_one(Settings, "log_level", {}, "ERROR")
    (64, 'ERROR')
    """
    by_name = {f.name: f for f in env_fields(cls)}
    if name not in by_name:
        raise KeyError(f"{cls.__name__} has no setting {name!r}")
    f = by_name[name]
    raw = (os.environ if env is None else env).get(f.metadata["env"])
    if raw is None or raw == "":
        return f.default if default is MISSING else default
    return _checked(cls, f, _parse(cls, f, typing.get_type_hints(cls)[name], raw))


def explicitly_set(name: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether variable ``name`` is set to something (an empty value counts as unset, as in :func:`read_env`).

    >>> explicitly_set("EDDY_BOOTSTRAP_SERVERS", {"EDDY_BOOTSTRAP_SERVERS": ""})
    False
    """
    return bool((os.environ if env is None else env).get(name))


def spelled(value: object) -> str:
    """A value as its variable would spell it.

    >>> spelled(True), spelled(("a", "b")), spelled(0.5)
    ('true', 'a,b', '0.5')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    return ",".join(value) if isinstance(value, tuple) else str(value)


def setting_rows(cls: type, shown_default: Callable[[object], str] = spelled) -> list[tuple[str, str, str]]:
    """(variable, default, doc line) of every setting of dataclass ``cls``, in declaration order."""
    rows = []
    for f in env_fields(cls):
        default = f.default if f.default is not MISSING else None
        rows.append((f.metadata["env"], "" if default is None else shown_default(default), f.metadata["doc"]))
    return rows


def _where(cls: type, f: Field[Any], raw: object) -> str:
    return f"{f.metadata['env']}={raw!r} ({cls.__name__}.{f.name})"


def _parse(cls: type, f: Field[Any], kind: Any, raw: str) -> object:
    if kind is bool:
        word = raw.strip().lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            raise SettingsError(f"{_where(cls, f, raw)} is not true or false")
        return word in TRUE_WORDS
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise SettingsError(f"{_where(cls, f, raw)} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is Path:
        return Path(raw)
    if typing.get_origin(kind) is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if kind is str:
        return raw
    raise TypeError(f"{cls.__name__}.{f.name}: settings of type {kind!r} cannot be read from the environment")


def _checked(cls: type, f: Field[Any], value: Any) -> Any:
    choices = f.metadata.get("choices") or ()
    if choices:
        value = value.strip().lower()
        if value not in choices:
            raise SettingsError(f"{_where(cls, f, value)} is not one of {', '.join(choices)}")
    low, high = f.metadata.get("minimum"), f.metadata.get("maximum")
    if low is not None and value < low:
        raise SettingsError(f"{_where(cls, f, value)} must be at least {low}")
    if high is not None and value > high:
        raise SettingsError(f"{_where(cls, f, value)} must be at most {high}")
    return value
