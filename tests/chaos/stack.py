"""``eddy up`` for a chaos run: the same embedded stack, with the supervisor's log in JSON lines.

``python -m tests.chaos.stack`` starts exactly what ``eddy up`` starts (``eddy.stack.up.EmbeddedStack``)
and stops on SIGTERM the same way; the only difference is the log format. ``eddy up`` logs as text and
leaves out the fields a log call adds, so the exit code of a child is not in its log; here every
"started" (with the pid) and "child exited" (with the code) line is a JSON object the harness reads
to check that a SIGTERM ended a service with exit code 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from eddy.core.settings import Settings
from eddy.runtime.observability import setup_logging, stop_event_on_signals
from eddy.stack.supervisor import terminate
from eddy.stack.up import EmbeddedStack

from tests.chaos.faults import ChildEvent

SUPERVISOR_LOGGER = "eddy.stack.supervisor"


def main() -> int:
    setup_logging("eddy", "INFO", "json")
    stack = EmbeddedStack(Settings.from_env(), dict(os.environ))
    stop = stop_event_on_signals()
    try:
        stack.start()
        print("eddy is up", file=sys.stderr, flush=True)
        stack.run_until_stopped(stop)
    finally:
        stack.stop()
    return 0


def stop_stack(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Stop a stack started as a subprocess the way a user does (SIGTERM), killing it past ``timeout_s``."""
    terminate(proc, timeout_s)


def child_events(log: Path) -> list[ChildEvent]:
    """The supervisor's child starts and exits in the runner's log (a line still being written is skipped)."""
    return list(_parse(log.read_text(errors="replace").splitlines() if log.exists() else []))


def _parse(lines: Iterable[str]) -> Iterable[ChildEvent]:
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if not isinstance(doc, dict) or doc.get("logger") != SUPERVISOR_LOGGER or "child" not in doc:
            continue
        at_ms = int(float(doc["ts"]) * 1000)
        if doc.get("msg") == "started":
            yield ChildEvent(at_ms, doc["child"], "started", pid=doc.get("pid"))
        elif str(doc.get("msg", "")).startswith("child exited"):
            yield ChildEvent(at_ms, doc["child"], "exited", code=doc.get("code"))


if __name__ == "__main__":
    sys.exit(main())
