"""Random and hostile inputs through every entry point of the C extensions, error paths included.

One round (:func:`run_round`) drives the Checker (check, decode), the Codec (encode, decode, columns) and the
linear kernel with valid records, corrupted and random bytes, wrong types, malformed programs and plans, and
callbacks that try to pull the batch or the program out from under the C code while it runs. Every call must
either answer or raise TypeError, ValueError or OverflowError: anything else (a crash, a sanitizer report,
another exception) fails. ``test_sanitizers.py`` runs it under AddressSanitizer and UBSan, ``test_leaks.py``
for reference and memory growth.

Run as a script (``python -m tests.native.workload ROUNDS``) it does ROUNDS rounds and prints the call count.
"""

from __future__ import annotations

import io
import math
import random
import re
import struct
import sys
from collections.abc import Callable
from typing import Any

import fastavro
from eddy.avro import native

HEADER = struct.pack(">bI", 0, 7)

# Every kind the Checker walks, in every role it knows, with each kind of rule.
CHECKED_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Sink",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "t", "type": "long"},
        {"name": "x", "type": ["null", "double"]},
        {"name": "n", "type": "int"},
        {"name": "c", "type": ["string", "null"]},
        {"name": "r", "type": "string"},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}},
        {"name": "f", "type": {"type": "fixed", "name": "F", "size": 4}},
        {"name": "b", "type": "bytes"},
        {"name": "fl", "type": "float"},
        {"name": "ok", "type": "boolean"},
        {"name": "nothing", "type": "null"},
    ],
}

# Every shape the Codec writes: primitives, unions of primitives, maps, nullable maps.
CODEC_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Flat",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "n", "type": "int"},
        {"name": "t", "type": "long"},
        {"name": "x", "type": ["null", "double"]},
        {"name": "any", "type": ["null", "boolean", "long", "double", "string"]},
        {"name": "ok", "type": "boolean"},
        {"name": "m", "type": {"type": "map", "values": ["null", "double", "string"]}},
        {"name": "maybe", "type": ["null", {"type": "map", "values": "long"}]},
    ],
}

TEXT = "abcxyzé €\x00\t 😀"


def text(rng: random.Random, most: int = 8) -> str:
    return "".join(rng.choice(TEXT) for _ in range(rng.randint(0, most)))


def scalar(rng: random.Random) -> Any:
    """Any value a record field might hold, right or wrong for its type."""
    return rng.choice(
        [
            None,
            True,
            False,
            rng.randint(-(2**31), 2**31),
            rng.randint(-(2**63), 2**63 - 1),
            2**64 + rng.randint(0, 9),
            -(2**70),
            rng.uniform(-1e9, 1e9),
            math.nan,
            math.inf,
            -0.0,
            text(rng),
            b"\xff\x00",
            [1],
            {"k": 1},
            "\ud800",  # a lone surrogate: not encodable as UTF-8
        ]
    )


def checked_record(rng: random.Random) -> dict[str, Any]:
    return {
        "id": text(rng) or "k",
        "t": rng.choice([rng.randint(1, 2**62), 0, -5]),
        "x": rng.choice([None, rng.uniform(-20, 20), math.nan, math.inf, 2.0**60]),
        "n": rng.randint(-(2**31), 2**31 - 1),
        "c": rng.choice([None, "a", "b", "é", "zz", ""]),
        "r": rng.choice(["abc", "ABC", "", "a b", "é"]),
        "e": rng.choice(["A", "B", "C"]),
        "f": bytes(rng.randrange(256) for _ in range(4)),
        "b": bytes(rng.randrange(256) for _ in range(rng.randint(0, 6))),
        "fl": rng.uniform(-1e3, 1e3),
        "ok": rng.random() < 0.5,
        "nothing": None,
    }


def codec_record(rng: random.Random) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": text(rng),
        "n": rng.randint(-(2**31), 2**31 - 1),
        "t": rng.randint(-(2**63), 2**63 - 1),
        "x": rng.choice([None, rng.uniform(-5, 5), math.nan, rng.randint(-9, 9)]),
        "any": scalar(rng),
        "ok": rng.random() < 0.5,
        "m": {text(rng, 3): rng.choice([None, rng.random(), text(rng, 3)]) for _ in range(rng.randint(0, 4))},
        "maybe": rng.choice([None, {text(rng, 2): rng.randint(-(2**40), 2**40) for _ in range(rng.randint(0, 3))}]),
    }
    if rng.random() < 0.3:  # a field of the wrong type, a missing one, or one too many
        record[rng.choice(list(record))] = scalar(rng)
    if rng.random() < 0.1:
        del record[rng.choice(list(record))]
    if rng.random() < 0.05:
        record["m"] = {1: 2.0}
    return record


