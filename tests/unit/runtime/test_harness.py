"""The in-memory harness (``eddy.testing``) runs validation's and inference's real loops and handlers."""

from __future__ import annotations

import pytest
from eddy.core.topics import StreamTopics
from eddy.services.inference.handlers import PredictBatch, fresh_models
from eddy.services.validation.config import ValidationConfig
from eddy.services.validation.fastlane import FastValidation
from eddy.services.validation.handlers import ValidateBatch
from eddy.testing import InMemoryTopics, Run

from tests.records import demo_contract, event

DEMO = StreamTopics("demo")


def validate(topics: InMemoryTopics, fast_lane: bool) -> Run:
    contracts = {"demo": demo_contract()}
    handler = ValidateBatch(contracts, ValidationConfig(fast_lane=fast_lane))
    lane = FastValidation(handler, {DEMO.events: topics.serdes.schema_id(DEMO.events)}) if fast_lane else None
    return topics.run("validation", [DEMO.events], handler, fast_lane=lane, batch_size=4)


@pytest.mark.parametrize("fast_lane", [True, False], ids=["fast-lane", "python"])
def test_validation_passes_good_events_and_dead_letters_bad_ones_with_reasons(fast_lane: bool) -> None:
    topics = InMemoryTopics({"demo": demo_contract()})
    good = [event(i) for i in range(6)]
    bad = [event(100, x0=99.0), event(101, region="mars"), b"\x00\x00\x00\x00\x01junk", b"{}"]
    topics.feed(DEMO.events, [*good[:3], *bad, *good[3:]])
    run = validate(topics, fast_lane)
    assert [v["event_id"] for v in run.outputs[DEMO.validated]] == [f"e{i}" for i in range(6)]
    letters = {letter.source_offset: letter for letter in run.dead_letters}
    reasons = {offset: letter.reason for offset, letter in letters.items()}
    assert reasons == {3: "contract:max", 4: "contract:allowed", 5: "undecodable", 6: "undecodable"}
    assert all(letter.topic == DEMO.dlq and letter.source_topic == DEMO.events for letter in run.dead_letters)
    assert "x0" in letters[3].message and "region" in letters[4].message
    # The dead letter keeps the original bytes, for replay.
    assert letters[5].value == b"\x00\x00\x00\x00\x01junk"
    assert run.committed == {(DEMO.events, 0): 10} and run.batches == 3


def test_a_second_run_goes_on_from_the_committed_offsets() -> None:
    topics = InMemoryTopics({"demo": demo_contract()})
    topics.feed(DEMO.events, [event(1), event(2)])
    validate(topics, fast_lane=False)
    topics.feed(DEMO.events, [event(3)])
    again = validate(topics, fast_lane=False)
    assert [v["event_id"] for v in again.outputs[DEMO.validated]] == ["e3"]
    assert again.dead_letters == []


def test_inference_predicts_what_validation_passed_in_one_in_memory_pipeline() -> None:
    contracts = {"demo": demo_contract()}
    topics = InMemoryTopics(contracts)
    topics.feed(DEMO.events, [event(1), event(2, x1=-1.0), event(3)])
    validate(topics, fast_lane=True)
    topics.feed(DEMO.validated, [b"not avro"])  # what a foreign producer might write
    run = topics.run("inference", [DEMO.validated], PredictBatch(contracts, fresh_models(contracts)))
    predictions = run.outputs[DEMO.predictions]
    assert [p["event_id"] for p in predictions] == ["e1", "e3"]
    assert all(p["served"] and p["stream"] == "demo" for p in predictions)
    assert [(d.reason, d.source_topic, d.source_offset) for d in run.dead_letters] == [
        ("undecodable", DEMO.validated, 2)
    ]
    assert "Confluent wire format" in run.dead_letters[0].message


def test_a_handler_that_raises_on_one_record_dead_letters_only_that_record() -> None:
    contracts = {"demo": demo_contract()}
    topics = InMemoryTopics(contracts)
    topics.feed(DEMO.validated, [event(1), event(2), event(3)])
    predict = PredictBatch(contracts, fresh_models(contracts))

    def choke_on_e2(records):  # type: ignore[no-untyped-def]
        if any(r.value["event_id"] == "e2" for r in records):
            raise ValueError("e2 is cursed")
        return predict(records)

    run = topics.run("inference", [DEMO.validated], choke_on_e2)
    assert [p["event_id"] for p in run.outputs[DEMO.predictions]] == ["e1", "e3"]
    assert [(d.reason, d.message) for d in run.dead_letters] == [("handler_error", "ValueError: e2 is cursed")]
