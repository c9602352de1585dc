"""``EDDY_NATIVE``: off loads no C extension and changes no result; on insists on them; auto uses what was built.

Each case runs in a fresh interpreter, because the switch is read once, when
``eddy.native`` is first imported. The same program (``PROGRAM``: records
through the serde, bulk columns, a backtest whose pipeline the linear kernel
serves) runs with the extensions and without them, and must print the same.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from typing import Any

import pytest
from eddy.avro import native
from eddy.core.settings import REPO_ROOT
from eddy.ml import linear_kernel

PROGRAM = r"""
import dataclasses, json, math, sys
from confluent_kafka.schema_registry import SchemaRegistryClient
from river import datasets
from eddy.avro.columns import decode_columns
from eddy.avro.serde import TopicSerde
from eddy.contracts.stream import ModelSpec
from eddy.history.backtest.engine import BacktestModel, Event, Label, run_backtest
from eddy.services.validation import fastlane
from tests.records import demo_contract

def plain(value):
    if isinstance(value, float):
        return repr(value)  # NaN, infinities and the last bit, exactly
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value

out = {}
registry = SchemaRegistryClient.new_client({"url": "mock://native-switch"})
schema = json.dumps({"type": "record", "name": "P", "fields": [
    {"name": "id", "type": "string"}, {"name": "t", "type": "long"}, {"name": "x", "type": ["null", "double"]},
    {"name": "flag", "type": ["null", "boolean", "long", "double", "string"]},
    {"name": "m", "type": {"type": "map", "values": ["null", "double"]}}]})
serde = TopicSerde(registry, "s.predictions", schema)
records = [{"id": f"e{i}", "t": i, "x": None if i % 5 == 0 else i / 7, "flag": [None, True, i, i / 3, "s"][i % 5],
            "m": {"a": i / 11, "b": None}} for i in range(200)]
values = [serde.encode(r) for r in records]
out["encoded"] = [v.hex() for v in values]
out["decoded"] = plain(serde.decode_many(values + [b"junk"])[:-1])
cols = decode_columns(serde, values + [b"junk", None], doubles=["x"], ints=["t"], objects=["id", "m"])
out["columns"] = plain([cols.decoded.tolist(), cols.numbers["x"].tolist(), cols.nulls["x"].tolist(),
                        cols.numbers["t"].tolist(), cols.objects["id"], cols.objects["m"]])
rows = [({f"x{k}": v for k, v in x.items()}, y) for x, y in datasets.synth.SEA(seed=5).take(1500)]
pipeline = (("preprocessing.StandardScaler", {}), ("linear_model.LogisticRegression", {}))
spec = ModelSpec("m", pipeline, tuple(rows[0][0]))
contract = dataclasses.replace(demo_contract(), task="binary", models=(spec,), allowed_lateness_ms=10**12)
events = [Event(f"e{i}", i, x) for i, (x, _) in enumerate(rows)]
labels = {e.event_id: Label(y, e.time_ms) for e, (_, y) in zip(events, rows, strict=True)}
result = run_backtest(contract, events, labels, [BacktestModel.fresh(spec)], delay=7)
out["backtest"] = plain([result.summary["models"][0]["final_metric"], result.table["metric"].tolist()])
out["fast_lane"] = fastlane.NATIVE
out["loaded"] = sorted(m for m in sys.modules if m.startswith("eddy.native._"))
print(json.dumps(out))
"""


def run(program: str, switch: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EDDY_NATIVE"}
    if switch is not None:
        env["EDDY_NATIVE"] = switch
    return subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=240
    )


def results(switch: str | None) -> dict[str, Any]:
    done = run(PROGRAM, switch)
    assert done.returncode == 0, done.stderr[-4000:]
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def test_off_loads_no_extension_and_changes_no_result() -> None:
    off = results("off")
    assert off.pop("loaded") == [], "EDDY_NATIVE=off, yet a C extension was imported"
    assert off.pop("fast_lane") is False
    default = results(None)
    expected = ["eddy.native._avro_native", "eddy.native._linear_native"] if native.NATIVE else []
    assert default.pop("loaded") == expected
    assert default.pop("fast_lane") is native.NATIVE
    for key in default:
        assert off[key] == default[key], f"{key} differs without the extensions"


def test_on_refuses_to_run_without_the_extensions() -> None:
    # A module name no build produces stands for an extension that failed to build.
    done = run("from eddy.native import load; load('_not_built')", "on")
    assert done.returncode != 0 and "EDDY_NATIVE=on" in done.stderr


def test_a_bad_value_is_refused_naming_the_variable() -> None:
    done = run("import eddy.avro.native", "fast")
    assert done.returncode != 0 and "EDDY_NATIVE must be one of auto, on, off, not 'fast'" in done.stderr


@pytest.mark.skipif(
    os.environ.get("EDDY_NATIVE", "").strip().lower() == "off"
    or not (shutil.which(sysconfig.get_config_var("CC").split()[0]) or shutil.which("cc")),
    reason="EDDY_NATIVE=off, or no C compiler: the Python path is expected",
)
def test_with_a_compiler_the_extensions_were_built() -> None:
    """The extensions are optional in the build, so a compile error would otherwise pass unseen."""
    assert native.NATIVE, "a C compiler is here, but eddy.native._avro_native is not loaded: see pip install -v"
    assert linear_kernel.native is not None, "eddy.native._linear_native is not loaded: see pip install -v"
