"""The checker and the plans on hand-made records: each violation is counted where it belongs.

No broker here: the run itself is ``test_chaos.py``. These make sure a check that passes there would
have failed had the stack lost, duplicated or reordered something.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.chaos import checker
from tests.chaos.checker import Copy, RunFacts, StreamRecords
from tests.chaos.faults import ALL_SERVICES, ChildEvent, Fault, FaultRecord, match_exits, plan_faults
from tests.chaos.load import LoadConfig, LoadLog, PlannedEvent, Sent, plan_events

T0 = 1_800_000_000_000
CHAMPION = ("default", 1)


def planned(event_id: str, kind: str = "valid", label: bool | None = True) -> PlannedEvent:
    return PlannedEvent(event_id, {"x0": 1.0, "x1": 2.0, "x2": 3.0, "region": "north"}, kind, "http", label)  # type: ignore[arg-type]


def prediction(event_id: str, learned: int = 0, version: int = 1, at: int = T0 + 100) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "model_name": "default",
        "model_version": version,
        "model_learned": learned,
        "served": True,
        "predicted_at_ms": at,
    }


def example(event_id: str, learned: int = 0) -> dict[str, Any]:
    return {"event_id": event_id, "model_name": "default", "model_version": 1, "model_learned": learned}


def snapshot(learned: int) -> dict[str, Any]:
    return {"model_name": "default", "model_version": 1, "learned_count": learned, "source_offsets": {"t:0": 1}}


def healthy_run() -> tuple[StreamRecords, LoadLog]:
    """e1, e2 valid and labelled, e3 invalid (dead-lettered), e4 refused by the gateway: all well."""
    plan = [planned("e1"), planned("e2"), planned("e3", "invalid", None), planned("e4", "refused", None)]
    load = LoadLog({p.event_id: p for p in plan}, started_ms=T0)
    for event_id in ("e1", "e2", "e3"):
        load.events[event_id] = Sent(T0, T0 + 5, 1, "accepted")
    load.events["e4"] = Sent(T0, None, 1, "refused")
    for event_id in ("e1", "e2"):
        load.labels[event_id] = Sent(T0 + 1000, T0 + 1005, 1, "accepted")
    records = StreamRecords()
    for offset, event_id in enumerate(("e1", "e2", "e3")):
        records.events[event_id].append(Copy(0, offset, {"event_id": event_id}))
    for offset, event_id in enumerate(("e1", "e2")):
        records.validated[event_id].append(Copy(0, offset, {"event_id": event_id}))
        records.feedback[event_id].append(Copy(0, offset, {"event_id": event_id}))
    records.dead_events["e3"].append("contract:max")
    records.predictions += [Copy(0, 0, prediction("e1", 0)), Copy(0, 1, prediction("e2", 1))]
    records.labeled += [Copy(0, 0, example("e1", 0)), Copy(0, 1, example("e2", 1))]
    records.snapshots.append(snapshot(2))
    return records, load


def verdict(records: StreamRecords, load: LoadLog, faults: list[FaultRecord] | None = None) -> checker.Verdict:
    return checker.check(records, load, RunFacts(faults or [], [], [], CHAMPION, 500, 8))


def test_a_healthy_run_passes_every_check() -> None:
    result = verdict(*healthy_run())
    assert result.passed, result.table()
    assert "VERDICT: PASS" in result.table()


def _drop_validated(r: StreamRecords) -> None:
    del r.validated["e2"]
    r.predictions.pop()
    r.labeled.pop()
    r.snapshots[:] = [snapshot(1)]


def _second_version_answers(r: StreamRecords) -> None:
    r.predictions.append(Copy(0, 2, prediction("e1", 0, version=2)))


def _duplicate_example(r: StreamRecords) -> None:
    r.labeled.append(Copy(0, 2, example("e1", 0)))


def _learned_one_more(r: StreamRecords) -> None:
    r.snapshots.append(snapshot(3))


def _example_missing(r: StreamRecords) -> None:
    r.labeled.pop()
    r.snapshots[:] = [snapshot(1)]


def _joined_a_later_copy(r: StreamRecords) -> None:
    r.labeled[1] = Copy(0, 1, example("e2", 7))


def _older_snapshot_later(r: StreamRecords) -> None:
    r.predictions[1] = Copy(0, 1, prediction("e2", 0))
    r.predictions[0] = Copy(0, 0, prediction("e1", 4))
    r.labeled[:] = [Copy(0, 0, example("e1", 4)), Copy(0, 1, example("e2", 0))]


def _valid_dead_lettered(r: StreamRecords) -> None:
    r.dead_events["e1"].append("contract:max")


@pytest.mark.parametrize(
    ("damage", "failing"),
    [
        (_drop_validated, {"events lost in validation"}),
        (lambda r: r.predictions.pop(), {"validated, never predicted", "out of order: join"}),
        (lambda r: r.events.pop("e1"), {"events lost at ingestion"}),
        (lambda r: r.feedback.pop("e2"), {"labels lost at ingestion"}),
        (_valid_dead_lettered, {"events misrouted"}),
        (_second_version_answers, {"served twice (eddy's readers)", "served by a non-champion"}),
        (_duplicate_example, {"labels learned twice"}),
        (_learned_one_more, {"labels learned twice"}),
        (_example_missing, {"unseen labels"}),
        (lambda r: r.snapshots.__setitem__(0, snapshot(1)), {"learned, not counted"}),
        (_joined_a_later_copy, {"out of order: join"}),
        (_older_snapshot_later, {"out of order: snapshot"}),
    ],
)
def test_each_violation_fails_its_check(damage: Callable[[StreamRecords], object], failing: set[str]) -> None:
    records, load = healthy_run()
    damage(records)
    result = verdict(records, load)
    assert {c.name for c in result.failed()} == failing, result.table()


def test_redeliveries_are_attributed_to_the_fault_before_them_and_bounded() -> None:
    records, load = healthy_run()
    kill = FaultRecord(Fault(1.0, "inference", "SIGKILL"), injected_ms=T0 + 1000, pid=42)
    records.predictions.append(Copy(0, 2, prediction("e1", 1, at=T0 + 3000)))
    result = verdict(records, load, [kill])
    assert result.passed, result.table()
    assert [str(r) for r in result.redeliveries_by_fault] == ["+1.0s inference SIGKILL: inference 1"]
    assert result.check("redeliveries per fault (max)").count == 1
    # A redelivery no fault explains is reported as such.
    result = verdict(records, load, [])
    assert [str(r) for r in result.redeliveries_by_fault] == ["no fault: inference 1"]


def test_a_client_resend_is_put_down_to_the_stopped_gateway_and_not_bounded_as_a_service_redelivery() -> None:
    records, load = healthy_run()
    stop = FaultRecord(Fault(0.5, "ingestion", "SIGSTOP", 8.0), injected_ms=T0 - 500, pid=3, resumed_ms=T0 + 7500)
    kill = FaultRecord(Fault(1.0, "inference", "SIGKILL"), injected_ms=T0 + 1000, pid=4)
    records.events["e1"].append(Copy(0, 3, {"event_id": "e1"}))
    records.validated["e1"].append(Copy(0, 2, {"event_id": "e1"}))
    records.predictions.append(Copy(0, 2, prediction("e1", 1, at=T0 + 9000)))
    result = verdict(records, load, [stop, kill])
    assert [str(r) for r in result.redeliveries_by_fault] == ["+-0.5s ingestion SIGSTOP: client 1"]
    assert result.check("redeliveries per fault (max)").count == 0


def test_process_checks_sigterm_exit_codes_and_unexplained_exits() -> None:
    records, load = healthy_run()
    term = FaultRecord(Fault(1.0, "validation", "SIGTERM"), injected_ms=T0 + 1000, pid=7)
    kill = FaultRecord(Fault(2.0, "learning", "SIGKILL"), injected_ms=T0 + 2000, pid=8)
    events = [
        ChildEvent(T0 + 1500, "validation", "exited", code=1),
        ChildEvent(T0 + 2100, "learning", "exited", code=-9),
        ChildEvent(T0 + 2700, "learning", "started", pid=9),
        ChildEvent(T0 + 5000, "monitoring", "exited", code=1),
    ]
    unexplained = match_exits([term, kill], events)
    assert [e.child for e in unexplained] == ["monitoring"]
    assert (term.exit_code, kill.exit_code, kill.restarted_pid) == (1, -9, 9)
    result = checker.check(records, load, RunFacts([term, kill], unexplained, [], CHAMPION, 500, 8))
    assert {c.name for c in result.failed()} == {"SIGTERM exit != 0", "unexpected exits"}


def test_plans_are_seeded() -> None:
    config = LoadConfig("s", events=500)
    assert plan_events(1, config) == plan_events(1, config) != plan_events(2, config)
    faults = plan_faults(5, 8, (1.0, 20.0))
    assert faults == plan_faults(5, 8, (1.0, 20.0)) != plan_faults(6, 8, (1.0, 20.0))
    assert {f.service for f in faults} == set(ALL_SERVICES)
    kinds = [(f.kind, f.pause_s > 6.0) for f in faults[:4]]
    assert sorted(kinds) == [("SIGKILL", False), ("SIGSTOP", False), ("SIGSTOP", True), ("SIGTERM", False)]
