"""Seeded faults for a running stack: SIGKILL, SIGTERM, and SIGSTOP with SIGCONT after a pause.

A :class:`Fault` plan is drawn from a seed before the run, so a run can be repeated fault for fault;
the :class:`FaultScheduler` then applies it to the stack ``eddy up`` runs, finding each service's
current pid in the stack file. What happened is kept in a :class:`FaultRecord` per fault (the fault
log printed with the verdict).

- SIGKILL: the supervisor restarts the service; what it had consumed but not committed is read again.
- SIGTERM: the service must flush, commit and exit 0 (checked from the supervisor's log); it is
  restarted too.
- SIGSTOP, then SIGCONT after a pause: some pauses are longer than the consumer session timeout, so the
  group evicts the stopped member and it must rejoin and carry on without losing or redoing work.

A fault is applied only to a service that is up and healthy (a service still starting after an earlier
fault is waited for, within bounds), and one service is never hit by two faults at once.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from eddy.stack.up import pid_alive, read_stack, service_health

FaultKind = Literal["SIGKILL", "SIGTERM", "SIGSTOP"]
# Every service eddy up supervises, both registries included (the broker is not: a restart of the
# embedded broker loses every topic, which is not a fault eddy is meant to survive).
ALL_SERVICES = (
    "schema_registry",
    "ingestion",
    "validation",
    "model_registry",
    "inference",
    "learning",
    "monitoring",
    "retraining",
)
# The kinds a plan cycles through: a stop shorter and one longer than the session timeout.
KIND_CYCLE: tuple[tuple[FaultKind, str], ...] = (
    ("SIGKILL", ""),
    ("SIGTERM", ""),
    ("SIGSTOP", "short"),
    ("SIGSTOP", "long"),
)
READY_TIMEOUT_S = 60.0
POLL_S = 0.25


@dataclass(frozen=True)
class Fault:
    """One planned fault: ``at_s`` seconds after the load starts, ``kind`` to ``service``.

    ``pause_s`` is how long a SIGSTOP lasts before its SIGCONT (0 for the other kinds).
    """

    at_s: float
    service: str
    kind: FaultKind
    pause_s: float = 0.0

    def describe(self) -> str:
        pause = f" {self.pause_s:.1f}s" if self.kind == "SIGSTOP" else ""
        return f"{self.kind}{pause}"


def plan_faults(
    seed: int,
    count: int,
    window_s: tuple[float, float],
    targets: Sequence[str] = ALL_SERVICES,
    session_timeout_s: float = 6.0,
) -> list[Fault]:
    """``count`` faults at seeded random times in ``window_s``, in time order.

    Services are dealt from a seeded shuffle of ``targets`` and kinds from a seeded shuffle of
    :data:`KIND_CYCLE`, each reshuffled once used up, so a plan of ``len(targets)`` faults hits every
    target and every four faults include each kind. A short stop lasts 0.5-3 s; a long one 1.2-1.7
    session timeouts, which gets the stopped member evicted from its consumer groups.

    >>> plan = plan_faults(3, 8, (2.0, 20.0))
    >>> plan == plan_faults(3, 8, (2.0, 20.0)), sorted({f.service for f in plan}) == sorted(ALL_SERVICES)
    (True, True)
    >>> [f.at_s for f in plan] == sorted(f.at_s for f in plan)
    True
    """
    rng = random.Random(f"faults-{seed}")
    start, end = window_s
    times = sorted(round(rng.uniform(start, end), 2) for _ in range(count))
    services: list[str] = []
    kinds: list[tuple[FaultKind, str]] = []
    plan = []
    for at in times:
        if not services:
            services = rng.sample(list(targets), len(targets))
        if not kinds:
            kinds = rng.sample(list(KIND_CYCLE), len(KIND_CYCLE))
        kind, length = kinds.pop()
        pause = 0.0
        if length == "short":
            pause = round(rng.uniform(0.5, 3.0), 2)
        elif length == "long":
            pause = round(rng.uniform(1.2, 1.7) * session_timeout_s, 2)
        plan.append(Fault(at, services.pop(), kind, pause))
    return plan


@dataclass
class FaultRecord:
    """What became of one planned fault (times are epoch milliseconds).

    ``skipped`` says why a fault was not applied (its service never became healthy in time). The exit
    code and the restart are filled in afterwards from the supervisor's log (:func:`match_exits`).
    """

    fault: Fault
    injected_ms: int | None = None
    pid: int | None = None
    resumed_ms: int | None = None
    skipped: str = ""
    exit_code: int | None = None
    exited_ms: int | None = None
    restarted_pid: int | None = None
    restarted_ms: int | None = None

    def line(self, started_ms: int) -> str:
        at = f"+{(self.injected_ms - started_ms) / 1000:6.1f}s" if self.injected_ms else "    -    "
        what = f"{at}  {self.fault.service:<16} {self.fault.describe():<14}"
        if self.skipped:
            return f"{what} skipped: {self.skipped}"
        outcome = f"pid {self.pid}"
        if self.fault.kind == "SIGSTOP":
            held = ((self.resumed_ms or 0) - (self.injected_ms or 0)) / 1000
            outcome += f", SIGCONT after {held:.1f}s"
        elif self.exit_code is None:
            outcome += ", exit not seen"
        else:
            outcome += f", exit {self.exit_code}"
            if self.exited_ms and self.injected_ms:
                outcome += f" after {(self.exited_ms - self.injected_ms) / 1000:.1f}s"
        if self.restarted_pid:
            outcome += f", restarted as {self.restarted_pid}"
        return f"{what} {outcome}"


def now_ms() -> int:
    return int(time.time() * 1000)


class FaultScheduler:
    """Applies a plan to the stack described in ``state_dir``'s stack file, on time, one event at a time.

    Injections and resumptions share one timeline (a heap), so a SIGCONT is never late because another
    fault waits for its service to become healthy.
    """

    def __init__(
        self,
        plan: Sequence[Fault],
        state_dir: Path,
        send: Callable[[int, int], None] = os.kill,
        ready_timeout_s: float = READY_TIMEOUT_S,
    ) -> None:
        self.plan = list(plan)
        self.state_dir = state_dir
        self.send = send
        self.ready_timeout_s = ready_timeout_s
        self.records = [FaultRecord(f) for f in self.plan]
        self._stopped: set[int] = set()

    def run(self, stop: threading.Event, started: float | None = None) -> list[FaultRecord]:
        """Apply every fault of the plan, timed from ``started`` (monotonic; default now)."""
        origin = time.monotonic() if started is None else started
        timeline: list[tuple[float, int, str, int]] = []  # (when, order, action, record index)
        busy: set[str] = set()
        for index, fault in enumerate(self.plan):
            heapq.heappush(timeline, (origin + fault.at_s, index, "inject", index))
        order = len(self.plan)
        try:
            while timeline and not stop.is_set():
                when, _, action, index = timeline[0]
                wait = when - time.monotonic()
                if wait > 0:
                    stop.wait(min(wait, POLL_S))
                    continue
                heapq.heappop(timeline)
                record = self.records[index]
                if action == "resume":
                    self._resume(record)
                    busy.discard(record.fault.service)
                    continue
                outcome = self._inject(record, busy, origin)
                if outcome == "retry":
                    heapq.heappush(timeline, (time.monotonic() + POLL_S, index, "inject", index))
                elif outcome == "stopped":
                    order += 1
                    heapq.heappush(timeline, (time.monotonic() + record.fault.pause_s, order, "resume", index))
        finally:
            for record in self.records:
                if record.pid in self._stopped:
                    self._resume(record)
        return self.records

    def _inject(self, record: FaultRecord, busy: set[str], origin: float) -> str:
        """Send the fault if its service is ready: ``done``, ``stopped`` (a SIGCONT is due), ``retry``, ``skipped``."""
        fault = record.fault
        service = self._service(fault.service)
        ready = fault.service not in busy and service is not None and _healthy(service)
        if not ready:
            if time.monotonic() - origin - fault.at_s > self.ready_timeout_s:
                record.skipped = f"not healthy within {self.ready_timeout_s:.0f}s of its time"
                return "skipped"
            return "retry"
        assert service is not None
        pid = int(service["pid"])
        record.pid, record.injected_ms = pid, now_ms()
        self.send(pid, getattr(signal, fault.kind))
        if fault.kind == "SIGSTOP":
            self._stopped.add(pid)
            busy.add(fault.service)
            return "stopped"
        return "done"

    def _resume(self, record: FaultRecord) -> None:
        if record.pid is None or record.pid not in self._stopped:
            return
        self._stopped.discard(record.pid)
        with contextlib.suppress(ProcessLookupError):
            self.send(record.pid, signal.SIGCONT)
        record.resumed_ms = now_ms()

    def _service(self, name: str) -> dict[str, Any] | None:
        stack = read_stack(self.state_dir) or {}
        service: dict[str, Any] | None = stack.get("services", {}).get(name)
        return service


def _healthy(service: dict[str, Any]) -> bool:
    return pid_alive(service.get("pid")) and service_health(service.get("url"), 1.0).get("status") == "ok"


@dataclass(frozen=True)
class ChildEvent:
    """A supervisor log line about a child: ``started`` (with its pid) or ``exited`` (with its code)."""

    at_ms: int
    child: str
    kind: Literal["started", "exited"]
    pid: int | None = None
    code: int | None = None


def match_exits(records: Sequence[FaultRecord], events: Sequence[ChildEvent]) -> list[ChildEvent]:
    """Fill in each SIGKILL/SIGTERM record's exit code and restart; return the exits no fault explains.

    The n-th exit of a service after a fault belongs to that fault if the fault killed or terminated
    it; a stopped service is not expected to exit at all.
    """
    exits = sorted((e for e in events if e.kind == "exited"), key=lambda e: e.at_ms)
    starts = sorted((e for e in events if e.kind == "started"), key=lambda e: e.at_ms)
    explained: set[int] = set()
    for record in sorted(records, key=lambda r: r.injected_ms or 0):
        if record.injected_ms is None or record.fault.kind == "SIGSTOP":
            continue
        for index, event in enumerate(exits):
            if index in explained or event.child != record.fault.service or event.at_ms < record.injected_ms:
                continue
            explained.add(index)
            record.exit_code, record.exited_ms = event.code, event.at_ms
            restart = next((s for s in starts if s.child == event.child and s.at_ms >= event.at_ms), None)
            if restart is not None:
                record.restarted_pid, record.restarted_ms = restart.pid, restart.at_ms
            break
    return [event for index, event in enumerate(exits) if index not in explained]
