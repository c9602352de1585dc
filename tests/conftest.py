"""Shared fixtures: real brokers and a real schema registry for the whole session.

Every test that needs a broker runs twice, once per tier: on the embedded Tansu and on a single
Apache Kafka node (``eddy.stack.apache_kafka``, installed by Maven on first use), each on free loopback
ports; test ids end in ``[tansu]`` or ``[kafka]``. ``EDDY_TEST_BROKERS=tansu`` (or ``kafka``) runs
one tier. Without Java and Maven the Kafka tier skips, saying what is missing, unless
``EDDY_REQUIRE_KAFKA=1`` (CI sets it) makes that a failure. When ``EDDY_BOOTSTRAP_SERVERS`` names
a broker, every such test runs once, against it (``[external]``). The registry is eddy's own, started
from this checkout, or whatever ``EDDY_SCHEMA_REGISTRY_URL`` names.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from eddy.core.settings import REPO_ROOT, Settings
from eddy.stack.apache_kafka import missing_tools
from eddy.stack.brokers import BROKER_KINDS, start_broker
from eddy.stack.embedded import free_port
from eddy.stack.up import wait_http

REGISTRY_ARGV = [sys.executable, "-m", "eddy.services.schema_registry", "--host", "127.0.0.1"]


def broker_tiers() -> list[str]:
    """The tiers this session runs: ``external`` when EDDY_BOOTSTRAP_SERVERS is set, else EDDY_TEST_BROKERS."""
    if os.environ.get("EDDY_BOOTSTRAP_SERVERS"):
        return ["external"]
    chosen = [b.strip() for b in os.environ.get("EDDY_TEST_BROKERS", ",".join(BROKER_KINDS)).split(",") if b.strip()]
    unknown = sorted(set(chosen) - set(BROKER_KINDS))
    if unknown:
        raise pytest.UsageError(f"EDDY_TEST_BROKERS names {unknown}: choose from {', '.join(BROKER_KINDS)}")
    return chosen


def skip_without_kafka() -> None:
    """Skip (or, with EDDY_REQUIRE_KAFKA=1, fail) a Kafka-tier test on a machine without Java or Maven."""
    missing = missing_tools()
    if missing is None:
        return
    if os.environ.get("EDDY_REQUIRE_KAFKA", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"EDDY_REQUIRE_KAFKA is set but {missing}")
    pytest.skip(missing)


@pytest.fixture(scope="session", params=broker_tiers())
def broker_kind(request: pytest.FixtureRequest) -> str:
    """Which broker this test runs on: ``tansu``, ``kafka`` or ``external``."""
    kind: str = request.param
    if kind == "kafka":
        skip_without_kafka()
    return kind


@pytest.fixture(scope="session")
def bootstrap_servers(broker_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if broker_kind == "external":
        yield os.environ["EDDY_BOOTSTRAP_SERVERS"]
        return
    # Test records carry event times years old, and Kafka's time retention judges a segment by its records'
    # timestamps: its periodic check would delete them in the middle of the session. Tests that need
    # retention move the log start themselves (delete_records) or start a broker of their own.
    broker = start_broker(
        broker_kind,
        tmp_path_factory.mktemp(f"broker-{broker_kind}"),
        kafka_overrides={"log.retention.check.interval.ms": str(24 * 3600 * 1000)},
    )
    yield broker.bootstrap_servers
    broker.stop()


@pytest.fixture(scope="session")
def registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("EDDY_SCHEMA_REGISTRY_URL")
    if external:
        yield external
        return
    port = free_port()
    data_dir = tmp_path_factory.mktemp("registry")
    log = open(data_dir / "registry.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [*REGISTRY_ARGV, "--port", str(port), "--data-dir", str(data_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/subjects", 30)
    yield url
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)
    log.close()


@pytest.fixture()
def stream_dir(tmp_path: Path) -> tuple[Path, str]:
    """A contracts directory holding a copy of the demo contract under a fresh stream name."""
    name = f"t{uuid.uuid4().hex[:10]}"
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    shutil.copy(REPO_ROOT / "schemas/streams/demo.avsc", contracts / "demo.avsc")
    text = (REPO_ROOT / "schemas/streams/demo.yaml").read_text().replace("stream: demo", f"stream: {name}")
    (contracts / f"{name}.yaml").write_text(text)
    return contracts, name


@pytest.fixture()
def settings(bootstrap_servers: str, registry_url: str, stream_dir: tuple[Path, str], tmp_path: Path) -> Settings:
    contracts, name = stream_dir
    return Settings(
        bootstrap_servers=bootstrap_servers,
        schema_registry_url=registry_url,
        state_dir=tmp_path / "state",
        contracts_dir=contracts,
        streams=(name,),
        session_timeout_ms=6000,
        background_fetch_wait_max_ms=100,
        partitions=4,
        # Each test's services in groups of their own: members a previous test killed cannot slow its rebalances.
        group_prefix=f"eddy-{name}",
    )


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment for running a service process against the test broker and registry."""
    return {**os.environ, **settings.kafka_env(), "EDDY_LOG_FORMAT": "json", **extra}


def dump(doc: object) -> str:
    return json.dumps(doc, default=str)
