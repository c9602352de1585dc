import random
from collections.abc import Callable
from typing import Any

from eddy.contracts.retraining import PromotionPolicy
from eddy.ml.roles import (
    ARCHIVE_REQUESTED,
    PROMOTED,
    PROMOTION_REQUESTED,
    REGISTERED,
    ROLLBACK_REQUESTED,
    TRIAL_RESULT,
    StreamRoles,
    VersionKey,
    event_details,
    roles_of_event,
)
from eddy.services.retraining.trials import PROBATION, SHADOW_TRIAL, Trials
from eddy.services.retraining.window import Example
from river import dummy
from river.datasets import synth

from tests.records import registry_fact

OLD, NEW = VersionKey("default", 1), VersionKey("default", 2)
POLICY = PromotionPolicy(shadow_labels=300, margin=0.01, alpha=0.05, rollback_labels=500)
OPENED_AT = 1_000


def fact(event_type: str, key: VersionKey, table: dict[VersionKey, str], **details: Any) -> dict[str, Any]:
    return registry_fact(
        "demo", key, event_type, table, details=details, event_id=f"{event_type}-{key}", at_ms=OPENED_AT
    )


def example(i: int, prediction: Any, label: Any, at: int = OPENED_AT) -> Example:
    value = {"event_id": f"e{i}", "features": {}, "label": label, "prediction": prediction, "predicted_at_ms": at + i}
    return Example.of(value, "demo.labeled", 0, i)


def shadow_trials(task: str = "binary", policy: PromotionPolicy = POLICY) -> Trials:
    trials = Trials("demo", task, policy, lambda: 5_000.0)
    event = fact(REGISTERED, NEW, {OLD: "champion", NEW: "shadow"}, candidate_id="c1", parent="default@1")
    roles = roles_of_event(event)
    assert roles is not None
    trials.open_shadow(event, roles)
    return trials


def probation_trials(task: str = "binary", policy: PromotionPolicy = POLICY) -> Trials:
    trials = Trials("demo", task, policy, lambda: 5_000.0)
    event = fact(PROMOTED, NEW, {NEW: "champion", OLD: "shadow"}, previous="default@1", reason="user:alice forced it")
    roles = roles_of_event(event)
    assert roles is not None
    trials.open_probation(event, OLD, roles, policy.rollback_labels)
    return trials


Predictor = Callable[[int, Any], Any]


def feed(trials: Trials, n: int, old: Predictor, new: Predictor, labels: Callable[[int], Any]) -> list[dict[str, Any]]:
    """``n`` events, each labeled for both versions (new first on odd events, as the topic interleaves)."""
    events: list[dict[str, Any]] = []
    for i in range(n):
        y = labels(i)
        pair = [(OLD, example(i, old(i, y), y)), (NEW, example(i, new(i, y), y))]
        for key, ex in pair if i % 2 == 0 else reversed(pair):
            events += trials.on_example(key, ex)
    return events


def right_with(p: float, seed: int) -> Predictor:
    rng = random.Random(seed)
    return lambda i, y: y if rng.random() < p else (not y)


def test_a_better_challenger_after_a_concept_change_is_promoted() -> None:
    # SEA's concept moved from threshold 8 to 9.5: the champion keeps answering the old concept.
    stream = [({f"x{k}": v for k, v in x.items()}, y) for x, y in synth.SEA(variant=3, seed=7).take(300)]
    trials = shadow_trials()
    events = feed(
        trials,
        300,
        old=lambda i, y: stream[i][0]["x0"] + stream[i][0]["x1"] > 8,
        new=right_with(0.97, 1),
        labels=lambda i: stream[i][1],
    )
    promote, result = events
    assert promote["event_type"] == PROMOTION_REQUESTED and promote["actor"] == "retraining"
    assert (promote["model_name"], promote["model_version"]) == ("default", 2)
    details = event_details(promote)
    assert details["expected_champion"] == "default@1"
    evidence = details["evidence"]
    assert evidence["pairs"] == 300 and evidence["contender_metric"] > evidence["champion_metric"] + 0.05
    assert evidence["test"]["p_value"] < 0.05 and evidence["decision"] == "promote"
    assert result["event_type"] == TRIAL_RESULT and event_details(result)["kind"] == SHADOW_TRIAL
    assert trials.shadow is not None and trials.shadow.decision == "promote"
    # Decided once: more labels ask nothing more.
    assert feed(trials, 10, right_with(0.5, 2), right_with(1.0, 3), lambda i: True) == []


