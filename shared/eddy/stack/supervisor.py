"""Supervised child processes: start, restart with back-off when they die, stop in order.

Children get their own session (Ctrl-C reaches only the supervisor, which then
stops them in reverse start order) and, on Linux, die with the supervisor even
if it is killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

MIN_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0
HEALTHY_AFTER_S = 30.0


def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """In a child between fork and exec: receive SIGTERM when the parent dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def terminate(proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM ``proc`` (continuing it first, as a stopped process cannot exit) and wait; SIGKILL past ``timeout_s``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGCONT)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    url: str | None = None
    proc: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start_at: float = 0.0
    backoff_s: float = MIN_BACKOFF_S
    history: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        self.started_at = time.monotonic()
        log.info("started", extra={"child": self.name, "pid": self.proc.pid})


class Supervisor:
    """Keeps a set of children running until told to stop."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self.children: list[Child] = []
        self.on_change = on_change or (lambda: None)

    def add(self, child: Child) -> Child:
        self.children.append(child)
        child.start()
        self.on_change()
        return child

    def tick(self) -> None:
        """Restart any child that exited, with exponential back-off against crash loops."""
        now = time.monotonic()
        changed = False
        for child in self.children:
            proc = child.proc
            if proc is None or proc.poll() is None:
                if proc is not None and now - child.started_at > HEALTHY_AFTER_S:
                    child.backoff_s = MIN_BACKOFF_S
                continue
            if child.next_start_at == 0.0:
                code = proc.returncode
                child.history.append(code)
                child.next_start_at = now + child.backoff_s
                log.warning(
                    "child exited; restarting",
                    extra={"child": child.name, "code": code, "in_s": child.backoff_s, "log": str(child.log_path)},
                )
                child.backoff_s = min(child.backoff_s * 2, MAX_BACKOFF_S)
            elif now >= child.next_start_at:
                child.next_start_at = 0.0
                child.restarts += 1
                child.start()
                changed = True
        if changed:
            self.on_change()

    def stop_all(self, timeout_s: float = 20.0) -> None:
        """SIGTERM in reverse start order, each given time to flush and commit; SIGKILL what remains."""
        for child in reversed(self.children):
            proc = child.proc
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("child ignored SIGTERM; killing", extra={"child": child.name})
                proc.kill()
                proc.wait(5)