def avro(schema: dict[str, Any], record: dict[str, Any]) -> bytes | None:
    out = io.BytesIO()
    out.write(HEADER)
    try:
        fastavro.schemaless_writer(out, fastavro.parse_schema(schema, named_schemas={}), record)
    except Exception:
        return None
    return out.getvalue()


def corrupt(rng: random.Random, data: bytes) -> bytes:
    raw = bytearray(data)
    how = rng.randrange(6)
    if how == 0 and raw:
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
    elif how == 1:
        del raw[rng.randint(0, len(raw)) :]
    elif how == 2:
        raw += bytes(rng.randrange(256) for _ in range(rng.randint(1, 12)))
    elif how == 3:
        at = rng.randint(0, len(raw))
        raw[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 12)))
    elif how == 4:  # the longest varints, and the one whose negation overflows
        at = rng.randint(5, max(5, len(raw)))
        raw[at:at] = rng.choice([b"\xff" * 9 + b"\x01", b"\xfe" * 9 + b"\x01", b"\x80" * 10, b"\xff" * 11])
    else:
        raw = bytearray(HEADER + bytes(rng.randrange(256) for _ in range(rng.randint(0, 40))))
    return bytes(raw)


def checker_program() -> list[native.Op]:
    ops = native.decode_program(CHECKED_SCHEMA)
    feature: dict[str, native.Op] = {
        "x": ("x", native.KINDS["double"], 0, native.FEATURE, True, True, -10.0, 10.0, None, None, None, 0),
        "n": ("n", native.KINDS["int"], -1, native.FEATURE, True, False, -1e6, 1e6, None, None, None, 0),
        "c": (
            "c",
            native.KINDS["string"],
            1,
            native.FEATURE,
            False,
            False,
            -math.inf,
            math.inf,
            frozenset({"a", "b", "é"}),
            None,
            None,
            0,
        ),
        "r": (
            "r",
            native.KINDS["string"],
            -1,
            native.FEATURE,
            False,
            True,
            -math.inf,
            math.inf,
            None,
            re.compile("^[a-z]+$").search,
            None,
            0,
        ),
    }
    roles = {"id": native.ID, "t": native.TIME}
    out: list[native.Op] = []
    for op in ops:
        if op[0] in feature:
            out.append(feature[op[0]])
        elif op[0] in roles:
            out.append((op[0], op[1], op[2], roles[op[0]], *op[4:]))  # type: ignore[arg-type]
        else:
            out.append(op)
    return out


