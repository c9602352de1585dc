import math

from eddy.contracts.checks import check_record
from eddy.services.validation.handlers import ValidateBatch

from tests.records import demo_contract, event, record


def test_valid_event_has_no_violations() -> None:
    assert check_record(event(1), demo_contract()) == []


def test_each_rule_reports_field_rule_and_value() -> None:
    bad = event(1, x0=-1.0, x1=None, x2=math.inf, region="mars", event_id=" ", event_time_ms=0)
    found = {(v.field, v.rule) for v in check_record(bad, demo_contract())}
    assert found == {
        ("event_id", "required"),
        ("event_time_ms", "positive"),
        ("x0", "min"),
        ("x1", "required"),
        ("x2", "finite"),
        ("region", "allowed"),
    }


def test_optional_feature_may_be_missing() -> None:
    assert check_record(event(1, region=None), demo_contract()) == []


def test_batch_routes_valid_and_dead_letters_invalid() -> None:
    contract = demo_contract()
    handler = ValidateBatch({"demo": contract})
    good = record("demo.events", event(1), offset=7)
    bad = record("demo.events", event(2, x0=99.0), offset=8, raw=b"original-bytes")
    result = handler([good, bad])
    validated = [o for o in result.outputs if o.topic == "demo.validated"]
    assert len(validated) == 1
    out = validated[0]
    assert out.key == "e1" and out.timestamp_ms == event(1)["event_time_ms"] and out.source is good
    (letter,) = result.dead
    assert letter.dlq_topic == "demo.dlq"
    assert letter.value == b"original-bytes"
    assert letter.reason == "contract:max"
    assert letter.violations[0].field == "x0"
    headers = dict(letter.dlq_headers(now_ms=5))
    assert headers["eddy.dlq.source.offset"] == b"8"
    assert b"x0=99.0 is above the maximum 10.0" in headers["eddy.dlq.error.message"]
    assert b'"rule": "max"' in headers["eddy.dlq.violations"]


def test_compiled_checker_agrees_with_the_rules() -> None:
    from eddy.contracts.checks import CompiledChecker

    contract = demo_contract()
    checker = CompiledChecker(contract)
    cases = [
        event(1),
        event(2, region=None),
        event(3, x0=10.0, x1=0.0),
        event(4, x0=10.000001),
        event(5, x1=-0.0),
        event(6, x2=math.nan),
        event(7, x2=-math.inf),
        event(8, x1=None),
        event(9, region="mars"),
        event(10, event_id=""),
        event(11, event_time_ms=-5),
    ]
    for value in cases:
        assert checker(value) == check_record(value, contract), value


def test_profiles_published_reference_once_and_running_by_interval() -> None:
    from eddy.services.validation.config import ValidationConfig

    now = [1000.0]
    handler = ValidateBatch({"demo": demo_contract()}, ValidationConfig(reference_size=10), clock=lambda: now[0])
    first = handler([record("demo.events", event(i), offset=i) for i in range(5)])
    kinds = [o.key for o in first.outputs if o.topic == "demo.profiles"]
    assert kinds == ["demo:running"]
    second = handler([record("demo.events", event(i), offset=i) for i in range(5, 20)])
    kinds = [o.key for o in second.outputs if o.topic == "demo.profiles"]
    assert kinds == ["demo:reference"]  # the running one waits for its interval
    reference = next(o.value for o in second.outputs if o.key == "demo:reference")
    assert reference["records"] == 10
    now[0] += 11
    third = handler([record("demo.events", event(21), offset=21)])
    assert [o.key for o in third.outputs if o.topic == "demo.profiles"] == ["demo:running"]


def test_an_event_time_kafka_would_refuse_is_dead_lettered_alone() -> None:
    """Over an hour ahead of the clock, Kafka refuses the record and its whole batch: validation keeps it out."""
    now_s = 1_800_000_000.0
    handler = ValidateBatch({"demo": demo_contract()}, wall_clock=lambda: now_s)
    in_time = record("demo.events", event(1, event_time_ms=int(now_s * 1000) + 3_000_000), offset=1)
    ahead = record("demo.events", event(2, event_time_ms=int(now_s * 1000) + 4_000_000), offset=2)
    result = handler([in_time, ahead])
    assert [o.key for o in result.outputs if o.topic == "demo.validated"] == ["e1"]
    (letter,) = result.dead
    assert letter.reason == "contract:future" and letter.violations[0].field == "event_time_ms"
    assert "1.1 h ahead of the time it was checked" in letter.violations[0].message
