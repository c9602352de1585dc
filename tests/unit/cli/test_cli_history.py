"""``eddy models history``: the periods of a stream's serving table, and the one holding ``--at``."""

from __future__ import annotations

import json

import pytest
from eddy.cli import main as cli
from eddy.cli import production

from tests.unit.ml.test_production_history import LIFE


@pytest.fixture(autouse=True)
def events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(production, "model_events", lambda settings: iter(reversed(LIFE)))  # any order in


def test_the_whole_history_in_order_with_causes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["models", "history", "demo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert "default@1 answers, default@2 answers 10%" in lines[1] and "reason: concept_drift" in lines[1]
    assert "default@1 answers" in lines[3] and "rolled_back by user:ann (reason: worse)" in lines[3]


def test_at_a_time_inside_the_canary_trial(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["models", "history", "demo", "--at", "ms:2750", "--json"]) == 0
    (period,) = json.loads(capsys.readouterr().out)
    assert (period["champion"], period["challenger"], period["canary"]) == ("default@1", "default@2", 0.1)
    assert (period["from_ms"], period["until_ms"]) == (2_000, 3_000)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["models", "history", "demo", "--at", "ms:10"], "nothing answered"),
        (["models", "history", "demo", "--at", "offset:3"], "not an offset"),
        (["models", "history", "nope"], "no registry facts"),
    ],
)
def test_clear_errors(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 1
    assert says in capsys.readouterr().err
