"""Production history from the registry's facts: promotions, rollbacks, canary trials, and what starts no period."""

from __future__ import annotations

import json
from typing import Any

from eddy.ml.production_history import answering_at, history_json, production_history
from eddy.ml.roles import VersionKey

V1, V2, V3 = VersionKey("default", 1), VersionKey("default", 2), VersionKey("default", 3)


def fact(at: int, kind: str, table: dict[VersionKey, str], canary: float = 0.0, stream: str = "demo", **details: Any):
    body = {"roles": {str(k): a for k, a in table.items()}, "canary": canary, **details}
    return {"stream": stream, "event_type": kind, "actor": "model_registry", "at_ms": at, "model_name": "default",
            "model_version": 1, "details": json.dumps(body)}  # fmt: skip


LIFE = [
    fact(1_000, "registered", {V1: "champion"}, reason="contract"),
    fact(1_500, "synced", {V1: "champion"}),  # a restart's resync: nothing changed
    fact(2_000, "registered", {V1: "champion", V2: "challenger"}, 0.1, reason="concept_drift", candidate_id="c1"),
    {"stream": "demo", "event_type": "promote_requested", "actor": "retraining", "at_ms": 2_500, "details": "{}"},
    fact(3_000, "promoted", {V1: "shadow", V2: "champion"}, by="retraining", trial={"p_value": 0.001}),
    fact(4_000, "registered", {V1: "shadow", V2: "champion", V3: "shadow"}),  # a shadow answers nothing
    fact(5_000, "rolled_back", {V1: "champion", V2: "archived", V3: "shadow"}, by="user:ann", reason="worse"),
]


def test_a_promotion_and_a_rollback_each_start_a_period_with_their_cause_and_evidence() -> None:
    periods = production_history(LIFE)
    assert [(p.start_ms, p.end_ms, p.champion, p.cause) for p in periods] == [
        (1_000, 2_000, V1, "registered"),
        (2_000, 3_000, V1, "registered"),
        (3_000, 5_000, V2, "promoted"),
        (5_000, None, V1, "rolled_back"),
    ]
    promoted, rolled_back = periods[2], periods[3]
    assert promoted.by == "retraining" and promoted.evidence == {"by": "retraining", "trial": {"p_value": 0.001}}
    assert rolled_back.by == "user:ann" and rolled_back.evidence["reason"] == "worse"


def test_a_time_inside_a_canary_trial_names_the_champion_and_the_challengers_share() -> None:
    during = answering_at(production_history(LIFE), 2_750)
    assert during is not None
    assert (during.champion, during.challenger, during.canary) == (V1, V2, 0.1)
    assert during.evidence["candidate_id"] == "c1"


def test_before_the_first_fact_nothing_answered_and_streams_are_kept_apart() -> None:
    events = [*LIFE, fact(2_200, "registered", {V3: "champion"}, stream="other")]
    periods = production_history(events)
    assert answering_at(periods, 999, "demo") is None
    assert answering_at(periods, 2_300, "other").champion == V3
    assert answering_at(periods, 2_300, "demo").champion == V1
    assert json.loads(history_json(periods))[-1]["until_ms"] is None
