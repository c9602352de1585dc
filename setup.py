"""Build hook: the wheel carries ``schemas/`` as ``eddy/_schemas/``; everything else is in ``pyproject.toml``.

``schemas/`` stays the one copy in git (every topic's Avro schema and the stream
contracts); an installed eddy finds the packaged copy through
``eddy.core.resources``. An editable install copies nothing: a checkout reads
``schemas/`` itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.errors import SetupError

SCHEMAS = Path(__file__).resolve().parent / "schemas"
# Must match eddy.core.resources.PACKAGED_SCHEMAS_DIR.
PACKAGED = Path("eddy") / "_schemas"


class BuildPyWithSchemas(build_py):
    """``build_py`` that also copies ``schemas/`` into the built package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        if not any(SCHEMAS.glob("*.avsc")) or not any(SCHEMAS.glob("streams/*.yaml")):
            # A wheel without them installs fine and then fails at the first `eddy up`: refuse to build it.
            raise SetupError(f"{SCHEMAS} must hold the .avsc files and streams/*.yaml to build eddy")
        target = Path(self.build_lib) / PACKAGED
        # A stale copy from an earlier build would keep schemas deleted since.
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(SCHEMAS, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))


setup(cmdclass={"build_py": BuildPyWithSchemas})
