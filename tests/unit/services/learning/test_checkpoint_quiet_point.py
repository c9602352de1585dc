"""With two batches in flight, a checkpoint waits for a point where none is: the model it saves has learned exactly
the input its offsets say, so a restart learns nothing twice."""

from __future__ import annotations

from types import SimpleNamespace

from eddy.services.learning.runner import LearningService


class Loop:
    def __init__(self, in_flight: int) -> None:
        self.batches_in_flight = in_flight
        self.asked_for_quiet = 0

    def settle_all_next(self) -> None:
        self.asked_for_quiet += 1


def due_service() -> tuple[LearningService, list[str]]:
    runner = object.__new__(LearningService)
    done: list[str] = []
    runner.ctx = SimpleNamespace(settings=SimpleNamespace(checkpoint_interval_s=5.0, snapshot_interval_s=1e9))
    runner._dirty, runner._last_checkpoint, runner._last_snapshot = True, -1e9, 0.0
    runner.checkpoint = lambda: done.append("checkpoint")  # type: ignore[method-assign]
    runner.publish = lambda force=False: done.append("publish")  # type: ignore[method-assign]
    return runner, done


def test_a_due_checkpoint_with_a_batch_in_flight_waits_for_the_quiet_point() -> None:
    runner, done = due_service()
    loop = Loop(in_flight=1)
    runner._when_due(loop)  # type: ignore[arg-type]
    assert done == [] and loop.asked_for_quiet == 1
    loop.batches_in_flight = 0  # the loop settled every batch after its next one
    runner._when_due(loop)  # type: ignore[arg-type]
    assert done == ["checkpoint"]


def test_idle_with_nothing_in_flight_checkpoints_at_once() -> None:
    runner, done = due_service()
    runner.feed = None
    loop = Loop(in_flight=0)
    runner.on_idle(loop)  # type: ignore[arg-type]
    assert done == ["checkpoint"] and loop.asked_for_quiet == 0
