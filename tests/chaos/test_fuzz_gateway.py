"""Input fuzzing of the HTTP gateway (and of ingestion's Kafka bridge): no crash, every record accounted for.

The real ingestion and validation processes run against the test broker. A seeded, bounded set of
hostile requests (``tests/chaos/fuzz_inputs.py``: arbitrary bytes, invalid UTF-8, truncated JSON,
nesting 100,000 deep, huge numbers, NaN and Infinity, duplicated keys, lone surrogates, NUL bytes,
bidirectional and invisible text, bodies near and over the limit, wrong content types and encodings,
hostile paths and API-key headers, batches of good and bad together), then 150 bodies that
hypothesis writes, go to ``POST /v1/streams/S/events`` (and ``/feedback``); hostile JSON goes to
``S.raw`` for the bridge. Then:

- the gateway is the same process, ``/healthz`` says ok, and no request went unanswered, was reset or
  got a 5xx; every refusal is a 4xx with a JSON error naming the problem;
- every event the gateway accepted is in ``S.events`` exactly once, every label in ``S.feedback``;
- every record of ``S.events`` went on to ``S.validated`` or to ``S.dlq`` (with a reason), exactly once;
- every ``S.raw`` record became an event or a dead letter, exactly once, and the bridge never died.

The in-process tests below check the gateway's pure path (parse, convert, encode) over many more
hypothesis examples, and pin each input that crashed it before (regressions).

This fuzz writes hostile bytes by hand; ``tests/integration/test_http_fuzz.py`` draws requests from the
gateway's OpenAPI document (schemathesis), and those of the other HTTP APIs, checking each answer
against the document.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eddy.avro.serde import JsonSerde, SerdeError, TopicSerde
from eddy.contracts.records import BodyError, RecordError, parse_body, to_event, to_feedback
from eddy.contracts.stream import load_contract
from eddy.core.settings import REPO_ROOT, Settings
from eddy.core.topics import StreamTopics
from eddy.runtime.auth import ApiKeys, Denied
from eddy.services.ingestion.handlers import convert
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from tests.chaos.fuzz_inputs import (
    HUGE_NUMBERS,
    Probe,
    account_stream,
    dumps,
    hand_picked,
    hostile_batches,
    one_schema_serde,
    services,
    status_table,
)
from tests.helpers import create_topics, log_records
from tests.integration.test_accounting import Planned, produce_all

SEED = 20_251_123
API_KEY = "fuzz-producer-key"
MAX_BODY_BYTES = 1_000_000
MAX_BATCH = 500
HYPOTHESIS_REQUESTS = 150
# aiohttp refuses these while parsing the request head, before any handler or middleware runs, so the
# answer is its own text/plain 400: a Content-Encoding it cannot decode (no Brotli), a header over 8 KB,
# a control character in a header.
PARSED_BEFORE_ROUTING = {"brotli-undecodable", "header-over-8k", "garbage-type"}
# Probes whose answer must be exactly this: the status, and words the error (or a record's error) has.
EXPECTED: dict[str, tuple[int, str]] = {
    "arrays-100000": (400, "too deeply"),
    "objects-100000": (400, "too deeply"),
    "x0=int_5000_digits": (400, "number"),
    "x0=int_400_digits": (422, "too large for double"),
    "event_time_ms=int_5000_digits": (400, "number"),
    "lone_continuation": (400, "UTF-8"),
    "event_id-high": (422, "surrogates not allowed"),
    "time-high": (422, "neither epoch milliseconds nor ISO-8601"),
    "event_time=-1": (422, "before 1970"),
    "event_time=min_int64": (422, "before 1970"),
    "event_time=max_int64": (422, "ahead of the time of receipt"),
    "label_time=-1": (422, "before 1970"),
    "region-just-over-limit": (413, "too large"),
    "twice-the-limit": (413, "too large"),
    "gzip-bomb": (413, "too large"),
    "gzip-invalid": (400, "content-encoding"),
    "deflate-invalid": (400, "content-encoding"),
    "region-just-under-limit": (422, "Kafka refused"),
    "event_id-0.9-limit": (422, "Kafka refused"),
    "too-many-records": (413, "limit is 500"),
    "unknown-stream": (404, "unknown stream"),
    "wrong-key": (401, "not valid"),
    "invalid-utf8-key": (401, "not valid"),
    "basic-invalid-utf8": (401, "API key"),
    "get-on-post": (405, "is not allowed"),
}


@dataclass
class Answer:
    """What one probe got back: the status (None: no HTTP answer at all) and the body."""

    probe: Probe
    status: int | None
    content_type: str
    text: str
    transport_error: str = ""

    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    def accepted(self) -> list[str]:
        """The ids of the records this request got accepted (``duplicate`` ones were not produced)."""
        doc = self.json()
        if self.status not in (200, 207) or not isinstance(doc, dict):
            return []
        return [r["event_id"] for r in doc["results"] if r["status"] == "accepted"]


def send(client: httpx.Client, stream: str, probe: Probe) -> Answer:
    path = probe.path if probe.path.startswith("/") else f"/v1/streams/{stream}/{probe.path}"
    try:
        response = client.request(probe.method, path, content=probe.body, headers=probe.headers)
    except httpx.TransportError as exc:
        return Answer(probe, None, "", "", f"{type(exc).__name__}: {exc}")
    return Answer(probe, response.status_code, response.headers.get("content-type", ""), response.text)


def problems_with(answer: Answer) -> list[str]:
    """What is wrong with one answer: unanswered, 5xx, a refusal that is not a JSON error, a bad batch answer."""
    probe = answer.probe
    where = f"{probe.category}/{probe.name}"
    if answer.status is None:
        return [f"{where}: no HTTP answer ({answer.transport_error})"]
    if answer.status >= 500:
        return [f"{where}: {answer.status} {answer.text[:300]}"]
    problems = []
    doc = answer.json()
    if answer.status >= 400 and not _names_its_problem(answer, doc):
        problems.append(f"{where}: {answer.status} without a JSON error naming the problem: {answer.text[:200]!r}")
    if isinstance(doc, dict) and isinstance(doc.get("results"), list):
        for result in doc["results"]:
            if result["status"] == "rejected" and not result.get("error"):
                problems.append(f"{where}: record {result['index']} rejected without a reason")
    expected = EXPECTED.get(probe.name)
    if expected is not None and (answer.status != expected[0] or expected[1] not in answer.text):
        problems.append(
            f"{where}: expected {expected[0]} naming {expected[1]!r}; got {answer.status} {answer.text[:300]}"
        )
    return problems


def _names_its_problem(answer: Answer, doc: Any) -> bool:
    if answer.probe.name in PARSED_BEFORE_ROUTING:
        return answer.status == 400
    if not answer.content_type.startswith("application/json") or not isinstance(doc, dict):
        return False
    if answer.status == 422:  # every record rejected: each result says why
        return isinstance(doc.get("results"), list)
    return isinstance(doc.get("error"), str) and bool(doc["error"].strip())


def hypothesis_answers(client: httpx.Client, stream: str, count: int) -> list[Answer]:
    """``count`` bodies hypothesis writes (seeded), each sent and checked as it comes back."""
    answers: list[Answer] = []
    ids: Iterator[str] = (f"hyp-{n}" for n in itertools.count())

    @hypothesis_settings(
        max_examples=count, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(hostile_batches(ids))
    def post(batch: tuple[bytes, str]) -> None:
        body, form = batch
        answer = send(client, stream, Probe("hypothesis", form, body))
        answers.append(answer)
        assert not problems_with(answer), problems_with(answer)

    post()
    return answers


def raw_plan(rng: random.Random) -> list[Planned]:
    """Hostile JSON for the bridge (``S.raw``), each record under a unique key; ids ``raw-<n>`` where it has one."""
    values: list[bytes | None] = [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
        b'{"event_id": "raw-%d", "x0": ' + b"9" * 5_000 + b"}",
        b'{"event_id": "raw-%d", "x0": 1' + b"0" * 400 + b"}",
        b'{"event_id": "raw-%d", "x0": NaN, "x1": Infinity, "x2": -Infinity}',
        b'{"event_id": "raw-%d", "x0": 1e400}',
        b'{"event_id": "\\ud800", "x0": 1}',
        b'{"event_id": "raw-%d", "region": "\\udfff"}',
        b'{"event_id": "raw-%d", "event_time_ms": "\xc2\xb2"}',
        b'{"event_id": "raw-%d", "event_time_ms": 1e300}',
        b'{"event_id": "raw-%d-first", "event_id": "raw-%d"}',
        b'{"event_id": "raw-%d\xff"}',
        b'{"event_id": "raw-%d", "region": "' + b"r" * 300_000 + b'"}',
        b"\x00",
        b"",
        None,
        b"[1, 2]",
        b'"a string"',
    ]
    values += [rng.randbytes(rng.randint(1, 300)) for _ in range(20)]
    values += [dumps({"event_id": "raw-%d", "x0": 1.0, "x1": 2.0, "x2": 3.0, "region": "west"}) for _ in range(20)]
    planned = []
    for index, value in enumerate(values):
        filled = value.replace(b"%d", str(index).encode()) if value is not None else None
        planned.append(Planned(index, "raw", f"raw-key-{index}".encode(), filled, f"raw-{index}"))
    return planned


@pytest.mark.integration
def test_gateway_answers_every_hostile_request_and_loses_no_accepted_record(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    create_topics(settings)
    rng = random.Random(SEED)
    probes = hand_picked(rng, MAX_BODY_BYTES)
    probes.append(Probe("big_strings", "too-many-records", dumps([{"x0": 1}] * (MAX_BATCH + 1))))
    probes.append(Probe("auth", "header-over-8k", dumps({"event_id": "auth-big"}), {"X-API-Key": "k" * 10_000}))
    probes.append(
        Probe(
            "auth",
            "basic-valid-key",
            dumps({"event_id": "auth-basic"}),
            {"X-API-Key": "", "Authorization": "Basic " + base64.b64encode(f"me:{API_KEY}".encode()).decode()},
        )
    )
    gateway_env = {
        "EDDY_API_KEYS": f"{API_KEY}:producer",
        "EDDY_INGEST_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "EDDY_INGEST_MAX_BATCH": str(MAX_BATCH),
    }
    envs = {"ingestion": gateway_env, "validation": {"EDDY_VALIDATION_REFERENCE_SIZE": "20"}}
    with services(settings, tmp_path, envs) as running:
        (gateway, url, log), (validation, _, vlog) = running["ingestion"], running["validation"]
        pid, validation_pid = gateway.pid, validation.pid
        started = time.monotonic()
        with httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": API_KEY}) as client:
            answers = [send(client, stream, probe) for probe in probes]
            phases = {"hand-picked requests": time.monotonic() - started}
            answers += hypothesis_answers(client, stream, HYPOTHESIS_REQUESTS)
            phases["hypothesis requests"] = time.monotonic() - started - sum(phases.values())
            raw = raw_plan(rng)
            raw_landed = produce_all(settings, topics.raw, raw)
            # The same processes, up and healthy, after everything.
            assert gateway.poll() is None and gateway.pid == pid, (gateway.returncode, log.read_text()[-3000:])
            health = client.get("/healthz").json()
            assert health["status"] == "ok", health
        problems = [p for answer in answers for p in problems_with(answer)]
        assert not problems, "\n".join(problems[:30])

        accepted_events = Counter(i for a in answers if a.probe.path == "events" for i in a.accepted())
        accepted_labels = Counter(i for a in answers if a.probe.path == "feedback" for i in a.accepted())
        assert max(accepted_events.values(), default=1) == 1, "an event id was accepted twice"
        raw_ids = {p.event_id: raw_landed[p.key] for p in raw}
        report = account_stream(
            settings,
            {"ingestion": gateway, "validation": validation},
            {topics.raw: [(p, o) for p, o in raw_landed.values()]},
        )
        elapsed = time.monotonic() - started
        phases["raw records and accounting"] = elapsed - sum(phases.values())
        assert validation.poll() is None and validation.pid == validation_pid
        assert not unexpected_errors(log) and not unexpected_errors(vlog), unexpected_errors(log) + unexpected_errors(
            vlog
        )

    # Every accepted event is in S.events once; S.events holds nothing else but what the bridge converted.
    from_gateway = Counter(e for e in report.event_ids if not e.startswith("raw-"))
    assert from_gateway == accepted_events, _diff(from_gateway, accepted_events)
    assert Counter(report.label_ids) == accepted_labels, _diff(Counter(report.label_ids), accepted_labels)
    # Every S.raw record became an event or a dead letter, exactly once.
    in_events = Counter(report.event_ids)
    for event_id, (partition, offset) in raw_ids.items():
        dead = report.dead_letters.get((topics.raw, partition, offset), [])
        assert in_events[event_id] + len(dead) == 1, (event_id, in_events[event_id], dead)
    assert not report.problems, "\n".join(report.problems[:30])

    print(
        f"\n{len(answers)} requests, {sum(accepted_events.values())} events and {sum(accepted_labels.values())} labels "
        f"accepted, {len(raw)} raw records; accounted for in {elapsed:.1f}s "
        f"({', '.join(f'{name} {seconds:.1f}s' for name, seconds in phases.items())})"
    )
    print(status_table([(a.probe.category, a.status, len(a.accepted())) for a in answers]))
    print(report.table())


def unexpected_errors(log: Path) -> list[str]:
    """Tracebacks and errors a service logged, but aiohttp's own about requests it refused as malformed.

    aiohttp logs those at error level with a traceback: a request head it cannot parse (answered with
    its own 400), and a body it could not decompress, which it reads on after the handler answered 400
    and meets the error again as it drops the connection.
    """
    found = []
    for record in log_records(log):
        trace = str(record.get("exc", ""))
        if record.get("level") not in ("error", "critical") and not trace:
            continue
        if record.get("logger") == "aiohttp.server" and "aiohttp.http_exceptions." in trace:
            continue  # a request aiohttp refused itself, and answered (see PARSED_BEFORE_ROUTING)
        found.append(f"{record.get('logger')}: {record.get('msg')} {trace[-500:]}")
    text = log.read_text(errors="replace")
    # Tracebacks printed outside the JSON log: a thread that died (the bridge), or the process itself.
    found += [line for line in text.splitlines() if line.startswith(("Traceback", "Exception in thread"))]
    return found


def _diff(found: Counter[str], expected: Counter[str]) -> str:
    missing = list((expected - found).elements())
    extra = list((found - expected).elements())
    return f"missing {len(missing)}: {missing[:5]}; unexpected or repeated {len(extra)}: {extra[:5]}"


# -- in process: the gateway's pure path over many more bodies, and the inputs that crashed it -------------------

DEMO = load_contract(REPO_ROOT / "schemas/streams/demo.yaml")
INT64 = range(-(2**63), 2**63)


@functools.cache
def demo_serdes() -> dict[str, TopicSerde]:
    """The demo stream's events and feedback serdes, without a registry."""
    return {
        "events": one_schema_serde("demo.events", REPO_ROOT / "schemas/streams/demo.avsc"),
        "feedback": one_schema_serde("demo.feedback", REPO_ROOT / "schemas/feedback.avsc"),
    }


