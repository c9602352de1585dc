"""``eddy backtest --gate``: what is wrong on the command line is exit code 2 before anything is read."""

from __future__ import annotations

from pathlib import Path

import pytest
from eddy.cli.backtest import BacktestError, contract_file_model
from eddy.cli.common import EXIT_USAGE
from eddy.cli.main import main
from eddy.contracts.stream import load_contract
from eddy.core.settings import REPO_ROOT

GATE = "candidate.accuracy >= champion.accuracy - 0.005"
DEMO = REPO_ROOT / "schemas/streams/demo.yaml"


@pytest.fixture(autouse=True)
def no_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No running `eddy up` is looked at, and no broker is needed: every case fails before reading.
    monkeypatch.setenv("EDDY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("EDDY_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    monkeypatch.setenv("EDDY_CONTRACTS_DIR", str(DEMO.parent))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--gate", "candidate.accuracy >= 0.9"), "a gate names the candidate: give --candidate"),
        (("--gate", "candidate.mae <= 1", "--candidate", "default"), "unknown metric 'mae'"),
        (("--gate", "candidate.accuracy = 0.9", "--candidate", "default"), "is not a comparison"),
        (("--gate-file", "missing-gates.yaml"), "missing-gates.yaml: cannot read the gate file"),
        (("--junit", "j.xml"), "--junit and --summary-json report gates: give --gate or --gate-file"),
        (("--summary-json", "s.json"), "give --gate or --gate-file"),
        (("--champion", "default", "--candidate", "default", "--gate", GATE), "are both default"),
    ],
)
def test_a_wrong_gate_option_is_a_usage_error(
    args: tuple[str, ...], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backtest", "demo", "--no-record", *args]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err


def test_a_model_of_another_contract_file(tmp_path: Path) -> None:
    demo = load_contract(DEMO)
    assert contract_file_model(DEMO, "default", demo) == demo.champion
    with pytest.raises(BacktestError, match="no such contract file"):
        contract_file_model(tmp_path / "base.yaml", "default", demo)
    with pytest.raises(BacktestError, match=r"has no model 'fancy' \(default\)"):
        contract_file_model(DEMO, "fancy", demo)
    # the other contract's model reads a feature this stream does not have
    (tmp_path / "demo.avsc").write_text((DEMO.parent / "demo.avsc").read_text().replace("region", "channel"))
    other = tmp_path / "demo.yaml"
    text = DEMO.read_text().replace("region", "channel")
    other.write_text(text.replace("features: [x0, x1, x2]", "features: [x0, channel]"))
    with pytest.raises(BacktestError, match="features channel are not in demo's contract"):
        contract_file_model(other, "default", demo)


def test_the_ci_example_runs_a_command_eddy_understands() -> None:
    import shlex

    import yaml
    from eddy.cli.main import build_parser
    from eddy.history.backtest.gate import parse_gates

    workflow = yaml.safe_load((REPO_ROOT / "docs/examples/model-ci.yml").read_text())
    (job,) = workflow["jobs"].values()
    (step,) = [s for s in job["steps"] if s.get("name") == "Backtest gate"]
    argv = shlex.split(step["run"].replace("\\\n", " "))
    assert argv[:2] == ["eddy", "backtest"]
    args = build_parser().parse_args(argv[1:])
    assert args.junit and args.summary_json and args.candidate and args.champion.endswith("#$MODEL")
    assert {g.expression for g in parse_gates(args.gate)} >= {"candidate.accuracy >= champion.accuracy - 0.005"}
    # the uploads and the JUnit check read the files the command writes
    uploads = {s.get("uses", "").split("@")[0]: s.get("with", {}) for s in job["steps"]}
    assert Path(args.junit).parent == Path(uploads["actions/upload-artifact"]["path"])
    assert uploads["mikepenz/action-junit-report"]["report_paths"] == args.junit
