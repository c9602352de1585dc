"""The ``eddy`` command's own behaviour: following a topic, --version, exit codes, where `status` gets its roles."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import confluent_kafka
import httpx
import pytest
from eddy.cli import main as cli
from eddy.cli import models as cli_models
from eddy.cli.common import EXIT_FAILURE, EXIT_USAGE

TOPIC = "demo.events"


class FakeMessage:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return json.dumps({"n": self._offset}).encode()  # not Avro: tail shows it as text

    def headers(self) -> None:
        return None


class FakeConsumer:
    """A topic of ``records`` messages; consume() hands out at most what it is asked for, like the real one."""

    records = 1234
    asked: list[int] = []

    def __init__(self, _config: dict[str, Any]) -> None:
        self.next = 0

    def list_topics(self, timeout: float) -> Any:
        topic = type("Topic", (), {"error": None, "partitions": {0: None}})()
        return type("Metadata", (), {"topics": {TOPIC: topic}})()

    def assign(self, _partitions: Any) -> None:
        pass

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        FakeConsumer.asked.append(num_messages)
        if num_messages < 1:
            raise ValueError("num_messages must be >= 1")  # what confluent_kafka does
        end = min(self.records, self.next + num_messages)
        out = [FakeMessage(i) for i in range(self.next, end)]
        self.next = end
        return out

    def close(self) -> None:
        pass


@pytest.fixture()
def fake_topic(monkeypatch: pytest.MonkeyPatch) -> type[FakeConsumer]:
    FakeConsumer.asked = []
    monkeypatch.setattr(confluent_kafka, "Consumer", FakeConsumer)
    monkeypatch.setattr(cli, "_check_kafka", lambda settings: None)
    return FakeConsumer


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_tail_without_max_follows_past_the_first_batch(
    fake_topic: type[FakeConsumer], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "tail", TOPIC, "--from-beginning", "--timeout", "1")
    assert code == 0
    assert [json.loads(json.loads(line)["bytes"])["n"] for line in out.splitlines()] == list(
        range(FakeConsumer.records)
    )
    assert min(fake_topic.asked) >= 1


def test_tail_with_max_stops_there(fake_topic: type[FakeConsumer], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "tail", TOPIC, "--from-beginning", "--max", "700")
    assert code == 0 and len(out.splitlines()) == 700 and fake_topic.asked == [500, 200]


def test_version_names_the_distribution_and_where_it_runs_from(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.startswith("eddy 0.") and str(Path(cli.__file__).resolve().parent.parent) in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["tail"], "the following arguments are required: topic"),
        (["nope"], "invalid choice: 'nope'"),
        (["tail", TOPIC, "--max", "0"], "argument --max: 0 is not a whole number above 0"),
        (["tail", TOPIC, "--timeout", "soon"], "argument --timeout: soon is not a number above 0"),
        (["down", "--timeout", "-1"], "argument --timeout"),
        (["models", "show", "demo", "garbage"], "'garbage' is not a model version like default@3"),
        (["experiments", "list", "demo", "--limit", "-5"], "argument --limit"),
        (["kafka", "start", "--nodes", "0"], "argument --nodes"),
        (["experiments", "compare", "one"], "name at least two experiments"),
        (["dlq", "replay"], "name the stream"),
        (["dlq", "demo", "--dry-run"], "go with `eddy dlq replay S`"),
        (["dlq", "replay", "demo", "--max", "3"], "--max goes with `eddy dlq S`"),
        (["streams", "show"], "name the stream"),
        (["streams", "validate"], "name the contract file"),
        (["kafka", "install", "--nodes", "3"], "takes no --dir or --nodes"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDDY_STATE_DIR", str(tmp_path))  # no stack: nothing to reach, nothing to stop
    code, _, err = run(capsys, *argv)
    assert code == EXIT_USAGE, err
    assert words in err and len(err.splitlines()) == 1, err


def test_runtime_failures_exit_1_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDDY_STATE_DIR", str(tmp_path))
    closed = "http://127.0.0.1:1"
    for argv, words in [
        (["models", "list", "demo", "--url", closed], f"cannot reach the model registry at {closed}"),
        (["status"], "eddy is not running"),
        (["produce", "nope", "x.jsonl"], "unknown stream 'nope'"),
    ]:
        code, _, err = run(capsys, *argv)
        assert code == EXIT_FAILURE, err
        assert words in err and len(err.splitlines()) == 1, err


def test_kafka_down_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDDY_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("EDDY_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setattr(cli, "_check_kafka", _kafka_down)
    code, _, err = run(capsys, "tail", TOPIC, "--max", "1")
    assert code == EXIT_FAILURE and err == "eddy: error: cannot reach Kafka at 127.0.0.1:1 (is `eddy up` running?)\n"


def _kafka_down(settings: Any) -> None:
    raise cli.CliError(f"cannot reach Kafka at {settings.bootstrap_servers} (is `eddy up` running?)")


# -- status: the live champion -------------------------------------------------------------------------


def fake_stack(state_dir: Path, registry_url: str) -> None:
    """A stack.json for a stack whose supervisor is this process, with only a model registry."""
    doc = {
        "supervisor_pid": os.getpid(),
        "state_dir": str(state_dir),
        "bootstrap_servers": "127.0.0.1:1",
        "schema_registry_url": "http://127.0.0.1:1",
        "services": {"model_registry": {"pid": None, "restarts": 0, "url": registry_url}},
    }
    (state_dir / "stack.json").write_text(json.dumps(doc))


def test_status_shows_the_registry_champion_after_a_promotion(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "http://registry.test"
    fake_stack(tmp_path, url)
    monkeypatch.setenv("EDDY_STATE_DIR", str(tmp_path))
    monkeypatch.delenv(cli_models.URL_ENV, raising=False)
    answer = {"stream": "demo", "champion": "default@2", "challenger": None, "canary": 0.1, "versions": []}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    monkeypatch.setattr(cli_models, "make_client", lambda base: httpx.Client(base_url=base, transport=transport))
    monkeypatch.setattr("eddy.stack.up.service_health", lambda url, timeout_s=1.0: {"status": "ok"})

    code, out, _ = run(capsys, "status")
    assert code == 0
    assert f"champion default@2  challenger -  from the model registry at {url}" in out
    code, out, _ = run(capsys, "status", "--json")
    roles = json.loads(out)["models"]["demo"]
    assert roles["champion"] == "default@2" and roles["source"] == f"the model registry at {url}"


def test_status_says_when_the_champion_is_only_the_contract_s(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_stack(tmp_path, "http://127.0.0.1:1")
    monkeypatch.setenv("EDDY_STATE_DIR", str(tmp_path))
    monkeypatch.delenv(cli_models.URL_ENV, raising=False)
    monkeypatch.setattr("eddy.stack.up.service_health", lambda url, timeout_s=1.0: {"status": "down"})
    code, out, _ = run(capsys, "status")
    assert code == 0
    assert "champion default@1  challenger -  from the contract (the first champion only" in out
    assert "cannot reach the model registry at http://127.0.0.1:1" in out


def test_a_second_up_is_refused_and_leaves_the_running_stack_findable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_stack(tmp_path, "http://127.0.0.1:1")
    monkeypatch.setenv("EDDY_STATE_DIR", str(tmp_path))
    code, _, err = run(capsys, "up")
    assert code == EXIT_FAILURE and "eddy is already running from" in err and len(err.splitlines()) == 1
    assert (tmp_path / "stack.json").exists(), "`eddy status` and `eddy down` find the running stack by this file"


def test_config_rows_line_up(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "config")
    lines = out.splitlines()
    width = max(len(line.split(" ", 1)[0]) for line in lines)
    assert code == 0 and all(
        (line[width] == " " and line[width + 1] != " ") or line[width + 1 :].startswith(" " * 40) for line in lines
    )


def test_dlq_says_when_there_is_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDDY_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(cli, "_check_kafka", lambda settings: None)
    monkeypatch.setattr("eddy.history.dlq_tools.read_dlq", lambda settings, stream, max_records=None: iter(()))
    code, out, err = run(capsys, "dlq", "demo")
    assert code == 0 and out == "" and err == "no dead letters in demo.dlq\n"


def test_an_unreachable_service_is_named_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(_args: Any) -> int:
        raise httpx.ConnectError("[Errno 111] refused", request=httpx.Request("GET", "http://127.0.0.1:8081/subjects"))

    monkeypatch.setattr(cli, "cmd_config", refused)
    code, _, err = run(capsys, "config")
    assert code == EXIT_FAILURE
    assert err == "eddy: error: cannot reach http://127.0.0.1:8081: [Errno 111] refused (is `eddy up` running?)\n"


def test_librdkafka_s_retry_logs_are_quiet_unless_asked_for(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from eddy.kafka.client import client_log

    original = client_log.level
    try:
        client_log.setLevel(logging.NOTSET)
        monkeypatch.delenv("EDDY_LOG_LEVEL", raising=False)
        run(capsys, "config")
        assert client_log.level == logging.CRITICAL, "the command's own one line says Kafka is unreachable"
        client_log.setLevel(logging.NOTSET)
        monkeypatch.setenv("EDDY_LOG_LEVEL", "DEBUG")
        run(capsys, "config")
        assert client_log.level == logging.NOTSET
    finally:
        client_log.setLevel(original)
