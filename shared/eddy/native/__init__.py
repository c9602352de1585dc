"""The C extensions: native Avro for flat records and the linear model kernel (each optional).

Each is built at install time when a C compiler is there. ``EDDY_NATIVE``, read
once when this package is imported, says whether eddy uses them:

- ``auto`` (the default): where they were built;
- ``off``: never, every record and model takes the Python path (the CI lane that
  proves the Python path alone passes the suite runs so);
- ``on``: always, and a missing extension is an error instead of a silent
  fallback (a build that was meant to have them).

The wrappers (``eddy.avro.native``, ``eddy.ml.linear_kernel``) import the
extensions only through :func:`load`, so with ``off`` none is ever loaded.

>>> MODE in MODES
True
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

MODES = ("auto", "on", "off")


def mode_from(value: str) -> str:
    """The mode ``EDDY_NATIVE`` names; ValueError for anything else.

    >>> mode_from(" Off ")
    'off'
    """
    mode = value.strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"EDDY_NATIVE must be one of {', '.join(MODES)}, not {value!r}")
    return mode


MODE = mode_from(os.environ.get("EDDY_NATIVE", "auto"))


def load(name: str) -> ModuleType | None:
    """The extension ``eddy.native.<name>``, or None when ``EDDY_NATIVE`` is off or it was not built."""
    if MODE == "off":
        return None
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ImportError as exc:
        if MODE == "on":
            raise ImportError(f"EDDY_NATIVE=on, but {__name__}.{name} cannot be loaded: {exc}") from exc
        return None
