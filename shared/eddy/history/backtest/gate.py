"""Gates on a backtest: small comparisons of the candidate's and the champion's metrics, for model CI.

A gate compares a side's metric with the other side's (give or take a number) or with a number::

    candidate.accuracy >= champion.accuracy - 0.005
    candidate.log_loss <= champion.log_loss * 1.02
    candidate.labels >= 1000

The grammar is the whole language, parsed here by hand and never ``eval``-ed::

    gate     := operand COMPARE operand
    operand  := SIDE "." METRIC [("+" | "-" | "*") NUMBER]  |  ["+" | "-"] NUMBER
    COMPARE  := ">=" | ">" | "<=" | "<"
    SIDE     := "champion" | "candidate"

At least one operand names a metric. A side's metrics are those the backtest reports for the
stream's task (:func:`eddy.history.backtest.engine.metric_names`) and ``labels``, the labels it
answered. A gate whose metric has no value (no label answered) is not judged: it is an error,
neither passed nor failed, so an empty history never passes a gate nor looks like a worse model.

>>> gate = parse_gate("candidate.accuracy >= champion.accuracy - 0.005")
>>> result = gate.evaluate({"candidate": {"accuracy": 0.91}, "champion": {"accuracy": 0.93}})
>>> result.status, result.message
('failed', 'candidate.accuracy = 0.91 is not >= champion.accuracy - 0.005 = 0.925')
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

SIDES = ("champion", "candidate")
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
ARITHMETIC: dict[str, Callable[[float, float], float]] = {"+": operator.add, "-": operator.sub, "*": operator.mul}
# Every side has it whatever the task: how many labels the model answered (a gate on the data's size).
LABELS = "labels"

Status = Literal["passed", "failed", "error"]
# One side's metrics, by side: None where a metric has no value.
SideMetrics = Mapping[str, Mapping[str, float | int | None]]

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<compare>>=|<=|==|!=|=>|=<|<>|[<>=!])"
    r"|(?P<punct>[.+\-*/]))"
)


class GateError(ValueError):
    """A gate that does not parse, or names a side or a metric that does not exist: one line, what and where."""


@dataclass(frozen=True)
class _Token:
    kind: str  # number, name, compare, punct, end
    text: str
    column: int  # 1-based, for the error message

    def shown(self) -> str:
        return "the end" if self.kind == "end" else repr(self.text)


@dataclass(frozen=True)
class Operand:
    """One side of a comparison: a side's metric, possibly shifted or scaled by a number; or a number alone."""

    side: str | None
    metric: str | None
    arithmetic: str | None = None  # "+", "-" or "*" with ``number``; None: the metric (or number) as it is
    number: float | None = None
    number_text: str = ""  # the number as written, to show it so

    @property
    def ref(self) -> str | None:
        """``side.metric``, or None for a number."""
        return None if self.side is None else f"{self.side}.{self.metric}"

    def value(self, metrics: SideMetrics) -> float | None:
        """The operand's value; None when its metric has none.

        >>> Operand("champion", "mae", "*", 1.1, "1.1").value({"champion": {"mae": 2.0}})
        2.2
        """
        if self.side is None or self.metric is None:
            return self.number
        value = self.metric_value(metrics)
        if value is None or self.arithmetic is None or self.number is None:
            return value
        return ARITHMETIC[self.arithmetic](value, self.number)

    def metric_value(self, metrics: SideMetrics) -> float | None:
        """The value of the operand's metric itself (before any arithmetic); None for a number or no value."""
        if self.side is None or self.metric is None:
            return None
        found = metrics.get(self.side, {}).get(self.metric)
        return None if found is None else float(found)

    def __str__(self) -> str:
        if self.ref is None:
            return self.number_text
        return self.ref if self.arithmetic is None else f"{self.ref} {self.arithmetic} {self.number_text}"


