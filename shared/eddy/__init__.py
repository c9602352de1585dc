"""eddy: streaming MLOps on Kafka. This top level is its Python API.

- :class:`eddy.Client` talks to a running stack (``eddy up``): sends events and
  labels, asks for predictions, lists, promotes and rolls back model versions,
  asks for a retrain.
- :func:`eddy.backtest` runs a backtest on pandas DataFrames, offline, through
  the production backtest engine.
- ``eddy.__version__`` is the installed version.

Everything is imported when first used, so ``import eddy`` stays light: every
service process imports this package before its own modules.

>>> import eddy
>>> sorted(eddy.__all__)
['BacktestError', 'Client', 'ClientError', '__version__', 'backtest']
>>> isinstance(eddy.__version__, str)
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eddy.api import BacktestError, backtest
    from eddy.client import Client, ClientError

    __version__: str

__all__ = ["BacktestError", "Client", "ClientError", "__version__", "backtest"]

# Where each public name is defined (imported on first use).
_LAZY = {"Client": "client", "ClientError": "client", "backtest": "api", "BacktestError": "api"}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("eddy")
        except PackageNotFoundError:  # running from a checkout that was never installed
            found = "0+unknown"
        globals()["__version__"] = found
        return found
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f"eddy.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'eddy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
