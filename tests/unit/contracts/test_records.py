import math
from typing import Any

import pytest
from eddy.contracts.records import BodyError, RecordError, parse_body, parse_time_ms, to_event, to_feedback
from eddy.services.ingestion.handlers import convert

from tests.records import demo_contract


def test_event_gets_id_and_time_when_missing() -> None:
    e = to_event({"x0": 1, "x1": 2, "x2": 3}, demo_contract(), received_ms=42)
    assert len(e["event_id"]) == 36 and e["event_time_ms"] == 42
    assert e["x0"] == 1.0 and isinstance(e["x0"], float)


def test_nan_from_csv_means_missing() -> None:
    e = to_event({"x0": 1.0, "x1": 2.0, "x2": 3.0, "region": math.nan}, demo_contract())
    assert e["region"] is None


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"x0": "abc"}, "field 'x0': expected double, got the string 'abc'"),
        ({"x0": True}, "got a boolean"),
        ({"x0": [1]}, "got list"),
        ({"zz": 1}, "unknown field 'zz'"),
        ({"event_time_ms": "yesterday"}, "neither epoch milliseconds nor ISO-8601"),
        ({"event_time_ms": "2026-01-01T00:00:00"}, "has no timezone"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_event_errors_are_clear(record: Any, message: str) -> None:
    with pytest.raises(RecordError) as err:
        to_event(record, demo_contract())
    assert message in str(err.value)


def test_feedback() -> None:
    fb = to_feedback({"event_id": 7, "label": 1}, "regression", received_ms=5)
    assert fb == {"event_id": "7", "label": 1.0, "label_time_ms": 5, "source": None}
    with pytest.raises(RecordError, match="event_id is required"):
        to_feedback({"label": True}, "binary")
    with pytest.raises(RecordError, match="label is required"):
        to_feedback({"event_id": "a"}, "binary")


def test_parse_time() -> None:
    assert parse_time_ms("2026-01-01T00:00:00+01:00") == 1767222000000
    assert parse_time_ms(" 123 ") == 123
    with pytest.raises(RecordError):
        parse_time_ms(math.inf)


def test_parse_body_forms_and_errors() -> None:
    assert parse_body(b'{"a": 1}') == [{"a": 1}]
    assert parse_body(b"[]") == []
    with pytest.raises(BodyError, match="line 2 is not JSON"):
        parse_body(b'{"a": 1}\n{oops\n')
    with pytest.raises(BodyError, match="not UTF-8"):
        parse_body(b"\xff\xfe")
    with pytest.raises(BodyError, match="empty body"):
        parse_body(b"  ")


def test_convert_reports_per_record() -> None:
    out = convert([{"x0": 1, "x1": 1, "x2": 1}, {"bad": 1}, "str"], demo_contract(), "events", 1)
    assert [i for i, _ in out.accepted] == [0]
    assert [i for i, _ in out.rejected] == [1, 2]


def test_a_time_kafka_would_refuse_is_rejected_at_the_door() -> None:
    hour = 3_600_000
    assert to_event({"event_time_ms": 2 * hour, "x0": 1, "x1": 2, "x2": 3}, demo_contract(), received_ms=hour)
    with pytest.raises(RecordError, match=r"event time .* is 2\.0 h ahead of the time of receipt; Kafka refuses"):
        to_event({"event_time_ms": 3 * hour, "x0": 1, "x1": 2, "x2": 3}, demo_contract(), received_ms=hour)
    with pytest.raises(RecordError, match=r"label time .* ahead of the time of receipt"):
        to_feedback({"event_id": "e1", "label": 1, "label_time_ms": 9 * hour}, "binary", received_ms=hour)
    # Found by the gateway fuzz on Kafka: a negative CreateTime failed the whole produce batch with 503.
    with pytest.raises(RecordError, match=r"event time -1 is before 1970-01-01: Kafka refuses negative"):
        to_event({"event_time_ms": -1, "x0": 1, "x1": 2, "x2": 3}, demo_contract(), received_ms=hour)
    with pytest.raises(RecordError, match=r"label time .* before 1970-01-01"):
        to_feedback({"event_id": "e1", "label": 1, "label_time_ms": "1969-12-31T00:00:00Z"}, "binary", received_ms=hour)
