"""Backtest gates: the tiny language parses what it promises, refuses the rest with a clear line, and judges right."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from eddy.history.backtest.engine import metric_names
from eddy.history.backtest.gate import (
    GateError,
    evaluate_gates,
    gates_from_document,
    load_gate_file,
    overall,
    parse_gate,
)
from eddy.history.backtest.gate_report import junit_xml, summary_json, write_text

METRICS = {
    "champion": {"accuracy": 0.93, "f1": 0.9, "log_loss": 0.30, "labels": 2000},
    "candidate": {"accuracy": 0.926, "f1": 0.95, "log_loss": 0.31, "labels": 2000},
}


@pytest.mark.parametrize(
    ("text", "expression", "status"),
    [
        (
            "candidate.accuracy >= champion.accuracy - 0.005",
            "candidate.accuracy >= champion.accuracy - 0.005",
            "passed",
        ),
        ("candidate.accuracy>=champion.accuracy-0.001", "candidate.accuracy >= champion.accuracy - 0.001", "failed"),
        ("candidate.log_loss <= champion.log_loss * 1.05", "candidate.log_loss <= champion.log_loss * 1.05", "passed"),
        ("candidate.log_loss < champion.log_loss", "candidate.log_loss < champion.log_loss", "failed"),
        ("candidate.f1 > champion.f1 + 0.01", "candidate.f1 > champion.f1 + 0.01", "passed"),
        ("  candidate.labels   >= 1e3 ", "candidate.labels >= 1e3", "passed"),
        ("0.95 <= candidate.accuracy", "0.95 <= candidate.accuracy", "failed"),
        ("champion.log_loss > -0.5", "champion.log_loss > -0.5", "passed"),
        ("candidate.accuracy >= .9", "candidate.accuracy >= .9", "passed"),
    ],
)
def test_a_gate_parses_and_judges(text: str, expression: str, status: str) -> None:
    gate = parse_gate(text)
    assert gate.expression == expression == gate.name
    assert gate.evaluate(METRICS).status == status


def test_a_result_says_the_values_it_compared() -> None:
    result = parse_gate("candidate.accuracy >= champion.accuracy - 0.001").evaluate(METRICS)
    assert (result.left, result.right) == (0.926, pytest.approx(0.929))
    assert result.message == "candidate.accuracy = 0.926 is not >= champion.accuracy - 0.001 = 0.929"
    assert result.values == {"candidate.accuracy": 0.926, "champion.accuracy": 0.93}
    passed = parse_gate("candidate.labels >= 1000").evaluate(METRICS)
    assert passed.message == "candidate.labels = 2000 >= 1000"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "a gate is an expression"),
        ("candidate.accuracy", "expected a comparison (>=, >, <= or <) at the end"),
        ("candidate.accuracy == 0.9", "'==' at column 20 is not a comparison; use >=, >, <= or <"),
        ("candidate.accuracy = 0.9", "'=' at column 20 is not a comparison"),
        ("candidate.accuracy != champion.accuracy", "'!=' at column 20 is not a comparison"),
        ("challenger.accuracy >= 0.9", "'challenger' at column 1 is not a side; a side is champion or candidate"),
        ("candidate >= 0.9", "expected '.' and a metric after candidate at column 11"),
        ("candidate. >= 0.9", "expected a metric after candidate. at column 12"),
        ("candidate.accuracy >= champion.accuracy -", "expected a number after '-' at the end"),
        ("candidate.accuracy >= champion.accuracy - champion.f1", "expected a number after '-' at column 43"),
        ("candidate.accuracy >= champion.accuracy / 2", "'/' at column 41: use *"),
        ("candidate.accuracy >= 0.9 and candidate.f1 > 0.5", "expected the end of the gate at column 27"),
        ("0.9 >= 0.8", "compares two numbers"),
        ("candidate.accuracy >= __import__('os')", "'(' at column 33 is not part of a gate"),
        ("candidate.accuracy >= 0.9;", "';' at column 26 is not part of a gate"),
        (">= 0.9", "expected side.metric (such as candidate.accuracy) or a number at column 1, found '>='"),
    ],
)
def test_a_bad_gate_is_one_clear_line(text: str, words: str) -> None:
    with pytest.raises(GateError) as caught:
        parse_gate(text)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_metrics_are_checked_against_the_streams_task() -> None:
    for task in ("binary", "multiclass", "regression"):
        for metric in (*metric_names(task), "labels"):
            parse_gate(f"candidate.{metric} > 0").check_metrics(metric_names(task), task)
    with pytest.raises(GateError, match=r"unknown metric 'mae' \(a binary stream's backtest has accuracy, f1"):
        parse_gate("candidate.accuracy > champion.mae").check_metrics(metric_names("binary"), "binary")


def test_a_metric_without_a_value_is_not_judged() -> None:
    no_labels = {"champion": {"accuracy": 0.9}, "candidate": {"accuracy": None, "labels": 0}}
    result = parse_gate("candidate.accuracy >= champion.accuracy").evaluate(no_labels)
    assert result.status == "error" and "candidate.accuracy has no value" in result.message
    assert result.left is None and result.right is None
    # a side the backtest did not run is no value either, not a crash
    assert parse_gate("champion.accuracy > 0.5").evaluate({"candidate": {}}).status == "error"


def test_the_overall_verdict_puts_not_judged_before_failed() -> None:
    ok, bad = parse_gate("candidate.f1 > 0.5"), parse_gate("candidate.f1 > 0.99")
    assert overall(evaluate_gates([ok], METRICS)) == "passed"
    assert overall(evaluate_gates([ok, bad], METRICS)) == "failed"
    assert overall(evaluate_gates([bad, parse_gate("candidate.f1 > 0")], {"candidate": {"f1": None}})) == "error"
    assert overall([]) == "passed"


def test_sides_are_what_a_gate_needs() -> None:
    assert parse_gate("candidate.f1 >= 0.5").sides == {"candidate"}
    assert parse_gate("candidate.f1 >= champion.f1").sides == {"candidate", "champion"}


def test_a_gate_file_is_a_list_or_a_mapping_of_gates(tmp_path: Path) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text(
        "gates:\n"
        "  - candidate.accuracy >= champion.accuracy - 0.005\n"
        "  - name: log loss within 2 %\n"
        "    gate: candidate.log_loss <= champion.log_loss * 1.02\n"
    )
    gates = load_gate_file(path)
    assert [g.name for g in gates] == ["candidate.accuracy >= champion.accuracy - 0.005", "log loss within 2 %"]
    assert gates[1].expression == "candidate.log_loss <= champion.log_loss * 1.02"
    assert [g.name for g in gates_from_document(["candidate.f1 > 0.5"])] == ["candidate.f1 > 0.5"]


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        (None, "gates must be a non-empty list"),
        ({"gates": []}, "gates must be a non-empty list"),
        ({"gates": ["candidate.f1 > 0.5"], "extra": 1}, "a mapping with one key, gates (found gates, extra)"),
        (["candidate.f1 > 0.5", 3], "gates[1]: a gate is a string or a mapping with gate (and name), not int"),
        ([{"name": "x"}], "gates[0]: a mapping entry takes gate and an optional name (found name)"),
        ([{"gate": "candidate.f1 > 0.5", "when": "always"}], "gates[0]: a mapping entry takes gate"),
        ([{"gate": "candidate.f1 > 0.5", "name": 3}], "gates[0]: name must be a string"),
        (["candidate.f1 >> 0.5"], "g.yaml: gates[0]: gate 'candidate.f1 >> 0.5': expected side.metric"),
    ],
)
def test_a_bad_gate_file_says_where(doc: object, words: str) -> None:
    with pytest.raises(GateError) as caught:
        gates_from_document(doc, "g.yaml")
    assert words in str(caught.value)


def test_a_gate_file_that_cannot_be_read_is_a_gate_error(tmp_path: Path) -> None:
    with pytest.raises(GateError, match="cannot read the gate file"):
        load_gate_file(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("gates: [unclosed\n")
    with pytest.raises(GateError, match=r"broken\.yaml: cannot read the gate file"):
        load_gate_file(tmp_path / "broken.yaml")


def test_junit_has_a_test_case_per_gate_with_failures_and_errors() -> None:
    gates = [
        parse_gate("candidate.accuracy >= champion.accuracy - 0.005", 'accuracy <no worse> & "quoted"'),
        parse_gate("candidate.log_loss <= champion.log_loss"),
        parse_gate("candidate.f1 > champion.f1"),
    ]
    results = evaluate_gates(gates, METRICS)
    results.append(parse_gate("candidate.accuracy > 0.5").evaluate({"candidate": {"accuracy": None}}))
    text = junit_xml(
        "demo", results, {"champion": "spec:default", "data.events": 2000, "data.from": None}, elapsed_s=1.5
    )
    root = ET.fromstring(text)
    suite = root.find("testsuite")
    assert suite is not None
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "1", "1")
    assert suite.get("name") == "eddy backtest gates: demo" and suite.get("time") == "1.500"
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties == {"champion": "spec:default", "data.events": "2000"}
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        'accuracy <no worse> & "quoted"',
        "candidate.log_loss <= champion.log_loss",
        "candidate.f1 > champion.f1",
        "candidate.accuracy > 0.5",
    ]
    assert cases[0].find("failure") is None and cases[2].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("message") == (
        "candidate.log_loss = 0.31 is not <= champion.log_loss = 0.3"
    )
    assert "values: candidate.log_loss = 0.31, champion.log_loss = 0.3" in (failure.text or "")
    error = cases[3].find("error")
    assert error is not None and "not judged" in (error.get("message") or "")
    # no clock in it: the same results give the same bytes
    assert junit_xml("demo", results, {"champion": "spec:default", "data.events": 2000}, elapsed_s=1.5) == text


def test_the_json_summary_has_the_verdict_each_gate_and_each_side(tmp_path: Path) -> None:
    results = evaluate_gates([parse_gate("candidate.f1 > champion.f1")], METRICS)
    sides = {side: {"model": f"spec:{side}", "metrics": METRICS[side]} for side in METRICS}
    doc = summary_json("demo", results, sides, {"exit_code": 0})
    path = write_text(tmp_path / "out" / "summary.json", json.dumps(doc))
    back = json.loads(path.read_text())
    assert back["status"] == "passed" and back["passed"] is True and back["exit_code"] == 0
    assert back["gates"][0]["values"] == {"candidate.f1": 0.95, "champion.f1": 0.9}
    assert back["sides"]["champion"]["model"] == "spec:champion"
    assert not list(tmp_path.glob("out/*.tmp"))
