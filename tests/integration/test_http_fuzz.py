"""Every HTTP API fuzzed from its own OpenAPI document with schemathesis, against the real service.

For each API (ingestion, inference's predictions, the model registry, the monitoring dashboard), the
service runs against the test broker with API keys (``http_apis.py``), and schemathesis loads the
document it serves at ``/openapi.json``. For every operation of it, hypothesis draws requests from the
document, valid ones (positive) and ones that break it (negative), seeded (``derandomize``): the same
document draws the same requests (each run's stream has a fresh name, so the counts vary a little).
Three in four of the drawn requests name the real stream (path, query or body) and, at the registry,
a real version, so that they get past the 404s into the APIs' work; the key sent is one whose role
may do everything the API offers.

Bounds: :data:`EXAMPLES` requests per operation and mode, no shrinking, a client timeout of
:data:`TIMEOUT_S` per request, and a wall-time guard of :data:`BUDGET_S` per API after which the
remaining examples are drawn but not sent. The fuzz runs on the Tansu tier only (its findings do not
depend on the broker): about 4,000 requests to the four APIs, a minute with the service starts.

Each answer must be:

- an answer at all, within the timeout (no hang, no reset), and never a 5xx;
- a 4xx with its reason: a JSON error with a message, or (422) every record with its reasons;
- what the document says: a documented status code, content type and body schema (schemathesis'
  ``status_code_conformance``, ``content_type_conformance``, ``response_schema_conformance``).

And after the requests: nothing accepted is lost, and nothing rejected is half-written. Ingestion:
``S.events`` (``S.feedback``) holds exactly the event ids (labels) acknowledged as accepted, each as
often as acknowledged. Predictions: ``S.predictions`` holds exactly the predictions answered. The
registry: ``eddy.model-events`` holds exactly the changes answered 200 or 202 under the operator's
name, and the stream's experiments are exactly those answered 201. Hand-picked requests (:data:`HOSTILE`)
follow the fuzz: each answered 500 before it was fixed, or is close to one that was. The services are
still the same processes at the end, and ready.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from eddy.core.settings import Settings
from eddy.core.topics import MODEL_EVENTS_TOPIC, StreamTopics
from eddy.runtime.auth import OPERATOR, PRODUCER, VIEWER
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode, Response
from schemathesis.core.failures import FailureGroup

from tests.helpers import create_topics, read_topic
from tests.integration.http_apis import APIS, KEYS, NAMES, RunningApi, keyed, running_api

pytestmark = pytest.mark.integration

EXAMPLES = 100
TIMEOUT_S = 20.0
BUDGET_S = 90.0
# The key each API is fuzzed with: a role that may do everything the API offers.
ROLE = {"ingestion": PRODUCER, "inference": PRODUCER, "model_registry": OPERATOR, "monitoring": VIEWER}
# Three requests in four name the real stream; the others whatever schemathesis drew.
AIMED = st.sampled_from([True, True, True, False])
# Versions the registry may know (default@1 is the champion it starts with) and some it does not.
VERSIONS = ("default@1", "default@2", "default@3", "other@1")
# The response checks of schemathesis run on every answer; its checks that judge the API's leniency
# (negative_data_rejection, positive_data_acceptance) do not: a batch of records with some invalid is
# answered 207 by design, each record with its reasons.
CHECKS = [
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


@dataclass
class Tally:
    """What the fuzz of one API sent and got back."""

    api: str
    statuses: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    answers: list[tuple[Case, Response]] = field(default_factory=list)
    skipped: int = 0
    unbreakable: list[str] = field(default_factory=list)
    per_operation: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    def row(self) -> str:
        fours = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()) if 400 <= code < 500)
        two = sum(n for code, n in self.statuses.items() if 200 <= code < 300)
        five = sum(n for code, n in self.statuses.items() if code >= 500)
        return f"| {self.api} | {self.sent} | {two} | {fours} | {five} | {self.seconds:.0f} s |"


def reason_problem(response: Response | httpx.Response) -> str | None:
    """Why a 4xx answer does not say what was wrong with the request; None when it does."""
    try:
        doc = response.json()
    except ValueError:
        return f"a {response.status_code} that is not JSON: {response.text[:200]!r}"
    if not isinstance(doc, dict):
        return f"a {response.status_code} that is not a JSON object: {response.text[:200]!r}"
    if response.status_code == 422 and isinstance(doc.get("results"), list):
        # Every record rejected: each result carries its reason (ingestion: error; predictions: reasons).
        if all(r.get("error") or r.get("reasons") for r in doc["results"]):
            return None
        return f"a 422 with a record rejected without a reason: {response.text[:300]}"
    if isinstance(doc.get("error"), str) and doc["error"].strip():
        return None
    return f"a {response.status_code} without an error message: {response.text[:200]!r}"


def summary(problems: list[str]) -> str:
    """The problems, one example of each kind (its first line but the status), with how often it came."""
    kinds: dict[str, list[str]] = {}
    for problem in problems:
        kinds.setdefault(problem.split("\n", 1)[0], []).append(problem)
    return f"{len(problems)} problems of {len(kinds)} kinds:\n" + "\n\n".join(
        f"[{len(same)}x] {same[0]}" for same in kinds.values()
    )


def aim(case: Case, stream: str, version: str) -> None:
    """Point ``case`` at the real stream (and a version the registry may know) wherever it names one."""
    if case.path_parameters is not None and "stream" in case.path_parameters:
        case.path_parameters = {**case.path_parameters, "stream": stream}
    if isinstance(case.query, dict):
        fixed = {k: (stream if k == "stream" else version) for k in case.query if k in ("stream", "version", "a", "b")}
        if fixed:
            case.query = {**case.query, **fixed}
    if isinstance(case.body, dict) and case.operation.path.startswith("/api/"):
        body = {**case.body, "stream": stream}
        if "version" in body or case.operation.path.endswith(("promote", "archive")):
            body["version"] = version
        case.body = body


@dataclass(frozen=True)
class Target:
    """Where the fuzz of one API sends its requests, and with what."""

    running: RunningApi
    stream: str
    session: requests.Session
    headers: dict[str, str]
    deadline: float


def fuzz(running: RunningApi, stream: str) -> Tally:
    """Every operation of the API's served document, :data:`EXAMPLES` requests a mode, each checked."""
    tally = Tally(running.name)
    # The document the service serves (from_url would leave out the operation serving the document itself).
    schema = schemathesis.openapi.from_dict(httpx.get(f"{running.url}/openapi.json", timeout=TIMEOUT_S).json())
    started = time.monotonic()
    target = Target(running, stream, requests.Session(), keyed(ROLE[running.name]), started + BUDGET_S)
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err raises here: the document must load whole
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz_operation(operation, mode, target, tally)
            except Unsatisfiable:
                # Nothing breaks the document of an operation without parameters or body (GET /metrics).
                assert mode is GenerationMode.NEGATIVE, operation.label
                tally.unbreakable.append(operation.label)
    tally.seconds = time.monotonic() - started
    return tally