def gateway_path(body: bytes) -> None:
    """What the gateway does with a body, minus HTTP and Kafka: only the errors it answers with a 4xx may escape."""
    try:
        records = parse_body(body)
    except BodyError:
        return
    for kind, serde in demo_serdes().items():
        converted = convert(records, DEMO, kind, 1_700_000_000_000)
        assert len(converted.accepted) + len(converted.rejected) == len(records)
        for _, value in converted.accepted:
            try:
                data = serde.encode(value)
            except SerdeError:
                continue
            # What the gateway hands the producer next must not raise either: the key and the timestamp.
            key, timestamp = (
                (value["event_id"], value["label_time_ms"])
                if kind == "feedback"
                else (value[DEMO.id_field], value[DEMO.time_field])
            )
            key.encode()
            assert timestamp in INT64
            assert serde.decode(data)


@hypothesis_settings(max_examples=250, derandomize=True, database=None, deadline=None)
@given(hostile_batches(f"pure-{n}" for n in itertools.count()))
def test_parse_convert_encode_raise_only_the_errors_the_gateway_answers(batch: tuple[bytes, str]) -> None:
    gateway_path(batch[0])


def test_hand_picked_bodies_raise_only_the_errors_the_gateway_answers() -> None:
    for probe in hand_picked(random.Random(SEED), MAX_BODY_BYTES):
        gateway_path(probe.body)


