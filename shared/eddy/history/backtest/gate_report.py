"""What CI systems read from a gated backtest: a JUnit XML file (one test case per gate) and a JSON summary.

JUnit is what GitHub Actions reporters, GitLab and Jenkins show: a failed gate is a ``<failure>``
with the values it compared, a gate that could not be judged (no labels) an ``<error>``. The JSON
summary has the same verdicts and each side's model and metrics. Both are pure functions of their
input (no clock), so the same backtest writes the same bytes.

>>> from eddy.history.backtest.gate import parse_gate
>>> results = [parse_gate("candidate.accuracy >= 0.9").evaluate({"candidate": {"accuracy": 0.8}})]
>>> xml = junit_xml("demo", results, {"candidate": "spec:new"})
>>> '<failure message="candidate.accuracy = 0.8 is not &gt;= 0.9" type="gate failed">' in xml
True
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eddy.history.backtest.gate import GateResult, overall

SUITE = "eddy backtest gates"


def junit_xml(stream: str, results: Sequence[GateResult], properties: Mapping[str, Any], elapsed_s: float = 0.0) -> str:
    """The results as a JUnit XML document: one suite for the stream, one test case per gate, in order.

    ``properties`` (which model is which side, the data range, ...) become the suite's ``<property>``
    elements; values that are not strings are written as JSON, and None (not given) is left out.

    >>> from eddy.history.backtest.gate import parse_gate
    >>> ok = parse_gate("candidate.f1 > 0.5", "f1 above chance").evaluate({"candidate": {"f1": 0.7}})
    >>> root = ET.fromstring(junit_xml("demo", [ok], {}))
    >>> root.get("tests"), root.get("failures"), root.find("testsuite/testcase").get("name")
    ('1', '0', 'f1 above chance')
    """
    failures = sum(r.status == "failed" for r in results)
    errors = sum(r.status == "error" for r in results)
    counts = {"tests": str(len(results)), "failures": str(failures), "errors": str(errors), "skipped": "0"}
    seconds = f"{max(elapsed_s, 0.0):.3f}"
    root = ET.Element("testsuites", {"name": SUITE, **counts, "time": seconds})
    suite = ET.SubElement(root, "testsuite", {"name": f"{SUITE}: {stream}", **counts, "time": seconds})
    if properties:
        props = ET.SubElement(suite, "properties")
        for key, value in properties.items():
            if value is None:
                continue
            shown = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
            ET.SubElement(props, "property", {"name": str(key), "value": shown})
    for result in results:
        case = ET.SubElement(
            suite, "testcase", {"classname": f"eddy.backtest.{stream}", "name": result.gate.name, "time": "0"}
        )
        if result.status != "passed":
            tag, kind = ("failure", "gate failed") if result.status == "failed" else ("error", "gate not judged")
            detail = ET.SubElement(case, tag, {"message": result.message, "type": kind})
            detail.text = _detail(result)
        else:
            ET.SubElement(case, "system-out").text = result.message
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def summary_json(
    stream: str,
    results: Sequence[GateResult],
    sides: Mapping[str, Mapping[str, Any]],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The gated backtest as one JSON document: the verdict, each gate, each side's model and metrics.

    >>> from eddy.history.backtest.gate import parse_gate
    >>> result = parse_gate("candidate.mae < 2").evaluate({"candidate": {"mae": 1.0}})
    >>> doc = summary_json("taxi", [result], {"candidate": {"model": "spec:new", "metrics": {"mae": 1.0}}})
    >>> doc["status"], doc["passed"], doc["gates"][0]["status"]
    ('passed', True, 'passed')
    """
    status = overall(results)
    return {
        "stream": stream,
        "status": status,
        "passed": status == "passed",
        "gates": [r.to_json() for r in results],
        "sides": {side: dict(entry) for side, entry in sides.items()},
        **(dict(extra) if extra else {}),
    }


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` whole or not at all (a temporary file renamed), parent folders created."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    return target


def _detail(result: GateResult) -> str:
    values = ", ".join(f"{ref} = {'none' if v is None else f'{v:.10g}'}" for ref, v in result.values.items())
    return f"{result.gate.expression}\n{result.message}\nvalues: {values}"