def fuzz_operation(operation: APIOperation, mode: GenerationMode, target: Target, tally: Tally) -> None:
    """:data:`EXAMPLES` requests to ``operation`` drawn in ``mode``, each sent and checked into ``tally``."""
    where = f"{mode.value} {operation.label}"

    @hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), aimed=AIMED, version=st.sampled_from(VERSIONS))
    def send(case: Case, aimed: bool, version: str) -> None:
        if time.monotonic() > target.deadline:
            tally.skipped += 1
            return
        if aimed:
            aim(case, target.stream, version)
        try:
            response = case.call(
                base_url=target.running.url, session=target.session, headers=target.headers, timeout=TIMEOUT_S
            )
        except requests.RequestException as exc:
            tally.statuses[0] += 1
            tally.problems.append(f"{where}: no answer ({type(exc).__name__}: {exc}): {case.as_curl_command()}")
            return
        status = response.status_code
        tally.statuses[status] += 1
        tally.per_operation[where] += 1
        tally.answers.append((case, response))
        if status >= 500:
            tally.problems.append(f"{where}: {status} {response.text[:300]}\n{case.as_curl_command()}")
            return
        if status >= 400:
            problem = reason_problem(response)
            if problem is not None:
                tally.problems.append(f"{where}: {problem}\n{case.as_curl_command()}")
        try:
            case.validate_response(response, checks=CHECKS, headers=target.headers)
        except FailureGroup as group:
            titles = "; ".join(f"{f.title}: {f.message[:300]}" for f in group.exceptions)
            tally.problems.append(f"{where}: {status}: {titles}\n{case.as_curl_command()}")

    send()


# -- hand-picked requests: each answered 500 before it was fixed, or is close to one that did ------------------

