"""Process behaviour: startup line, signals, flags versus environment, a locked data dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from eddy.services.schema_registry.config import parse_settings

from .conftest import REPO_ROOT, start_registry

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_zero(tmp_path: Path, sig: int) -> None:
    registry = start_registry(tmp_path / "data")
    with httpx.Client(base_url=registry.url, timeout=10) as client:
        assert client.post("/subjects/s/versions", json={"schema": '"int"'}).status_code == 200
    assert registry.stop(sig) == 0
    assert any("shutting down" in line for line in registry.log_lines)


def test_startup_line_names_the_real_port(tmp_path: Path) -> None:
    registry = start_registry(tmp_path / "data")
    try:
        port = int(registry.url.rsplit(":", 1)[1])
        assert port > 0
        assert httpx.get(f"{registry.url}/", timeout=10).json() == {}
    finally:
        registry.stop()


def test_second_process_on_same_data_dir_fails(tmp_path: Path) -> None:
    registry = start_registry(tmp_path / "data")
    try:
        other = subprocess.run(
            [
                sys.executable,
                "-m",
                "eddy.services.schema_registry",
                "--port",
                "0",
                "--data-dir",
                str(tmp_path / "data"),
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert other.returncode == 1
        assert "in use" in other.stderr
    finally:
        registry.stop()


def test_flags_win_over_environment(tmp_path: Path) -> None:
    env = {
        "EDDY_SCHEMA_REGISTRY_HOST": "127.0.0.2",
        "EDDY_SCHEMA_REGISTRY_PORT": "9999",
        "EDDY_SCHEMA_REGISTRY_DATA_DIR": str(tmp_path / "env"),
    }
    from_env = parse_settings([], env)
    assert (from_env.host, from_env.port, from_env.data_dir) == ("127.0.0.2", 9999, tmp_path / "env")
    flags = parse_settings(["--host", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path / "flag")], env)
    assert (flags.host, flags.port, flags.data_dir) == ("127.0.0.1", 0, tmp_path / "flag")
    defaults = parse_settings([], {})
    assert (defaults.host, defaults.port) == ("127.0.0.1", 8081)


def test_env_vars_configure_the_process(tmp_path: Path) -> None:
    env = {**os.environ, "EDDY_SCHEMA_REGISTRY_PORT": "not-a-port"}
    bad = subprocess.run(
        [sys.executable, "-m", "eddy.services.schema_registry", "--data-dir", str(tmp_path / "d")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode != 0
    assert "EDDY_SCHEMA_REGISTRY_PORT" in bad.stderr
