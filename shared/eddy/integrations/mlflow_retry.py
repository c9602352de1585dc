"""Retries with backoff for the MLflow mirror, and the count of what failed.

A tracking server that is down must never stop eddy: the mirror runs beside the lifecycle, retries each
step a few times with a doubling pause, counts every failed attempt in ``eddy_mlflow_mirror_failures_total``
(by operation) and, when the server stays away, gives up with :class:`MirrorUnavailable`. Because every step
is idempotent, the next sync picks up where this one stopped.

Only failures that a later attempt can cure are retried (the server unreachable, a 5xx, a timeout); a 4xx
is a mistake in what was sent and is raised at once. This module knows nothing of MLflow: the caller says
which exceptions are worth another try.

Examples
--------
>>> pauses = []
>>> retry = Retry(attempts=3, first_pause_s=0.5, sleep=pauses.append)
>>> tries = iter([ConnectionError("down"), ConnectionError("still down"), "done"])
>>> def step():
...     outcome = next(tries)
...     if isinstance(outcome, Exception):
...         raise outcome
...     return outcome
>>> retry.call("doc.step", step, lambda exc: isinstance(exc, ConnectionError))
'done'
>>> pauses
[0.5, 1.0]
>>> retry.call("doc.step", lambda: 1 / 0, lambda exc: isinstance(exc, ConnectionError))
Traceback (most recent call last):
...
ZeroDivisionError: division by zero
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client import Counter

T = TypeVar("T")

FAILURES = Counter(
    "eddy_mlflow_mirror_failures_total",
    "Attempts to mirror to MLflow that failed (the tracking server unreachable, 5xx, timeouts), by operation.",
    ["operation"],
)


class MirrorUnavailable(RuntimeError):
    """The tracking server failed every attempt at one step: nothing more is mirrored until the next sync."""


@dataclass(frozen=True)
class Retry:
    """Up to ``attempts`` tries of a step, pausing ``first_pause_s``, then twice that, ... at most ``max_pause_s``."""

    attempts: int = 5
    first_pause_s: float = 0.5
    max_pause_s: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts}")
        if self.first_pause_s < 0 or self.max_pause_s < 0:
            raise ValueError("pauses cannot be negative")

    def call(self, operation: str, step: Callable[[], T], retryable: Callable[[BaseException], bool]) -> T:
        """``step()``'s result, trying again after a retryable failure.

        Raises
        ------
        MirrorUnavailable
            After ``attempts`` retryable failures in a row (the last one is its cause).
        Exception
            A failure that is not retryable, at once.
        """
        pause = self.first_pause_s
        for attempt in range(1, self.attempts + 1):
            try:
                return step()
            except Exception as exc:
                if not retryable(exc):
                    raise
                FAILURES.labels(operation).inc()
                if attempt == self.attempts:
                    raise MirrorUnavailable(
                        f"MLflow failed {self.attempts} attempts at {operation}; the next sync retries: {exc}"
                    ) from exc
                self.sleep(pause)
                pause = min(self.max_pause_s, pause * 2)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