class Calls:
    """Counts the calls made, and runs one that may only answer or raise TypeError/ValueError."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.count += 1
        try:
            return fn(*args)
        except (TypeError, ValueError, OverflowError):  # OverflowError: an int argument beyond a C int
            return None


def hostile_checker_calls(calls: Calls, rng: random.Random, values: list[bytes]) -> None:
    """Programs and batches that change under the C code, malformed programs, objects used wrongly."""
    Checker = type(native.checker(HEADER, checker_program()))
    victim: list[Any] = list(values)

    def search_that_empties_the_batch(s: str) -> bool:
        victim.clear()
        victim.extend(bytes(rng.randrange(256) for _ in range(3)) for _ in range(2))
        return True

    ops = checker_program()
    r = next(i for i, op in enumerate(ops) if op[0] == "r")
    ops[r] = (*ops[r][:9], search_that_empties_the_batch, *ops[r][10:])  # type: ignore[assignment]
    walker = native.checker(HEADER, ops)
    calls(walker.check, victim)
    victim[:] = values
    calls(walker.decode, victim)

    class Reinit:
        """A category whose comparison tries to swap the program of the checker that compares it."""

        def __hash__(self) -> int:
            return hash("a")

        def __eq__(self, other: object) -> bool:
            calls(walker2.__init__, HEADER, [])
            return False

    ops2 = checker_program()
    c = next(i for i, op in enumerate(ops2) if op[0] == "c")
    ops2[c] = (*ops2[c][:8], frozenset({Reinit()}), *ops2[c][9:])  # type: ignore[assignment]
    walker2 = native.checker(HEADER, ops2)
    calls(walker2.check, values)
    calls(walker2.decode, values)

    program: list[Any] = checker_program()

    class Shrinks:
        """An int that empties the program list while the C code parses it."""

        def __index__(self) -> int:
            program.clear()
            return 3

    program[1] = (program[1][0], Shrinks(), *program[1][2:])
    calls(Checker, HEADER, program)
    for bad in (
        [("x",)],
        ["not a tuple"],
        [("x", 99, -1, 0, False, False, 0.0, 0.0, None, None, None, 0)],
        [("x", native.KINDS["enum"], -1, 0, False, False, 0.0, 0.0, None, None, "not a tuple", 0)],
        [("x", native.KINDS["fixed"], -1, 0, False, False, 0.0, 0.0, None, None, None, -4)],
        [("x", native.KINDS["string"], 7, 0, False, False, 0.0, 0.0, None, None, None, 0)],
        [("x", native.KINDS["string"], -1, 9, False, False, 0.0, 0.0, None, None, None, 0)],
        [("x", native.KINDS["string"], -1, 3, False, False, 0.0, 0.0, {"a"}, None, None, 0)],
        [("x", native.KINDS["string"], -1, 3, False, False, 0.0, 0.0, None, 42, None, 0)],
        [*checker_program()[:3], ("x", "kind")],
    ):
        calls(Checker, HEADER, bad)
    calls(Checker, b"\x00", [])
    calls(Checker, HEADER, ())
    bare = Checker.__new__(Checker)
    calls(bare.check, values)
    calls(bare.decode, values)
    calls(bare.__init__, HEADER, checker_program())
    calls(bare.__init__, HEADER, checker_program())  # a second time: refused
    calls(walker.check, 42)
    calls(walker.check, (v for v in values))
    calls(walker.decode, [None, 1, "str", bytearray(values[0]) if values else b""])


def hostile_codec_calls(calls: Calls, rng: random.Random, values: list[bytes]) -> None:
    codec = native.codec(HEADER, CODEC_SCHEMA)
    Codec = type(codec)
    n_fields = len(CODEC_SCHEMA["fields"])
    victim: list[Any] = list(values)

    class Shrinks:
        """A column kind that empties the batch while the C code reads the plan."""

        def __index__(self) -> int:
            victim.clear()
            return 1

    calls(codec.columns, victim, [Shrinks()] + [0] * (n_fields - 1))
    for plan in ([0] * (n_fields - 1), [9] * n_fields, ["x"] * n_fields, 5, [-1] * n_fields, [2**70] * n_fields):
        calls(codec.columns, values, plan)
    calls(codec.columns, 42, [0] * n_fields)
    calls(codec.columns, values)
    fields: list[Any] = native.encoder_fields(CODEC_SCHEMA)

    class Shrinks2:
        def __index__(self) -> int:
            fields.clear()
            return -1

    fields[0] = (fields[0][0], False, Shrinks2(), fields[0][3])
    calls(Codec, HEADER, fields)
    for bad in (
        [("x", False, -1, 99)],
        [("x", False, -1, ())],
        [("x", False, -1, tuple(range(9)))],
        [("x", False, -1, ("a",))],
        [("x", True, 5, 3)],
        [("x", False, 0, 3)],
        [("x",)],
        [42],
    ):
        calls(Codec, HEADER, bad)
    bare = Codec.__new__(Codec)
    calls(bare.encode, {})
    calls(bare.decode, values)
    calls(bare.columns, values, [])
    calls(codec.__init__, HEADER, native.encoder_fields(CODEC_SCHEMA))  # a second time: refused

    class Weird(dict):  # type: ignore[type-arg]
        def __getitem__(self, key: Any) -> Any:
            raise KeyError(key)

    calls(codec.encode, Weird(codec_record(rng)))
    calls(codec.encode, 42)
    # A map block whose count is the most negative long: its negation does not exist.
    most_negative = b"\xff" * 9 + b"\x01"
    head = avro(CODEC_SCHEMA, {**codec_record(rng), "m": {}, "maybe": None, "id": "k", "n": 1, "t": 1,
                               "x": None, "any": None, "ok": True})  # fmt: skip
    if head is not None:
        calls(codec.decode, [head[:-3] + most_negative + b"\x02" + head[-2:]])


def linear_calls(calls: Calls, rng: random.Random) -> None:
    from eddy.ml import linear_kernel

    kernel = linear_kernel.native
    if kernel is None:
        return
    import numpy as np

    d = rng.randint(1, 5)
    rows = rng.randint(1, 30)
    n_ops = rng.randint(0, 60)
    X = np.array(
        [[rng.choice([rng.gauss(0, 3), 0.0, math.nan, math.inf, 1e300]) for _ in range(d)] for _ in range(rows)]
    )
    y = np.array([rng.choice([0.0, 1.0, rng.gauss(0, 1)]) for _ in range(rows)])
    kinds = bytes(rng.choice([0, 1, 1, 7]) for _ in range(n_ops))
    index = np.array([rng.randint(-3, rows + 3) for _ in range(n_ops)], dtype=np.int64).tobytes()
    state = np.zeros(4 * d + 2)
    out = np.full(rows, np.nan)
    args = (kinds, index, X.tobytes(), y.tobytes(), state, out, d)
    rates = (rng.choice([0.01, 1.0, 1e10]), 0.01, rng.choice([0.0, 0.1]), rng.choice([1e12, 0.5]))
    calls(kernel.run, *args, rng.choice([0, 1]), *rates)
    calls(kernel.run, *args, 2, *rates)  # unknown loss
    calls(kernel.run, kinds, index, X.tobytes(), y.tobytes(), state[1:], out, d, 0, *rates)  # wrong state size
    calls(kernel.run, kinds, index[1:], X.tobytes(), y.tobytes(), state, out, d, 0, *rates)
    calls(kernel.run, kinds, index, X.tobytes(), y.tobytes(), state, out, 0, 0, *rates)
    calls(kernel.run, kinds, index, X.tobytes(), y.tobytes(), state, out, -d, 0, *rates)
    calls(kernel.run, kinds, index, X.tobytes(), y.tobytes(), b"\x00" * state.nbytes, out, d, 0, *rates)  # read-only
    odd = bytearray(state.nbytes + 1)
    calls(kernel.run, kinds, index, X.tobytes(), y.tobytes(), memoryview(odd)[1:], out, d, 0, *rates)  # misaligned
    odd_x = bytearray(X.nbytes + 1)
    calls(kernel.run, kinds, index, memoryview(odd_x)[1:], y.tobytes(), state, out, d, 0, *rates)


def run_round(rng: random.Random, calls: Calls, batch: int = 40) -> None:
    """One round of everything, ``batch`` values per call."""
    walker = native.checker(HEADER, checker_program())
    valid = [v for v in (avro(CHECKED_SCHEMA, checked_record(rng)) for _ in range(batch)) if v is not None]
    values: list[Any] = valid + [corrupt(rng, rng.choice(valid)) for _ in range(batch)] if valid else []
    values += [None, b"", HEADER]
    rng.shuffle(values)
    calls(walker.check, values)
    calls(walker.decode, values)
    calls(walker.check, tuple(values))
    decoder = native.checker(HEADER, native.decode_program(CHECKED_SCHEMA))
    calls(decoder.decode, values)

    codec = native.codec(HEADER, CODEC_SCHEMA)
    records = [codec_record(rng) for _ in range(batch)]
    encoded: list[Any] = []
    for record in records:
        mine = calls(codec.encode, record)
        if mine is not None:
            encoded.append(mine)
        theirs = avro(CODEC_SCHEMA, record)
        if theirs is not None:
            encoded.append(theirs)
    encoded += [corrupt(rng, rng.choice(encoded)) for _ in range(batch)] if encoded else []
    encoded += [None, b"", HEADER, 3]
    rng.shuffle(encoded)
    calls(codec.decode, encoded)
    plan = [rng.randrange(4) for _ in CODEC_SCHEMA["fields"]]
    calls(codec.columns, encoded, plan)
    calls(codec.columns, [], plan)

    hostile_checker_calls(calls, rng, valid)
    hostile_codec_calls(calls, rng, [v for v in encoded if isinstance(v, bytes)])
    linear_calls(calls, rng)


def main(rounds: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    calls = Calls()
    for _ in range(rounds):
        run_round(rng, calls)
    return calls.count


if __name__ == "__main__":
    if not native.NATIVE:
        sys.exit("the native extension is not loaded")
    count = main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
    print(f"calls: {count}")