BIG = 2**64
# (method, path, query, body) per API; "{S}" stands for the stream. Each must be a 4xx with its reason.
HOSTILE: dict[str, list[tuple[str, str, str, bytes]]] = {
    "model_registry": [
        ("POST", "/api/audit", "", b'{"stream": "{S}", "action": {"a": 1}}'),  # an unhashable action: was a 500
        ("POST", "/api/audit", "", b'{"stream": "{S}", "action": ["x"]}'),
        ("POST", "/api/retrain", "", b'{"stream": "{S}", "reason": "\\ud800"}'),  # a lone surrogate
        ("POST", "/api/experiments", "", b"[" * 100_000 + b"]" * 100_000),  # nested too deeply
        ("POST", "/api/models/promote", "", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
        (
            "POST",
            "/api/experiments",
            "",
            b'{"stream": "{S}", "models": ["default@1"], "data": {}, "metrics": {}, "created_at_ms": %d}' % BIG,
        ),
        ("POST", "/api/models/promote", "", b'{"stream": "{S}", "version": "default@%d"}' % BIG),
        ("POST", "/api/models/archive", "", b'{"stream": "{S}", "version": "default@-1"}'),
        ("POST", "/api/models/rollback", "", b'{"stream": "{S}", "to": "default@%d"}' % BIG),
        ("GET", "/api/models/show", f"stream={{S}}&version=default@{BIG}", b""),
        ("GET", "/api/models/diff", f"stream={{S}}&a=default@1&b=default@{BIG}", b""),
        ("GET", "/api/models", "stream=%ED%A0%80", b""),
        ("GET", "/api/experiments/show", "id=%ED%A0%80", b""),
        ("GET", "/api/experiments/show", "id=%00", b""),
        ("GET", "/api/audit", "stream={S}&limit=1e3", b""),
    ],
    "ingestion": [
        ("POST", "/v1/streams/%ED%A0%80/events", "", b"{}"),
        ("POST", "/v1/streams/{S}/feedback", "", b'{"event_id": "\\ud800", "label": true}'),
        ("POST", "/v1/streams/{S}/feedback", "", b'{"event_id": "h1", "label": true, "label_time_ms": %d}' % BIG),
    ],
    "inference": [
        ("POST", "/v1/streams/{S}/predict", "", b'{"event_id": "\\ud800", "x0": 1, "x1": 1, "x2": 1}'),
        ("POST", "/v1/streams/{S}/predict", "", b'{"x0": 1e999, "x1": 1, "x2": 1}'),
        ("POST", "/v1/streams/{S}/predict", "", b'{"x0": %d, "x1": 1, "x2": 1}' % BIG**20),
    ],
    "monitoring": [
        ("GET", "/api/dashboard", "stream=%ED%A0%80", b""),
        ("GET", "/api/dashboard", "stream=%00", b""),
    ],
}


def hostile(running: RunningApi, stream: str, tally: Tally) -> None:
    """Send the API's :data:`HOSTILE` requests; each must be answered with a 4xx and its reason."""
    headers = {**keyed(ROLE[running.name]), "Content-Type": "application/json"}
    with httpx.Client(base_url=running.url, headers=headers, timeout=TIMEOUT_S) as client:
        for method, path, query, body in HOSTILE[running.name]:
            url = path.replace("{S}", stream) + (f"?{query.replace('{S}', stream)}" if query else "")
            response = client.request(method, url, content=body.replace(b"{S}", stream.encode()))
            tally.statuses[response.status_code] += 1
            where = f"hand-picked {method} {url} {body[:80]!r}"
            if not 400 <= response.status_code < 500:
                tally.problems.append(f"{where}: {response.status_code} {response.text[:300]}")
                continue
            problem = reason_problem(response)
            if problem is not None:
                tally.problems.append(f"{where}: {problem}")


# -- what the answers said was accepted, against what the topics hold ------------------------------------------


def answered(tally: Tally, path_end: str, status: tuple[int, ...]) -> list[dict[str, Any]]:
    """The JSON documents of the answers with ``status`` to requests whose path ends in ``path_end``."""
    return [r.json() for case, r in tally.answers if case.formatted_path.endswith(path_end) and r.status_code in status]


def accepted_records(tally: Tally, path_end: str, status: str) -> Counter[str]:
    """Event ids the answers to ``.../path_end`` acknowledged with ``status`` (accepted, predicted), with repeats."""
    return Counter(
        r["event_id"] for doc in answered(tally, path_end, (200, 207)) for r in doc["results"] if r["status"] == status
    )


def topic_ids(settings: Settings, topic: str) -> Counter[str]:
    return Counter(v["event_id"] for v in read_topic(settings, topic, quiet_s=2.0))


def check_ingestion(settings: Settings, tally: Tally, _running: RunningApi) -> str:
    topics = StreamTopics(settings.streams[0])
    events = accepted_records(tally, "/events", "accepted")
    labels = accepted_records(tally, "/feedback", "accepted")
    assert events and labels, "the fuzz got no record accepted: it did not reach the gateway's work"
    in_events = Counter(v[_id_field(settings)] for v in read_topic(settings, topics.events, quiet_s=2.0))
    assert in_events == events, _diff(in_events, events)
    in_feedback = topic_ids(settings, topics.feedback)
    assert in_feedback == labels, _diff(in_feedback, labels)
    return f"{events.total()} events and {labels.total()} labels acknowledged, each once in S.events / S.feedback"


def check_inference(settings: Settings, tally: Tally, _running: RunningApi) -> str:
    predicted = accepted_records(tally, "/predict", "predicted")
    assert predicted, "the fuzz got nothing predicted: it did not reach the model"
    logged = topic_ids(settings, StreamTopics(settings.streams[0]).predictions)
    assert logged == predicted, _diff(logged, predicted)
    return f"{predicted.total()} predictions answered, each once in S.predictions"


def check_registry(settings: Settings, tally: Tally, running: RunningApi) -> str:
    (stream,) = settings.streams
    changes = ("/audit", "/promote", "/rollback", "/archive", "/retrain")
    posts = [(c, r) for c, r in tally.answers if c.method == "POST" and c.formatted_path.endswith(changes)]
    applied = Counter(r.json()["event"]["event_id"] for _, r in posts if r.status_code in (200, 202))
    assert applied, "the fuzz made no change: it did not reach the registry's work"
    actor = f"user:{NAMES[OPERATOR]}"
    deadline = time.monotonic() + 30
    while True:
        events = [e for e in read_topic(settings, MODEL_EVENTS_TOPIC, quiet_s=1.0) if e["stream"] == stream]
        by_operator = Counter(e["event_id"] for e in events if e["actor"] == actor)
        if by_operator == applied or time.monotonic() > deadline:
            break
    assert by_operator == applied, _diff(by_operator, applied)
    recorded = {r.json()["id"] for c, r in tally.answers if c.method == "POST" and r.status_code == 201}
    assert recorded, "the fuzz recorded no experiment"
    with httpx.Client(base_url=running.url, headers=keyed(VIEWER), timeout=10) as client:
        listed = client.get("/api/experiments", params={"stream": stream, "limit": "1000"}).json()["experiments"]
        assert {e["id"] for e in listed} == recorded, "experiments recorded but not answered 201, or lost"
        for experiment_id in sorted(recorded)[:50]:
            shown = client.get("/api/experiments/show", params={"id": experiment_id})
            assert shown.status_code == 200, (experiment_id, shown.text)
    return f"{applied.total()} changes answered 200/202, each once in eddy.model-events; {len(recorded)} experiments"


def check_monitoring(_settings: Settings, tally: Tally, _running: RunningApi) -> str:
    documents = answered(tally, "/api/dashboard", (200,))
    assert documents, "the fuzz never got a dashboard document"
    return f"{len(documents)} dashboard documents"


ACCOUNTING: dict[str, Callable[[Settings, Tally, RunningApi], str]] = {
    "ingestion": check_ingestion,
    "inference": check_inference,
    "model_registry": check_registry,
    "monitoring": check_monitoring,
}


def _id_field(settings: Settings) -> str:
    from eddy.contracts.stream import load_contracts

    (stream,) = settings.streams
    return load_contracts(settings.contracts_dir, settings.streams)[stream].id_field


def _diff(found: Counter[str], expected: Counter[str]) -> str:
    missing = list((expected - found).elements())
    extra = list((found - expected).elements())
    return f"missing {len(missing)}: {missing[:5]}; unexpected or repeated {len(extra)}: {extra[:5]}"


@pytest.mark.parametrize("api", APIS)
def test_the_api_answers_every_request_its_document_allows_and_loses_nothing(
    api: str, settings: Settings, broker_kind: str, tmp_path: Path
) -> None:
    if broker_kind != "tansu":
        pytest.skip("the fuzz runs on the tansu tier: what it finds in the APIs does not depend on the broker")
    (stream,) = settings.streams
    create_topics(settings)
    with running_api(api, settings, tmp_path) as running:
        pid = running.proc.pid
        tally = fuzz(running, stream)
        hostile(running, stream, tally)
        print(f"\n| API | requests | 2xx | 4xx by code | 5xx | wall time |\n{tally.row()}")
        print(f"not sent (over the time budget): {tally.skipped}; no negative case: {tally.unbreakable}")
        print(", ".join(f"{where}: {n}" for where, n in sorted(tally.per_operation.items())))
        assert not tally.problems, summary(tally.problems)
        assert running.proc.poll() is None and running.proc.pid == pid
        health = httpx.get(f"{running.service_url}/healthz", timeout=5).json()
        assert health["status"] == "ok", health
        print(ACCOUNTING[api](settings, tally, running))
    assert json.dumps(KEYS[ROLE[api]]) not in running.log.read_text(errors="replace")