def test_a_constant_predictor_is_never_promoted() -> None:
    rng = random.Random(5)
    labels = [rng.random() < 0.5 for _ in range(300)]
    for constant in (dummy.NoChangeClassifier(), dummy.PriorClassifier()):
        trials = shadow_trials()
        constant.learn_one({}, True)
        events = feed(trials, 300, right_with(0.85, 6), lambda i, y, c=constant: c.predict_one({}), labels.__getitem__)
        archive, result = events
        assert archive["event_type"] == ARCHIVE_REQUESTED and archive["model_version"] == 2
        assert "shadow trial lost" in event_details(archive)["reason"]
        assert event_details(result)["decision"] == "archive"


def test_no_promotion_without_the_margin_even_when_as_good() -> None:
    # 90% of labels are True: a constant True predictor is as accurate as a decent champion.
    rng = random.Random(8)
    labels = [rng.random() < 0.9 for _ in range(300)]
    trials = shadow_trials()
    events = feed(trials, 300, right_with(0.9, 9), lambda i, y: True, labels.__getitem__)
    assert events[0]["event_type"] == ARCHIVE_REQUESTED
    evidence = event_details(events[0])["evidence"]
    assert evidence["margin_met"] is False or evidence["significant"] is False


def test_a_forced_bad_promotion_is_rolled_back_within_the_probation() -> None:
    trials = probation_trials()
    constant = dummy.NoChangeClassifier()
    constant.learn_one({}, False)
    rng = random.Random(10)
    labels = [rng.random() < 0.5 for _ in range(500)]
    events = feed(trials, 500, right_with(0.92, 11), lambda i, y, c=constant: c.predict_one({}), labels.__getitem__)
    rollback, result = events
    assert rollback["event_type"] == ROLLBACK_REQUESTED
    assert (rollback["model_name"], rollback["model_version"]) == ("default", 2)  # the current champion
    details = event_details(rollback)
    assert details["expected_champion"] == "default@2" and details["to"] == "default@1"
    evidence = details["evidence"]
    # Disastrous: caught at the first checkpoint, with the stricter alpha.
    assert evidence["pairs"] == 50 and evidence["alpha"] == 0.05 / 10
    assert event_details(result)["kind"] == PROBATION and event_details(result)["decision"] == "rollback"
    assert result["model_version"] == 2


def test_a_mildly_worse_promotion_is_rolled_back_by_the_end_of_the_probation() -> None:
    trials = probation_trials()
    rng = random.Random(12)
    labels = [rng.random() < 0.5 for _ in range(500)]
    old_right = [rng.random() < 0.9 for _ in range(500)]
    new_right = [ok and rng.random() < 0.9 for ok in old_right]  # wrong on ~10% more events
    events = feed(
        trials,
        500,
        old=lambda i, y: y if old_right[i] else not y,
        new=lambda i, y: y if new_right[i] else not y,
        labels=labels.__getitem__,
    )
    assert events[0]["event_type"] == ROLLBACK_REQUESTED
    assert event_details(events[0])["evidence"]["pairs"] <= 500


def test_probation_passed_archives_the_previous_champion() -> None:
    trials = probation_trials()
    rng = random.Random(13)
    labels = [rng.random() < 0.5 for _ in range(500)]
    events = feed(trials, 500, right_with(0.85, 14), right_with(0.9, 15), labels.__getitem__)
    archive, result = events
    assert archive["event_type"] == ARCHIVE_REQUESTED
    assert (archive["model_name"], archive["model_version"]) == ("default", 1)
    assert event_details(archive)["reason"].startswith("probation passed")
    assert event_details(result)["decision"] == "keep" and event_details(result)["evidence"]["pairs"] == 500


def test_regression_trials_use_the_absolute_error_with_a_relative_margin() -> None:
    rng = random.Random(16)
    labels = [rng.gauss(10, 3) for _ in range(300)]
    trials = shadow_trials("regression")
    events = feed(
        trials,
        300,
        old=lambda i, y: y + rng.gauss(0, 2.0),
        new=lambda i, y: y + rng.gauss(0, 1.0),
        labels=labels.__getitem__,
    )
    assert events[0]["event_type"] == PROMOTION_REQUESTED
    evidence = event_details(events[0])["evidence"]
    assert evidence["metric"] == "mae" and evidence["contender_metric"] < evidence["champion_metric"] * 0.99
    assert evidence["test"]["method"] == "t"

    # A constant regressor (the label mean) is never promoted over a decent one.
    trials = shadow_trials("regression")
    events = feed(trials, 300, lambda i, y: y + rng.gauss(0, 1.0), lambda i, y: 10.0, labels.__getitem__)
    assert events[0]["event_type"] == ARCHIVE_REQUESTED

    # Forced onto a regression stream, it is rolled back.
    trials = probation_trials("regression")
    events = feed(trials, 500, lambda i, y: y + rng.gauss(0, 0.5), lambda i, y: 10.0, (labels * 2).__getitem__)
    assert events and events[0]["event_type"] == ROLLBACK_REQUESTED
    assert event_details(events[0])["evidence"]["pairs"] == 50


