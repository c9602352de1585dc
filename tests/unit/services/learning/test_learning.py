from pathlib import Path
from typing import Any

import pytest
from eddy.ml.labels import LabelError, coerce_label
from eddy.ml.models import ModelState
from eddy.runtime.loop import BatchResult
from eddy.services.learning import checkpoint
from eddy.services.learning.handlers import JoinLimits, Learner, LearnerState

from tests.keys import TEST_KEYS
from tests.records import demo_contract, label, prediction, record


def learner(**limits: Any) -> Learner:
    contract = demo_contract()
    state = LearnerState(ModelState.fresh("demo", contract.champion))
    return Learner(contract, state, JoinLimits(**limits), clock=lambda: 1_700_000_005.0)


def pred(i: int, **kw: Any) -> Any:
    return record("demo.predictions", prediction(i, **kw), offset=i)


def lab(i: int, value: Any = True) -> Any:
    return record("demo.feedback", label(i, value), offset=i, raw=f"label-{i}".encode())


def test_label_after_prediction_joins_and_learns() -> None:
    lrn = learner()
    assert lrn([pred(1)]).outputs == []
    result = lrn([lab(1, False)])
    (out,) = result.outputs
    assert out.topic == "demo.labeled" and out.key == "e1"
    assert out.value["label"] is False
    assert out.value["features"] == prediction(1)["features"]
    assert out.value["prediction"] is True
    assert lrn.state.model.learned_count == 1
    assert not lrn.state.pending_predictions and not lrn.state.pending_labels


def test_label_before_prediction_joins_too() -> None:
    lrn = learner()
    assert lrn([lab(2)]).outputs == []
    assert len(lrn([pred(2)]).outputs) == 1
    assert lrn.state.model.learned_count == 1


def test_same_batch_join() -> None:
    lrn = learner()
    assert len(lrn([pred(3), lab(3)]).outputs) == 1


def test_learns_from_the_served_features_exactly() -> None:
    lrn = learner()
    seen: list[dict[str, Any]] = []

    class Spy:
        def learn_one(self, x: dict[str, Any], y: Any) -> None:
            seen.append(x)

    lrn.state.model.estimator = Spy()
    lrn([pred(4, features={"x0": 4.25, "x1": 0.5, "x2": 9.0}), lab(4)])
    assert seen == [{"x0": 4.25, "x1": 0.5, "x2": 9.0}]


def test_duplicates_are_never_learned_twice() -> None:
    lrn = learner()
    lrn([pred(5), lab(5)])
    again = lrn([pred(5), lab(5), pred(5)])
    assert again.outputs == []
    # The duplicate label is dead-lettered with its reason; the duplicate prediction is only counted.
    assert [(d.reason, d.value) for d in again.dead] == [("duplicate_label", b"label-5")]
    assert lrn.state.model.learned_count == 1


def test_other_models_predictions_are_not_joined() -> None:
    lrn = learner()
    lrn([pred(7, model="challenger"), lab(7)])
    assert lrn.state.model.learned_count == 0
    assert set(lrn.state.pending_labels) == {"e7"}


def test_a_challenger_learns_from_its_shadow_predictions_and_dead_letters_nothing() -> None:
    lrn = learner()
    lrn.champion = False
    result = lrn([pred(6, served=False), lab(6), lab(6), lab(9, "maybe")])
    assert lrn.state.model.learned_count == 1 and len(result.outputs) == 1
    assert result.dead == []  # the champion's learner dead-letters the duplicate and the bad label


def test_bad_label_goes_to_dlq() -> None:
    lrn = learner()
    result = lrn([lab(8, "maybe")])
    (letter,) = result.dead
    assert letter.reason == "bad_label" and letter.value == b"label-8"
    assert letter.dlq_topic == "demo.dlq"


