"""Where eddy's schemas and stream contracts are: the checkout's ``schemas/``, else the installed package's copy.

``schemas/`` at the top of the repository is the one source of every topic's
Avro schema and of the stream contracts (``schemas/streams/``). A wheel carries
a copy of it as ``eddy/_schemas/`` (``setup.py`` copies it at build time), so an
installed eddy runs ``eddy up --demo`` anywhere. A checkout (an editable
install) reads ``schemas/`` itself, so an edit there is seen at once.

``EDDY_SCHEMAS_DIR`` and ``EDDY_CONTRACTS_DIR`` replace either folder
(``eddy.core.settings``).

>>> default_contracts_dir() == default_schemas_dir() / "streams"
True
>>> demo_contract_path().name, demo_contract_path().is_file()
('demo.yaml', True)
"""

from __future__ import annotations

from pathlib import Path

# The ``eddy`` package directory: shared/eddy in a checkout, site-packages/eddy when installed.
PACKAGE_DIR = Path(__file__).resolve().parents[1]
PACKAGED_SCHEMAS_DIR = PACKAGE_DIR / "_schemas"
"""The copy of ``schemas/`` a wheel carries."""
DEMO_STREAM = "demo"


def checkout_root(package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The repository this package runs from, or None when it runs installed.

    A checkout is recognised by its layout, the package under ``shared/`` beside ``schemas/``, rather than by
    a path that merely exists: an installed package's parents (``lib/python3.x/...``) are no repository.

    >>> checkout_root(Path("/nowhere/site-packages/eddy")) is None
    True
    """
    root = package_dir.parent.parent
    if package_dir.parent.name == "shared" and (root / "schemas").is_dir() and (root / "pyproject.toml").is_file():
        return root
    return None


def default_schemas_dir() -> Path:
    """The folder of the platform's ``.avsc`` files: the checkout's ``schemas/``, else the packaged copy."""
    root = checkout_root()
    return root / "schemas" if root is not None else PACKAGED_SCHEMAS_DIR


def default_contracts_dir() -> Path:
    """The folder of the stream contracts: ``streams/`` in :func:`default_schemas_dir`."""
    return default_schemas_dir() / "streams"


def demo_contract_path() -> Path:
    """The demo stream's contract (``demo.yaml``), which ``eddy up --demo`` and ``eddy.backtest`` default to."""
    return default_contracts_dir() / f"{DEMO_STREAM}.yaml"