@dataclass(frozen=True)
class Gate:
    """One parsed gate: ``left compare right``, with the name it is reported under."""

    left: Operand
    compare: str
    right: Operand
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.expression)

    @property
    def expression(self) -> str:
        """The gate, written the one way (single spaces, numbers as they were written)."""
        return f"{self.left} {self.compare} {self.right}"

    @property
    def sides(self) -> frozenset[str]:
        """The sides the gate needs a model for."""
        return frozenset(o.side for o in (self.left, self.right) if o.side is not None)

    def check_metrics(self, known: Collection[str], task: str = "") -> None:
        """Raise :class:`GateError` if an operand names a metric that is not in ``known`` (nor ``labels``).

        >>> try:
        ...     parse_gate("candidate.acc > 0.9").check_metrics(["accuracy", "f1"], "binary")
        ... except GateError as exc:
        ...     print(exc)
        gate 'candidate.acc > 0.9': unknown metric 'acc' (a binary stream's backtest has accuracy, f1, labels)
        """
        names = [*known, *([] if LABELS in known else [LABELS])]
        for operand in (self.left, self.right):
            if operand.metric is not None and operand.metric not in names:
                what = f"a {task} stream's backtest" if task else "a backtest"
                raise GateError(
                    f"gate {self.expression!r}: unknown metric {operand.metric!r} ({what} has {', '.join(names)})"
                )

    def evaluate(self, metrics: SideMetrics) -> GateResult:
        """Judge the gate on each side's metrics.

        >>> parse_gate("candidate.mae <= 1.5").evaluate({"candidate": {"mae": None}}).message
        'candidate.mae has no value (the model answered no labels): not judged'
        """
        values = {str(o.ref): o.metric_value(metrics) for o in (self.left, self.right) if o.ref is not None}
        missing = [ref for ref, value in values.items() if value is None]
        if missing:
            message = f"{' and '.join(missing)} {'has' if len(missing) == 1 else 'have'} no value"
            message += " (the model answered no labels): not judged"
            return GateResult(self, "error", None, None, values, message)
        left, right = self.left.value(metrics), self.right.value(metrics)
        assert left is not None and right is not None  # every metric has a value (checked above)
        passed = COMPARISONS[self.compare](left, right)
        verb = self.compare if passed else f"is not {self.compare}"
        message = f"{_shown(self.left, left)} {verb} {_shown(self.right, right)}"
        return GateResult(self, "passed" if passed else "failed", left, right, values, message)


@dataclass(frozen=True)
class GateResult:
    """How one gate came out: passed, failed, or error (not judged), with the values it compared."""

    gate: Gate
    status: Status
    left: float | None
    right: float | None
    values: Mapping[str, float | None] = field(default_factory=dict)
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        """The result as JSON (the summary file's ``gates`` entries).

        >>> parse_gate("candidate.f1 > 0.5").evaluate({"candidate": {"f1": 0.75}}).to_json()["status"]
        'passed'
        """
        return {
            "name": self.gate.name,
            "expression": self.gate.expression,
            "status": self.status,
            "left": self.left,
            "right": self.right,
            "values": dict(self.values),
            "message": self.message,
        }


def parse_gate(text: str, name: str = "") -> Gate:
    """One gate from its text (see the module's grammar); ``name`` is what reports call it (default: the gate).

    >>> parse_gate("candidate.log_loss<=champion.log_loss*1.02").expression
    'candidate.log_loss <= champion.log_loss * 1.02'
    >>> try:
    ...     parse_gate("candidate.accuracy => 0.9")
    ... except GateError as exc:
    ...     print(exc)
    gate 'candidate.accuracy => 0.9': '=>' at column 20 is not a comparison; use >=, >, <= or <
    """
    if not isinstance(text, str) or not text.strip():
        raise GateError("a gate is an expression such as 'candidate.accuracy >= champion.accuracy - 0.005'")
    parser = _Parser(text, _tokens(text))
    left = parser.operand()
    compare = parser.comparison()
    right = parser.operand()
    parser.end()
    if left.side is None and right.side is None:
        raise GateError(f"gate {text!r}: compares two numbers; name a side's metric, such as candidate.accuracy")
    return Gate(left, compare, right, name.strip() if name else "")


def parse_gates(texts: Iterable[str]) -> list[Gate]:
    """Each ``--gate``, in order.

    >>> [g.sides for g in parse_gates(["candidate.f1 > 0.5", "candidate.f1 >= champion.f1"])] == [
    ...     {"candidate"}, {"candidate", "champion"}]
    True
    """
    return [parse_gate(text) for text in texts]


def gates_from_document(doc: Any, source: str = "the gate file") -> list[Gate]:
    """The gates of a gate file's content: a list, or a mapping with a ``gates`` list; each a gate or a mapping.

    A mapping entry is ``{gate: EXPR}`` with an optional ``name`` that reports show instead of the expression.

    >>> gates = gates_from_document({"gates": ["candidate.labels >= 100",
    ...                                        {"name": "no worse", "gate": "candidate.f1 >= champion.f1"}]})
    >>> [g.name for g in gates]
    ['candidate.labels >= 100', 'no worse']
    >>> gates_from_document({"gate": []}, "gates.yaml")
    Traceback (most recent call last):
    ...
    eddy.history.backtest.gate.GateError: gates.yaml: a list of gates, or a mapping with one key, gates (found gate)
    """
    entries = doc
    if isinstance(doc, Mapping):
        if set(doc) != {"gates"}:
            found = ", ".join(map(str, doc)) or "nothing"
            raise GateError(f"{source}: a list of gates, or a mapping with one key, gates (found {found})")
        entries = doc["gates"]
    if not isinstance(entries, list) or not entries:
        raise GateError(f"{source}: gates must be a non-empty list")
    gates = []
    for i, entry in enumerate(entries):
        where = f"{source}: gates[{i}]"
        try:
            gates.append(_entry(entry))
        except GateError as exc:
            raise GateError(f"{where}: {exc}") from exc
    return gates


