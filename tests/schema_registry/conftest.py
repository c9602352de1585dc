"""Fixtures that run the real registry process on 127.0.0.1 with a free port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"schema registry listening on (http://127\.0\.0\.1:(\d+))")
START_TIMEOUT_S = 20.0


@dataclass
class RegistryProcess:
    """A running ``python -m eddy.services.schema_registry`` and what it printed."""

    proc: subprocess.Popen[str]
    url: str
    data_dir: Path
    log_lines: list[str] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None


def start_registry(data_dir: Path, extra_args: tuple[str, ...] = ()) -> RegistryProcess:
    """Start the registry on port 0 and wait for its startup line.

    Parameters
    ----------
    data_dir : Path
        The registry's data directory.
    extra_args : tuple of str
        Additional command-line flags.

    Returns
    -------
    RegistryProcess
        Once the startup line (with the real port) has been printed.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("EDDY_SCHEMA_REGISTRY_HOST", "EDDY_SCHEMA_REGISTRY_PORT", "EDDY_SCHEMA_REGISTRY_DATA_DIR"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eddy.services.schema_registry",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            *extra_args,
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        # Keeps draining stderr for the whole life of the process so it never blocks on a full pipe.
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            match = _LISTENING.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready.wait(timeout=0.05):
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"registry did not start in time; log: {lines}")
    if not found:
        proc.wait(timeout=5)
        raise AssertionError(f"registry exited with {proc.returncode}; log: {lines}")
    return RegistryProcess(proc, found[0], data_dir, lines)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    """A fresh registry process with its own data directory."""
    process = start_registry(tmp_path / "data")
    yield process
    if process.alive():
        process.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def shared_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """One registry process shared by a test module (tests use distinct subjects)."""
    process = start_registry(tmp_path_factory.mktemp("registry") / "data")
    yield process
    if process.alive():
        process.stop(signal.SIGKILL)


@pytest.fixture
def http(shared_registry: RegistryProcess) -> Iterator[httpx.Client]:
    """An HTTP client bound to the shared registry."""
    with httpx.Client(base_url=shared_registry.url, timeout=10.0) as client:
        yield client
