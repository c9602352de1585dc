"""``eddy experiments ...`` and ``record_experiment`` against the registry's real REST API (no Kafka)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eddy.cli import experiments as cli_experiments
from eddy.cli import main as cli
from eddy.cli import models as cli_models
from eddy.cli.experiments import record_experiment
from eddy.core.settings import Settings
from eddy.runtime.observability import Health
from eddy.runtime.server import serve_http
from eddy.services.model_registry.http import RegistryApi

from tests.unit.services.model_registry.test_registry_store import open_registry

DATA = {
    "stream": "demo",
    "topic": "demo.labeled",
    "bounds": {"given": {"from": "2024-05-01", "until": "2024-05-02"}},
    "partitions": [{"partition": 0, "first_offset": 0, "last_offset": 99}],
    "rows": 100,
    "path": "/data/a",
}


def experiment(**overrides: Any) -> dict[str, Any]:
    base = {
        "stream": "demo",
        "title": "tree vs logistic",
        "models": ["default@1", {"name": "tree", "pipeline": []}],
        "data": DATA,
        "metrics": {"default@1": {"accuracy": 0.81234}, "tree": {"accuracy": 0.85}},
        "report": "/reports/a.html",
        "output": None,
    }
    return {**base, **overrides}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, RegistryApi]]:
    rest = RegistryApi()
    http = serve_http("127.0.0.1", 0, Health("model_registry"), rest.http_api())
    yield f"http://127.0.0.1:{http.port}", rest
    http.stop()


@pytest.fixture()
def registry_url(server: tuple[str, RegistryApi], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url, rest = server
    rest.attach(open_registry(tmp_path), lambda: True)
    monkeypatch.setenv(cli_models.URL_ENV, url)
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``eddy`` with the experiments commands added, as shared/eddy/cli/main.py adds them."""
    parser = argparse.ArgumentParser(prog="eddy")
    cli_experiments.add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except cli.CliError as exc:
        print(f"eddy: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    out, err = capsys.readouterr()
    return code, out, err


def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path / "no-stack")


def test_record_then_list(registry_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = record_experiment(settings(tmp_path), experiment(id="run-1", created_at_ms=1_700_000_000_000))
    second = record_experiment(settings(tmp_path), experiment(title="again", created_at_ms=1_700_000_100_000))
    assert first == "run-1" and second is not None and len(second) == 36
    code, out, err = run(capsys, "experiments", "list", "demo")
    assert code == 0 and err == ""
    header, *rows = out.splitlines()
    assert header.split()[:5] == ["ID", "CREATED", "BY", "TITLE", "ROWS"]
    assert [r.split()[0] for r in rows] == [second, "run-1"]
    assert "default@1, tree" in rows[1] and "default@1.accuracy 0.8123" in rows[1] and " 100 " in rows[1]
    code, out, _ = run(capsys, "experiments", "list", "demo", "--json", "--limit", "1")
    assert [e["id"] for e in json.loads(out)["experiments"]] == [second]


def test_show(registry_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record_experiment(settings(tmp_path), experiment(id="run-1", seed=7))
    code, out, _ = run(capsys, "experiments", "show", "run-1")
    assert code == 0
    assert "models     default@1, tree" in out and "report     /reports/a.html" in out
    assert "partitions.0.last_offset" in out and "default@1.accuracy" in out and "0.8123" in out
    assert "other" in out and "seed" in out
    code, out, _ = run(capsys, "experiments", "show", "run-1", "--json")
    doc = json.loads(out)
    assert doc["id"] == "run-1" and doc["seed"] == 7 and doc["created_by"]  # the user, by default


def test_compare_same_data(registry_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record_experiment(settings(tmp_path), experiment(id="a"))
    # Another copy of the same dataset: where it lives is not which data it is.
    record_experiment(
        settings(tmp_path), experiment(id="b", data={**DATA, "path": "/data/b"}, metrics={"tree": {"accuracy": 0.9}})
    )
    code, out, _ = run(capsys, "experiments", "compare", "a", "b")
    assert code == 0 and "warning" not in out and "*" not in out
    lines = out.splitlines()
    assert lines[0].split() == ["experiment", "a", "b"]
    tree = next(line for line in lines if "metrics.tree.accuracy" in line)
    assert tree.split()[1:] == ["0.85", "0.9"]
    logistic = next(line for line in lines if "metrics.default@1.accuracy" in line)
    assert logistic.split()[1:] == ["0.8123", "-"]


def test_compare_flags_different_data(registry_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record_experiment(settings(tmp_path), experiment(id="a"))
    other = {**DATA, "partitions": [{"partition": 0, "first_offset": 0, "last_offset": 199}], "rows": 200}
    record_experiment(settings(tmp_path), experiment(id="b", data=other))
    code, out, _ = run(capsys, "experiments", "compare", "a", "b")
    assert code == 0 and "not a like-for-like comparison" in out
    marked = [line.split()[1] for line in out.splitlines() if line.startswith("*")]
    assert marked == ["data.partitions.0.last_offset", "data.rows"]
    code, out, _ = run(capsys, "experiments", "compare", "a", "b", "--json")
    doc = json.loads(out)
    assert doc["same_data"] is False and doc["data_differences"] == ["partitions.0.last_offset", "rows"]
    assert doc["models"] == [["default@1", "tree"], ["default@1", "tree"]]
    assert doc["metrics"]["tree.accuracy"] == [0.85, 0.85]


def test_errors_are_one_line(registry_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "experiments", "show", "nope")
    assert code == cli.EXIT_FAILURE and err == "eddy: error: no experiment 'nope' (HTTP 404)\n"
    code, _, err = run(capsys, "experiments", "compare", "a")
    assert code == cli.EXIT_USAGE and "at least two" in err
    code, _, err = run(capsys, "experiments", "list", "nope")
    assert code == cli.EXIT_FAILURE and "unknown stream 'nope'" in err


def test_record_warns_and_returns_none_when_it_cannot(
    registry_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert record_experiment(settings(tmp_path), experiment(models=[])) is None
    err = capsys.readouterr().err
    assert err == "eddy: warning: experiment not recorded: models must be a non-empty list " + (
        "(of versions like default@2, or of spec objects) (HTTP 400)\n"
    )
    assert record_experiment(settings(tmp_path), experiment(), url="http://127.0.0.1:1") is None
    assert "cannot reach the model registry at http://127.0.0.1:1" in capsys.readouterr().err
    monkeypatch.delenv(cli_models.URL_ENV)
    assert record_experiment(settings(tmp_path), experiment()) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no running stack" in err


def test_record_finds_the_running_stack_and_sends_numpy_like_values(
    server: tuple[str, RegistryApi], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, rest = server
    rest.attach(open_registry(tmp_path), lambda: True)
    monkeypatch.delenv(cli_models.URL_ENV, raising=False)
    state = tmp_path / "state"
    state.mkdir()
    stack = {"supervisor_pid": os.getpid(), "services": {"model_registry": {"url": url}}}
    (state / "stack.json").write_text(json.dumps(stack))

    class Scalar:
        def item(self) -> int:
            return 3

    experiment_id = record_experiment(Settings(state_dir=state), experiment(metrics={"n": Scalar(), "p": tmp_path}))
    assert experiment_id is not None
    shown = httpx.get(f"{url}/api/experiments/show", params={"id": experiment_id}).json()
    assert shown["metrics"] == {"n": 3, "p": str(tmp_path)}
