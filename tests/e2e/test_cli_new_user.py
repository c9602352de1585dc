"""The `eddy` command as a new user meets it, against a running `eddy up --demo` (issue 20)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eddy.core.settings import REPO_ROOT
from eddy.stack.up import read_stack

from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def eddy(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eddy.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )


def test_tail_follows_status_names_its_source_and_exit_codes(tmp_path: Path, broker_kind: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDDY_")}
    env["EDDY_STATE_DIR"] = str(tmp_path / "state")
    broker = "kafka" if broker_kind == "kafka" else "tansu"
    with open(tmp_path / "up.log", "wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "eddy.cli.main", "up", "--demo", "--broker", broker],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    try:
        wait_until(lambda: (read_stack(tmp_path / "state") or {}).get("ready"), 90, what="the stack to be ready")
        first = eddy(env, "tail", "demo.predictions", "--from-beginning", "--max", "800", "--timeout", "90")
        assert len(first.stdout.splitlines()) == 800, first.stderr

        # Without --max, tail goes on past its first read of 500 records (it used to stop printing there).
        followed = eddy(env, "tail", "demo.predictions", "--from-beginning", "--timeout", "15")
        assert followed.returncode == 0, followed.stderr
        assert len(followed.stdout.splitlines()) >= 800

        status = eddy(env, "status")
        assert status.returncode == 0, status.stderr
        assert "champion default@" in status.stdout and "from the model registry at http://" in status.stdout
        roles = json.loads(eddy(env, "status", "--json").stdout)["models"]["demo"]
        listed = json.loads(eddy(env, "models", "list", "demo", "--json").stdout)
        assert roles["champion"] in (listed["champion"], *(v["version"] for v in listed["versions"]))

        for args, code, words in [
            (["tail", "no.such.topic", "--max", "1"], 1, "no topic 'no.such.topic'"),
            (["tail", "demo.predictions", "--max", "0"], 2, "--max: 0 is not a whole number above 0"),
            (["models", "show", "demo", "default"], 2, "not a model version like default@3"),
            (["models", "show", "demo", "default@99"], 1, "no model version default@99"),
            (["up"], 1, "eddy is already running"),
        ]:
            done = eddy(env, *args)
            assert done.returncode == code, (args, done.stderr)
            assert words in done.stderr and len(done.stderr.splitlines()) == 1, (args, done.stderr)
        assert eddy(env, "status").returncode == 0, "a refused second `eddy up` leaves the first one findable"

        down = eddy(env, "down")
        assert down.returncode == 0 and "eddy stopped" in down.stdout
        assert up.wait(60) == 0
        stopped = eddy(env, "status")
        assert stopped.returncode == 1 and "eddy is not running" in stopped.stderr
    finally:
        if up.poll() is None:
            up.kill()
        print((tmp_path / "up.log").read_text()[-2000:])
