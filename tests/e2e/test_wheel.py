"""The wheel works outside the repository: `eddy up --demo` serves predictions, and `import eddy` backtests.

The wheel is built from a copy of exactly what the build needs (pyproject.toml,
setup.py, MANIFEST.in, README.md, schemas/, shared/), so a file the build
forgets to ship, or a stale ``build/`` of the checkout, cannot hide. It is
installed into a fresh venv in a temporary folder (its dependencies from the
package index), and everything then runs from another temporary folder with an
environment free of ``EDDY_*`` and of the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from eddy.core.settings import REPO_ROOT

from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

BUILD_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "schemas", "shared")
BUILD_S, INSTALL_S, READY_S, TAIL_S, STOP_S = 180, 240, 90, 90, 60


def run(
    argv: list[str], timeout_s: float, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to its end (within ``timeout_s``); a failure shows its output."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False, cwd=cwd, env=env)
    shown = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{shown}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.egg-info", "_schemas")
    for name in BUILD_INPUTS:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=junk)
        else:
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("wheels")
    run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-w", str(out)], BUILD_S)
    (built,) = out.glob("eddy-*.whl")
    return built


def test_the_wheel_holds_eddy_its_schemas_and_assets_and_nothing_else(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    # No top-level shared or services package: only eddy and its metadata.
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"eddy"} and len(tops) == 2, tops
    schemas = {f"eddy/_schemas/{p.relative_to(REPO_ROOT / 'schemas')}" for p in (REPO_ROOT / "schemas").rglob("*.avsc")}
    assert schemas and schemas <= names
    assert {"eddy/_schemas/streams/demo.yaml", "eddy/_schemas/streams/demo.avsc"} <= names
    dashboard = "eddy/services/monitoring/dashboard"
    assert {f"{dashboard}/index.html", f"{dashboard}/app.js", f"{dashboard}/style.css"} <= names
    assert {"eddy/__init__.py", "eddy/client.py", "eddy/api.py", "eddy/core/resources.py"} <= names
    if shutil.which("cc") or shutil.which("gcc"):
        # The native modules are optional (no compiler: the Python path), but a compiler must build them.
        native = {name for name in names if name.startswith("eddy/native/") and name.endswith(".so")}
        assert {name.split("/")[-1].split(".")[0] for name in native} >= {"_avro_native", "_linear_native"}


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", str(home / "venv")], 60)
    python = home / "venv" / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", "--find-links", str(wheel.parent), str(wheel)], INSTALL_S)
    return home / "venv"


def clean_env(state: Path) -> dict[str, str]:
    """An environment that knows nothing of the checkout: no EDDY_*, no PYTHONPATH, no virtualenv of the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDDY_", "PYTHON", "VIRTUAL_ENV"))}
    return {**env, "EDDY_STATE_DIR": str(state)}


@pytest.fixture()
def demo_stack(venv: Path, tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = clean_env(workdir / "state")
    with open(tmp_path / "up.log", "wb") as log:
        up = subprocess.Popen(
            [str(venv / "bin" / "eddy"), "up", "--demo"], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:

        def ready() -> bool:
            assert up.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
            try:
                return bool(json.loads((workdir / "state" / "stack.json").read_text()).get("ready"))
            except (OSError, ValueError):
                return False

        wait_until(ready, READY_S, 0.5, "the installed stack to be ready")
        yield workdir, env
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            code = up.wait(STOP_S)
        except subprocess.TimeoutExpired:
            up.kill()
            code = -9
        print((tmp_path / "up.log").read_text()[-2000:])
        assert code == 0, "eddy up did not stop cleanly on SIGTERM"


PREDICT = """
import eddy, json, time
deadline = time.monotonic() + 60
with eddy.Client() as client:
    while True:
        try:
            result = client.predict("demo", {"event_id": "wheel-1", "x0": 5.0, "x1": 5.0, "x2": 5.0})
            break
        except eddy.ClientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    print(json.dumps({"file": eddy.__file__, "result": result, "versions": len(client.models("demo")["versions"])}))
"""

BACKTEST = """
import eddy, json, pandas as pd
n = 300
events = pd.DataFrame({"event_id": [f"e{i}" for i in range(n)], "event_time_ms": [1000 * i for i in range(n)],
                       "x0": [i % 10 for i in range(n)], "x1": 5.0, "x2": 5.0})
labels = pd.DataFrame({"event_id": events["event_id"], "label": events["x0"] >= 5,
                       "label_time_ms": events["event_time_ms"] + 5000})
table = eddy.backtest(events, labels)
print(json.dumps({"file": eddy.__file__, "version": eddy.__version__, "rows": len(table),
                  "accuracy": table.attrs["summary"]["models"][0]["final_metric"]}))
"""


def test_installed_wheel_runs_the_demo_outside_the_repository(
    demo_stack: tuple[Path, dict[str, str]], venv: Path
) -> None:
    started = time.monotonic()
    workdir, env = demo_stack
    eddy, python = str(venv / "bin" / "eddy"), str(venv / "bin" / "python")
    tail = run([eddy, "tail", "demo.predictions", "--max", "5"], TAIL_S, cwd=workdir, env=env)
    predictions = [json.loads(line) for line in tail.stdout.splitlines() if line.startswith("{")]
    assert len(predictions) == 5 and all(p["stream"] == "demo" and "prediction" in p for p in predictions)

    answer = json.loads(run([python, "-c", PREDICT], 90, cwd=workdir, env=env).stdout)
    assert Path(answer["file"]).is_relative_to(venv), "eddy was imported from outside the venv"
    assert answer["result"][0]["status"] == "predicted" and answer["versions"] >= 1

    print(f"tail and predict from the installed wheel: {time.monotonic() - started:.1f} s")


def test_installed_wheel_backtests_a_dataframe_offline(venv: Path, tmp_path: Path) -> None:
    """After the stack is gone: `import eddy` and a backtest need nothing but the package."""
    env = clean_env(tmp_path / "state")
    done = json.loads(run([str(venv / "bin" / "python"), "-c", BACKTEST], 90, cwd=tmp_path, env=env).stdout)
    assert Path(done["file"]).is_relative_to(venv), "eddy was imported from outside the venv"
    assert done["version"] == tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert done["rows"] == 300 and done["accuracy"] > 0.9
