"""No reference or memory leaks in the C extensions, on their hot paths and their error paths.

A leaked reference to a shared object (None, True, a value, a field name) shows as its reference count
growing with the number of calls; a leaked allocation as the process's resident memory growing. Each check
makes about a million calls, so a leak of one reference or a few bytes per call cannot hide in the noise.
"""

from __future__ import annotations

import contextlib
import gc
import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from eddy.avro import native
from eddy.ml import linear_kernel

from tests.native import workload

pytestmark = pytest.mark.skipif(not native.NATIVE, reason="the native extension is not loaded")

CALLS = 1_000_000
PAGE = 4096


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def watched() -> dict[str, Any]:
    # Built at run time, so that they are not shared with constants elsewhere in the process.
    name = "".join(["i", "d"])
    return {"None": None, "True": True, "False": False, "name": name}


def counts(objects: dict[str, Any]) -> dict[str, int]:
    gc.collect()
    return {key: sys.getrefcount(value) for key, value in objects.items()}


def assert_no_growth(calls: Callable[[int], None], objects: dict[str, Any], slack_bytes: int = 4 << 20) -> None:
    """Run ``calls(n)`` a first time to warm up, then ``CALLS`` times: references and memory stay put."""
    calls(CALLS // 20)
    before, memory = counts(objects), rss()
    calls(CALLS)
    after, grown = counts(objects), rss() - memory
    drift = {key: after[key] - before[key] for key in objects if abs(after[key] - before[key]) > 100}
    assert not drift, f"references gained over {CALLS} calls: {drift}"
    assert grown < slack_bytes, f"resident memory grew {grown} bytes over {CALLS} calls"


def test_checker_and_codec_hot_paths_do_not_leak() -> None:
    objects = watched()
    rng = workload.random.Random(1)
    walker = native.checker(workload.HEADER, workload.checker_program())
    record = workload.checked_record(rng)
    record.update(id="k", t=5, x=1.0, n=3, c="a", r="abc")
    valid = workload.avro(workload.CHECKED_SCHEMA, record)
    assert valid is not None and walker.check([valid])[0] is not None
    broken = valid[:-1]
    codec = native.codec(workload.HEADER, workload.CODEC_SCHEMA)
    flat = {"id": objects["name"], "n": 1, "t": 2, "x": None, "any": True, "ok": False, "m": {"a": None}, "maybe": None}
    encoded = codec.encode(flat)
    assert encoded is not None
    values = [valid, broken, None]
    plan = [3, 1, 2, 1, 3, 1, 3, 0]
    objects.update(valid=valid, encoded=encoded)

    def calls(n: int) -> None:
        for _ in range(n // 8):
            walker.check(values)
            walker.decode(values)
            codec.encode(flat)
            codec.encode({})
            codec.decode([encoded, broken])
            codec.columns([encoded, broken, None], plan)
            walker.check([broken])
            codec.decode([])

    assert_no_growth(calls, objects)


def test_error_paths_do_not_leak() -> None:
    objects = watched()
    codec = native.codec(workload.HEADER, workload.CODEC_SCHEMA)
    Checker = type(native.checker(workload.HEADER, []))
    Codec = type(codec)
    program = workload.checker_program()
    bad_program = [*program[:5], ("x", 99, -1, 0, False, False, 0.0, 0.0, None, None, None, 0)]
    bad_fields = [*native.encoder_fields(workload.CODEC_SCHEMA)[:3], ("x", False, 0, 3)]

    def refused(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except (TypeError, ValueError):
            return
        raise AssertionError(f"{fn} accepted {args}")

    def calls(n: int) -> None:
        for _ in range(n // 5):
            refused(Checker, workload.HEADER, bad_program)
            refused(Codec, workload.HEADER, bad_fields)
            refused(codec.columns, [b"x"], [1, 1])
            refused(codec.columns, [b"x"], [0, 0, 0, 0, 0, 0, 0, 9])
            refused(codec.decode, 42)

    assert_no_growth(calls, objects)


@pytest.mark.skipif(linear_kernel.native is None, reason="the linear kernel is not loaded")
def test_linear_kernel_does_not_leak() -> None:
    objects = watched()
    kernel = linear_kernel.native
    assert kernel is not None
    d = 3
    X = np.arange(12, dtype=np.float64).tobytes()
    y = np.array([0.0, 1.0, 0.0, 1.0]).tobytes()
    kinds, index = bytes([1, 0, 1, 0]), np.array([0, 1, 2, 3], dtype=np.int64).tobytes()
    state, out = np.zeros(4 * d + 2), np.full(4, math.nan)

    def calls(n: int) -> None:
        for _ in range(n // 2):
            kernel.run(kinds, index, X, y, state, out, d, 0, 0.01, 0.01, 0.0, 1e12)
            with contextlib.suppress(ValueError):
                kernel.run(kinds, index, X, y, state[1:], out, d, 0, 0.01, 0.01, 0.0, 1e12)

    assert_no_growth(calls, objects)


def test_the_workload_does_not_leak() -> None:
    """Rounds of the sanitizer's workload (hostile input included) leave memory where it was."""
    rng = workload.random.Random(2)
    run = workload.Calls()
    for _ in range(5):
        workload.run_round(rng, run)
    gc.collect()
    memory = rss()
    for _ in range(60):
        workload.run_round(rng, run)
    gc.collect()
    assert rss() - memory < 8 << 20
