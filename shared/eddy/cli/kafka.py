"""``eddy kafka install | start``: a local Apache Kafka (the pinned release), fetched by Maven and run on loopback."""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from eddy.cli.common import CliError, UsageError
from eddy.cli.options import positive_int
from eddy.stack.apache_kafka import KAFKA_VERSION, SCALA_VERSION, KafkaUnavailable, install, installed, kafka_home


def cmd_kafka(args: argparse.Namespace) -> int:
    if args.action == "install" and (args.dir or args.nodes != 1):
        raise UsageError("eddy kafka install takes no --dir or --nodes (they go with `eddy kafka start`)")
    try:
        if args.action == "install":
            return _install()
        return _start(args.nodes, Path(args.dir) if args.dir else None)
    except KafkaUnavailable as exc:
        raise CliError(str(exc)) from exc


def _install() -> int:
    if installed():
        print(f"Apache Kafka {KAFKA_VERSION} is installed in {kafka_home()}")
        return 0
    print(
        f"fetching org.apache.kafka:kafka_{SCALA_VERSION}:{KAFKA_VERSION} with Maven ...", file=sys.stderr, flush=True
    )
    home = install()
    print(f"Apache Kafka {KAFKA_VERSION} is installed in {home}")
    return 0


def _start(nodes: int, workdir: Path | None) -> int:
    from eddy.runtime.observability import stop_event_on_signals
    from eddy.stack.apache_kafka import start_kafka

    stop = stop_event_on_signals()
    with tempfile.TemporaryDirectory(prefix="eddy-kafka-") as scratch:
        base = workdir or Path(scratch)
        cluster = start_kafka(base, nodes)
        try:
            print(f"Apache Kafka {KAFKA_VERSION}: {nodes} KRaft node(s), data and logs in {base}", flush=True)
            print(f"EDDY_BOOTSTRAP_SERVERS={cluster.bootstrap_servers}", flush=True)
            print("Ctrl-C stops it.", flush=True)
            _wait(stop, cluster)
        finally:
            cluster.stop()
    return 0


def _wait(stop: threading.Event, cluster: Any) -> None:
    while not stop.wait(0.5):
        gone = cluster.exited()
        if gone is not None:
            raise CliError(f"Apache Kafka node {gone.node_id} exited; see {gone.log_path}")


def add_parsers(sub: Any) -> None:
    """Add ``kafka`` to eddy's subcommands."""
    p = sub.add_parser(
        "kafka",
        help=f"install (Maven) or run a local Apache Kafka {KAFKA_VERSION} on loopback",
        description=f"`install` fetches Apache Kafka {KAFKA_VERSION} into {kafka_home()} (once; needs Java 17+ and "
        "Maven). `start` formats fresh storage and runs N KRaft nodes until Ctrl-C. `eddy up --broker kafka` "
        "runs the whole stack on it.",
    )
    p.add_argument("action", choices=["install", "start"])
    p.add_argument("--nodes", type=positive_int, default=1, help="with start: KRaft nodes, each broker and controller")
    p.add_argument("--dir", help="with start: where data and logs go (default: a temporary directory)")
    p.set_defaults(func=cmd_kafka)