def test_pairs_only_count_once_only_from_the_trial_and_only_when_both_are_labeled() -> None:
    trials = shadow_trials()
    trial = trials.shadow
    assert trial is not None
    assert not trial.add(OLD, example(1, True, True))
    assert not trial.add(OLD, example(1, True, True))  # the same version again: still one side
    assert trial.add(NEW, example(1, False, True))
    assert not trial.add(NEW, example(1, False, True))  # replayed
    assert not trial.add(OLD, example(2, True, True, at=OPENED_AT - 100))  # predicted before the trial
    assert not trial.add(VersionKey("other", 1), example(3, True, True))
    assert trial.pairs == 1 and trial.champion_scores == [1.0] and trial.contender_scores == [0.0]
    for i in range(10, 10 + trial.max_pending + 5):
        trial.add(OLD, example(i, True, True))
    assert len(trial.pending) == trial.max_pending


def test_trials_close_when_their_versions_change_alias_or_a_request_is_refused() -> None:
    trials = shadow_trials()
    trials.roles_changed(StreamRoles("demo", {OLD: "champion", NEW: "archived"}))
    assert trials.shadow is None
    trials = probation_trials()
    trials.roles_changed(StreamRoles("demo", {OLD: "champion", NEW: "shadow"}))  # rolled back by someone
    assert trials.probation is None
    trials = shadow_trials(policy=PromotionPolicy(shadow_labels=10))
    events = feed(trials, 10, right_with(0.5, 1), right_with(0.5, 2), lambda i: True)
    trials.refused(events[0]["event_id"])
    assert trials.shadow is None


def test_decisions_have_deterministic_ids() -> None:
    def run() -> list[str]:
        trials = probation_trials()
        rng = random.Random(20)
        labels = [rng.random() < 0.5 for _ in range(500)]
        events = feed(trials, 500, right_with(0.9, 21), lambda i, y: True, labels.__getitem__)
        return [e["event_id"] for e in events]

    assert run() == run() and len(set(run())) == 2


def test_examples_read_before_the_registration_count_and_decide_as_live() -> None:
    """A replay reads S.labeled ahead of eddy.model-events: the trial still judges the same first pairs."""
    rng = random.Random(3)
    labels = [rng.random() < 0.5 for _ in range(POLICY.shadow_labels)]

    def feed(trials: Trials, i: int) -> list[dict[str, Any]]:
        # The champion is right 80% of the time, the challenger always.
        champion_says = labels[i] if i % 5 else not labels[i]
        return trials.on_example(OLD, example(i, champion_says, labels[i])) + trials.on_example(
            NEW, example(i, labels[i], labels[i])
        )

    live = shadow_trials()
    live_events = [e for i in range(POLICY.shadow_labels) for e in feed(live, i)]

    replayed = Trials("demo", "binary", POLICY, lambda: 5_000.0)
    before_opening = [e for i in range(POLICY.shadow_labels) for e in feed(replayed, i)]
    event = fact(REGISTERED, NEW, {OLD: "champion", NEW: "shadow"}, candidate_id="c1", parent="default@1")
    roles = roles_of_event(event)
    assert roles is not None and before_opening == []
    replay_events = replayed.open_shadow(event, roles)
    assert [e["event_type"] for e in replay_events] == [PROMOTION_REQUESTED, TRIAL_RESULT]
    assert replay_events == live_events  # the same ids and evidence: the registry applies them once


def test_examples_predicted_before_a_trial_opened_stay_out_of_it() -> None:
    trials = Trials("demo", "binary", POLICY, lambda: 5_000.0)
    for i in range(POLICY.shadow_labels):
        trials.on_example(OLD, example(i, True, True, at=0))
        trials.on_example(NEW, example(i, False, True, at=0))
    event = fact(REGISTERED, NEW, {OLD: "champion", NEW: "shadow"}, candidate_id="c1", parent="default@1")
    roles = roles_of_event(event)
    assert roles is not None
    assert trials.open_shadow(event, roles) == [] and trials.shadow is not None and trials.shadow.pairs == 0