def load_gate_file(path: str | Path) -> list[Gate]:
    """The gates of a YAML gate file (:func:`gates_from_document`); a file that cannot be read is a GateError."""
    import yaml

    target = Path(path)
    try:
        doc = yaml.safe_load(target.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise GateError(f"{target}: cannot read the gate file ({_first_line(exc)})") from exc
    return gates_from_document(doc, str(target))


def evaluate_gates(gates: Sequence[Gate], metrics: SideMetrics) -> list[GateResult]:
    """Every gate judged on the same metrics, in order."""
    return [gate.evaluate(metrics) for gate in gates]


def overall(results: Sequence[GateResult]) -> Status:
    """``error`` if any gate could not be judged, else ``failed`` if any failed, else ``passed``.

    >>> ok = parse_gate("candidate.f1 > 0.5")
    >>> overall([ok.evaluate({"candidate": {"f1": 0.9}}), ok.evaluate({"candidate": {"f1": 0.1}})])
    'failed'
    """
    statuses = {r.status for r in results}
    return "error" if "error" in statuses else "failed" if "failed" in statuses else "passed"


# ---------- the parser ----------


def _tokens(text: str) -> list[_Token]:
    tokens = []
    position = 0
    while text[position:].strip():
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            column = position + len(text[position:]) - len(text[position:].lstrip()) + 1
            bad = text[column - 1]
            raise GateError(f"gate {text!r}: {bad!r} at column {column} is not part of a gate")
        tokens.append(_Token(match.lastgroup, match.group(match.lastgroup), match.start(match.lastgroup) + 1))
        position = match.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


class _Parser:
    """Recursive descent over the tokens, one token of look-ahead."""

    def __init__(self, text: str, tokens: list[_Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.at = 0

    def peek(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at = min(self.at + 1, len(self.tokens) - 1)
        return token

    def fail(self, token: _Token, what: str) -> GateError:
        where = "at the end" if token.kind == "end" else f"at column {token.column}"
        return GateError(f"gate {self.text!r}: expected {what} {where}, found {token.shown()}")

    def operand(self) -> Operand:
        token = self.peek()
        if token.kind == "number" or (token.text in ("+", "-") and self.tokens[self.at + 1].kind == "number"):
            sign = self.take().text if token.kind == "punct" else ""
            number = self.take()
            text = f"{sign}{number.text}" if sign == "-" else number.text
            return Operand(None, None, number=float(text), number_text=text)
        if token.kind != "name":
            raise self.fail(token, "side.metric (such as candidate.accuracy) or a number")
        side = self.take().text
        if side not in SIDES:
            raise GateError(
                f"gate {self.text!r}: {side!r} at column {token.column} is not a side; a side is champion or candidate"
            )
        if self.peek().text != ".":
            raise self.fail(self.peek(), f"'.' and a metric after {side}")
        self.take()
        metric = self.peek()
        if metric.kind != "name":
            raise self.fail(metric, f"a metric after {side}.")
        self.take()
        arithmetic = self.peek()
        if arithmetic.kind != "punct" or arithmetic.text not in ARITHMETIC:
            if arithmetic.text == "/":
                raise GateError(f"gate {self.text!r}: '/' at column {arithmetic.column}: use * (x * 0.5, not x / 2)")
            return Operand(side, metric.text)
        self.take()
        number = self.peek()
        if number.kind != "number":
            raise self.fail(number, f"a number after {arithmetic.text!r}")
        self.take()
        return Operand(side, metric.text, arithmetic.text, float(number.text), number.text)

    def comparison(self) -> str:
        token = self.peek()
        if token.kind == "compare" and token.text in COMPARISONS:
            return self.take().text
        if token.kind == "compare":
            raise GateError(
                f"gate {self.text!r}: {token.text!r} at column {token.column} is not a comparison; use >=, >, <= or <"
            )
        raise self.fail(token, "a comparison (>=, >, <= or <)")

    def end(self) -> None:
        token = self.peek()
        if token.kind != "end":
            raise self.fail(token, "the end of the gate")


def _entry(entry: Any) -> Gate:
    if isinstance(entry, str):
        return parse_gate(entry)
    if not isinstance(entry, Mapping):
        raise GateError(f"a gate is a string or a mapping with gate (and name), not {type(entry).__name__}")
    unknown = sorted(set(map(str, entry)) - {"gate", "name"})
    if unknown or "gate" not in entry:
        raise GateError(f"a mapping entry takes gate and an optional name (found {', '.join(map(str, entry))})")
    name = entry.get("name", "")
    if not isinstance(name, str):
        raise GateError("name must be a string")
    return parse_gate(entry["gate"], name)


def _shown(operand: Operand, value: float) -> str:
    if operand.ref is None:
        return operand.number_text
    return f"{operand} = {value:.6g}"


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
