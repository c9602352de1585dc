"""Sandbox contracts: ``sandbox_of: S`` copies stream S's contract under a new stream name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from eddy.contracts.durations import ContractError
from eddy.contracts.stream import load_contract, load_contracts
from eddy.core.settings import REPO_ROOT
from eddy.core.topics import StreamTopics

SANDBOX = "stream: demo-replay-1\nsandbox_of: demo\n"


@pytest.fixture()
def contracts(tmp_path: Path) -> Path:
    """A contracts directory holding the demo contract and its schema."""
    for name in ("demo.yaml", "demo.avsc"):
        shutil.copy(REPO_ROOT / "schemas/streams" / name, tmp_path / name)
    return tmp_path


def test_a_sandbox_is_its_parent_under_another_name(contracts: Path) -> None:
    (contracts / "demo-replay-1.yaml").write_text(SANDBOX)
    loaded = load_contracts(contracts)
    demo, sandbox = loaded["demo"], loaded["demo-replay-1"]
    assert sandbox.sandbox_of == "demo" and demo.sandbox_of is None
    assert sandbox.name == "demo-replay-1"
    for key in ("event_schema", "id_field", "time_field", "features", "task", "models", "label_field"):
        assert getattr(sandbox, key) == getattr(demo, key), key
    for key in ("allowed_lateness_ms", "pii", "monitoring", "retraining"):
        assert getattr(sandbox, key) == getattr(demo, key), key
    assert StreamTopics(sandbox.name).events == "demo-replay-1.events"
    assert load_contracts(contracts, ("demo-replay-1",)).keys() == {"demo-replay-1"}


def test_a_sandbox_loads_alone_and_may_replace_whole_keys(contracts: Path) -> None:
    path = contracts / "demo-replay-1.yaml"
    path.write_text(SANDBOX + "allowed_lateness: 5m\n")
    sandbox = load_contract(path)
    assert sandbox.allowed_lateness_ms == 300_000
    assert sandbox.path == path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stream: demo-replay-1\nsandbox_of: nope\n", "sandbox_of 'nope': no contract in"),
        ("stream: demo-replay-2\nsandbox_of: demo-replay-1\n", "demo-replay-1.yaml is itself a sandbox"),
        ("sandbox_of: demo\n", "'stream' is required"),
        ("stream: demo-replay-1\nsandbox_of: [demo]\n", "'sandbox_of' is required and must be a str"),
    ],
)
def test_sandbox_errors_name_the_file_and_the_problem(contracts: Path, text: str, message: str) -> None:
    (contracts / "demo-replay-1.yaml").write_text(SANDBOX)
    path = contracts / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ContractError) as err:
        load_contract(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