# Each of these answered 500 (or killed the bridge thread) before it was fixed.
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(DEEP, "too deeply", id="arrays-100000-deep"),
        pytest.param(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "too deeply", id="objects-100000-deep"),
        pytest.param(b'{"x0": 1}\n' + DEEP, "too deeply", id="deep-second-json-line"),
        pytest.param(b'{"x0": ' + HUGE_NUMBERS["int_5000_digits"].encode() + b"}", "number", id="int-5000-digits"),
    ],
)
def test_hostile_json_bodies_are_body_errors(body: bytes, message: str) -> None:
    with pytest.raises(BodyError, match=message):
        parse_body(body)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        pytest.param({"x0": 10**400}, "too large for double", id="int-400-digits-as-double"),
        pytest.param({"event_time_ms": "\u00b2"}, "not epoch milliseconds", id="superscript-digit-time"),
        pytest.param({"event_time_ms": "9" * 5000}, "not epoch milliseconds", id="time-5000-digits"),
        pytest.param({"event_time_ms": 10**400}, "out of range", id="int-400-digits-as-time"),
        pytest.param({"event_time_ms": 1e300}, "out of range", id="float-1e300-as-time"),
        pytest.param({"event_time_ms": -1}, "before 1970", id="negative-time"),
    ],
)
def test_hostile_values_are_record_errors(record: dict[str, Any], message: str) -> None:
    with pytest.raises(RecordError, match=message):
        to_event(record, DEMO)


def test_a_huge_regression_label_is_a_record_error() -> None:
    with pytest.raises(RecordError, match="too large"):
        to_feedback({"event_id": "e", "label": 10**400}, "regression")


def test_the_bridge_dead_letters_json_nested_too_deeply() -> None:
    with pytest.raises(SerdeError, match="not JSON"):
        JsonSerde("demo.raw").decode(DEEP)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X-API-Key": "\udcff\udcfe"}, id="x-api-key-not-utf8"),
        pytest.param({"Authorization": "Bearer \udced\udca0\udc80"}, id="bearer-not-utf8"),
        pytest.param({"Authorization": "Basic \udcff"}, id="basic-not-ascii"),
    ],
)
def test_api_key_headers_that_are_not_utf8_are_refused_not_crashed_on(headers: dict[str, str]) -> None:
    # aiohttp hands header bytes that are not UTF-8 over surrogate-escaped.
    verdict = ApiKeys.from_env({"EDDY_API_KEYS": f"{API_KEY}:producer"}).check(headers, "producer", "send records")
    assert isinstance(verdict, Denied) and verdict.status == 401
