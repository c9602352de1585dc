"""The C extensions under AddressSanitizer and UndefinedBehaviorSanitizer.

The sources named in pyproject.toml's ext-modules are compiled again with
``-fsanitize=address,undefined`` into a temporary directory, and
``workload.py`` drives them there (random and hostile input, every error path)
in a child Python that has the ASan runtime preloaded. ``PYTHONMALLOC=malloc``
lets ASan see Python's own objects too, so a C path that reads a value Python
code has freed under it is caught; CPython's own allocations at exit are not
ours to judge (``detect_leaks=0``: ``test_leaks.py`` checks growth instead).
Any sanitizer report fails the test with the report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from eddy.core.settings import REPO_ROOT

ROUNDS = 25
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


def compiler() -> str | None:
    cc = shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None
    runtime = asan_runtime(cc)
    return cc if runtime is not None else None


def asan_runtime(cc: str) -> str | None:
    """The shared ASan runtime the compiler links against, to preload into Python (which was built without it)."""
    name = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return name if os.path.isabs(name) and os.path.exists(name) else None


def extensions() -> list[tuple[str, list[Path]]]:
    """(module name, sources) of each C extension, as pyproject.toml declares them."""
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return [
        (ext["name"], [REPO_ROOT / source for source in ext["sources"]])
        for ext in config["tool"]["setuptools"]["ext-modules"]
    ]


def build(cc: str, name: str, sources: list[Path], out: Path) -> Path:
    target = out / (name.rsplit(".", 1)[1] + sysconfig.get_config_var("EXT_SUFFIX"))
    command = [
        cc,
        "-shared",
        "-fPIC",
        "-O1",
        "-g",
        *SANITIZE,
        f"-I{sysconfig.get_paths()['include']}",
        *map(str, sources),
        "-o",
        str(target),
        "-lm",
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stderr}"
    return target


@pytest.mark.skipif(compiler() is None, reason="no C compiler with AddressSanitizer here")
def test_the_extensions_are_clean_under_asan_and_ubsan(tmp_path: Path) -> None:
    cc = compiler()
    assert cc is not None
    built = {name: build(cc, name, sources, tmp_path) for name, sources in extensions()}
    # The child loads the sanitized builds under the installed names before anything imports them.
    preload = "; ".join(
        f"_s = importlib.util.spec_from_file_location({name!r}, {str(path)!r}); "
        f"sys.modules[{name!r}] = importlib.util.module_from_spec(_s); _s.loader.exec_module(sys.modules[{name!r}])"
        for name, path in built.items()
    )
    code = (
        f"import importlib.util, sys; {preload}; "
        "from tests.native import workload; from eddy.avro import native; from eddy.ml import linear_kernel; "
        f"assert native._avro_native.__file__.startswith({str(tmp_path)!r}); "
        "assert linear_kernel.native is not None; "
        f"print('calls:', workload.main({ROUNDS}))"
    )
    env = {
        **os.environ,
        "LD_PRELOAD": asan_runtime(cc) or "",
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:exitcode=86",
        "UBSAN_OPTIONS": "print_stacktrace=1:exitcode=87",
        "PYTHONMALLOC": "malloc",
        "EDDY_NATIVE": "on",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=240
    )
    report = done.stderr[-12000:]
    assert done.returncode == 0, f"exit {done.returncode}\n{report}"
    assert "runtime error" not in done.stderr and "ERROR: AddressSanitizer" not in done.stderr, report
    assert done.stdout.startswith("calls:"), done.stdout
