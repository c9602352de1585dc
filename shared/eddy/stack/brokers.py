"""The local brokers eddy can start itself: Tansu (the embedded default) and Apache Kafka.

Both come back with one face (``LocalBroker``): the bootstrap servers, the pids, whether every node
still runs, and a stop. ``eddy up``, the test fixtures and the benchmarks choose one by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from eddy.stack.apache_kafka import start_kafka
from eddy.stack.embedded import BrokerError, TansuBroker, start_tansu

BROKER_KINDS = ("tansu", "kafka")


class LocalBroker(Protocol):
    @property
    def bootstrap_servers(self) -> str: ...

    @property
    def pids(self) -> list[int]: ...

    def alive(self) -> bool: ...

    def stop(self, timeout_s: float = ...) -> None: ...


def start_broker(
    kind: str,
    workdir: Path,
    *,
    nodes: int = 1,
    log_dir: Path | None = None,
    port: int = 0,
    kafka_overrides: Mapping[str, str] | None = None,
) -> LocalBroker:
    """Start a local broker of ``kind`` (``tansu`` or ``kafka``) whose data and logs go under ``workdir``.

    ``kafka_overrides`` are broker properties for Apache Kafka (Tansu has none to set).

    >>> start_broker("redpanda", Path("/tmp"))
    Traceback (most recent call last):
    ...
    eddy.stack.embedded.BrokerError: unknown broker 'redpanda': choose one of tansu, kafka
    """
    if kind == "tansu":
        if nodes != 1:
            raise BrokerError("the embedded broker (Tansu) runs one node only")
        log_path = (log_dir or workdir) / "broker.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        proc, servers = start_tansu(port, log_path=log_path)
        return TansuBroker(proc, servers)
    if kind == "kafka":
        return start_kafka(workdir / "kafka", nodes, log_dir=log_dir or workdir, overrides=kafka_overrides)
    raise BrokerError(f"unknown broker {kind!r}: choose one of {', '.join(BROKER_KINDS)}")