def test_failed_learning_is_dead_lettered_and_not_counted() -> None:
    lrn = learner()

    class Broken:
        def learn_one(self, x: dict[str, Any], y: Any) -> None:
            raise ValueError("boom")

    lrn.state.model.estimator = Broken()
    result: BatchResult = lrn([pred(9), lab(9), pred(10)])
    assert [d.reason for d in result.dead] == ["learn_error"]
    assert lrn.state.model.learned_count == 0
    assert "e9" not in lrn.state.learned
    assert "e10" in lrn.state.pending_predictions


def test_evicted_labels_are_dead_lettered_not_dropped() -> None:
    lrn = learner(max_pending=2)
    result = lrn([lab(1), lab(2), lab(3)])
    (letter,) = result.dead
    assert letter.reason == "join_expired" and letter.value == b"label-1" and letter.offset == 1
    assert list(lrn.state.pending_labels) == ["e2", "e3"]


@pytest.mark.parametrize(
    ("value", "task", "expected"),
    [
        (True, "binary", True),
        (0, "binary", False),
        ("TRUE", "binary", True),
        (2, "regression", 2.0),
        ("cat", "multiclass", "cat"),
    ],
)
def test_coerce_label(value: Any, task: str, expected: Any) -> None:
    assert coerce_label(value, task) == expected


@pytest.mark.parametrize(("value", "task"), [(None, "binary"), (2, "binary"), ("x", "regression"), (1.5, "multiclass")])
def test_coerce_label_rejects(value: Any, task: str) -> None:
    with pytest.raises(LabelError):
        coerce_label(value, task)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    lrn = learner()
    lrn([pred(1), lab(1), pred(2)])
    lrn.state.offsets["demo.predictions:0"] = 3
    path = checkpoint.checkpoint_path(tmp_path, "demo", "default")
    checkpoint.save(path, checkpoint.Checkpoint("cluster-a", lrn.state), TEST_KEYS)
    restored = checkpoint.load(path, TEST_KEYS)
    assert restored is not None and restored.cluster_id == "cluster-a"
    assert restored.state.model.learned_count == 1
    assert list(restored.state.pending_predictions) == ["e2"]
    assert restored.state.offsets == {"demo.predictions:0": 3}
    assert "e1" in restored.state.learned
    assert checkpoint.load(tmp_path / "missing.ckpt", TEST_KEYS) is None


def test_forget_inputs_keeps_the_model() -> None:
    lrn = learner()
    lrn([pred(1), lab(1), pred(2)])
    lrn.state.offsets["x:0"] = 5
    lrn.state.forget_inputs()
    assert lrn.state.model.learned_count == 1
    assert not lrn.state.offsets and not lrn.state.pending_predictions and not lrn.state.learned


def test_already_emitted_examples_are_learned_but_not_emitted_again() -> None:
    lrn = learner()
    lrn.state.suppress = {"e1"}
    assert lrn([pred(1), lab(1)]).outputs == []
    assert lrn.state.model.learned_count == 1 and not lrn.state.suppress
    assert len(lrn([pred(2), lab(2)]).outputs) == 1


def test_allowed_lateness_expires_the_join_state() -> None:
    from dataclasses import replace

    lrn = learner()
    lrn.contract = replace(lrn.contract, allowed_lateness_ms=1000)
    old_prediction = pred(1, event_time_ms=1_000)
    lrn([old_prediction, lab(2)])  # a label with no prediction yet (label_time 1_700_000_001_002)
    assert "e1" in lrn.state.pending_predictions and "e2" in lrn.state.pending_labels
    late = record("demo.feedback", {**label(3), "label_time_ms": 1_700_000_010_000}, offset=3)
    result = lrn([pred(4, event_time_ms=5_000), late])
    assert "e1" not in lrn.state.pending_predictions  # older than 5_000 - 1_000
    (letter,) = result.dead
    assert letter.reason == "late_label" and letter.value == b"label-2"
    assert "e2" not in lrn.state.pending_labels and "e3" in lrn.state.pending_labels
