from pathlib import Path

import pytest
from eddy.contracts.durations import ContractError
from eddy.contracts.stream import load_contract, load_contracts
from eddy.core.settings import REPO_ROOT

DEMO_SCHEMA = (REPO_ROOT / "schemas/streams/demo.avsc").read_text()
GOOD = """
stream: s1
event_schema: s.avsc
features:
  x0: {type: double, min: 0, max: 10}
models:
  - name: m
    pipeline:
      - linear_model.LogisticRegression: {}
"""


def write(tmp_path: Path, text: str, schema: str = DEMO_SCHEMA) -> Path:
    (tmp_path / "s.avsc").write_text(schema)
    path = tmp_path / "s1.yaml"
    path.write_text(text)
    return path


def test_demo_contract_loads() -> None:
    demo = load_contract(REPO_ROOT / "schemas/streams/demo.yaml")
    assert demo.name == "demo"
    assert demo.task == "binary"
    assert demo.champion.features == ("x0", "x1", "x2")
    assert demo.feature("region").allowed == ("north", "south", "east", "west")


def test_defaults(tmp_path: Path) -> None:
    c = load_contract(write(tmp_path, GOOD))
    assert (c.id_field, c.time_field, c.task) == ("event_id", "event_time_ms", "binary")
    assert c.champion.features == ("x0",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("x0: {type: double", "nope: {type: double"), "feature 'nope' is not a field of the event schema"),
        (("type: double", "type: decimal"), "type 'decimal' is not one of"),
        (("min: 0, max: 10", "min: 10, max: 0"), "min 10 is above max 0"),
        (("event_schema: s.avsc", "event_schema: missing.avsc"), "event schema missing.avsc"),
        (("linear_model.LogisticRegression: {}", "- bad"), "one-key mapping"),
        (("stream: s1", "stream: a.b"), "must be non-empty and contain no dot"),
        (("features:", "label: {task: ranking}\nfeatures:"), "label task 'ranking'"),
    ],
)
def test_contract_errors_name_file_and_problem(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ContractError) as err:
        load_contract(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_type_mismatch_with_schema(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("x0: {type: double", "region: {type: double"))
    with pytest.raises(ContractError, match="is double in the contract but"):
        load_contract(path)


def test_not_yaml(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="cannot read contract"):
        load_contract(write(tmp_path, "stream: [unclosed"))


def test_unknown_stream_selected(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    with pytest.raises(ContractError, match="unknown stream"):
        load_contracts(tmp_path, ("other",))
    assert list(load_contracts(tmp_path)) == ["s1"]
