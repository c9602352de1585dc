"""A local Apache Kafka: the pinned release fetched by Maven, and KRaft nodes started on loopback.

``eddy kafka install`` fetches the broker's jars from Maven Central into a cache outside the
repository (``~/.cache/eddy/kafka-<version>``, or ``EDDY_KAFKA_HOME``), once. ``start_kafka``
formats storage and starts one node, or a cluster of N nodes that are each broker and controller,
on free loopback ports, with log dirs under a directory it is given, a bounded heap, and a clean
stop. Every node dies with the process that started it, even one killed with SIGKILL.

This is the same Apache Kafka that compose (``apache/kafka:<version>``) and the Kubernetes notes
name; ``KAFKA_VERSION`` is the one place the version is pinned (a test holds the others to it).
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from eddy.stack.embedded import BrokerError, free_port, wait_for_port
from eddy.stack.supervisor import die_with_parent, terminate

KAFKA_VERSION = "4.3.2"
SCALA_VERSION = "2.13"
# log4j2 behind SLF4J 2, so the broker's log lines reach its log file instead of a no-op logger.
LOG4J_VERSION = "2.24.3"
SLF4J_VERSION = "2.0.17"
DEFAULT_HEAP_MB = 512
# Kafka's own kafka-run-class.sh settings, without its 1 GB heap.
JVM_OPTS = (
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)
LOG4J2_PROPERTIES = """\
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""
READY_MARKER = ".complete"
QUIET = logging.getLogger("eddy.apache_kafka.client")


class KafkaUnavailable(BrokerError):
    """Apache Kafka cannot be installed or started here (no Java, no Maven, or the fetch failed)."""


def kafka_home(version: str = KAFKA_VERSION) -> Path:
    """Where the pinned release's jars live: ``EDDY_KAFKA_HOME``, else the user's cache directory."""
    explicit = os.environ.get("EDDY_KAFKA_HOME")
    if explicit:
        return Path(explicit)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "eddy" / f"kafka-{version}"


def missing_tools(needed: Iterable[str] = ("java", "mvn")) -> str | None:
    """One line naming what is missing to install and run Apache Kafka, or None.

    >>> missing_tools(["sh"]) is None
    True
    >>> missing_tools(["no-such-tool-here"])
    'Apache Kafka needs no-such-tool-here on PATH (Java 17+ and Maven): not found'
    """
    absent = [tool for tool in needed if shutil.which(tool) is None]
    if not absent:
        return None
    return f"Apache Kafka needs {' and '.join(absent)} on PATH (Java 17+ and Maven): not found"


def installed(version: str = KAFKA_VERSION) -> bool:
    return (kafka_home(version) / READY_MARKER).exists()


def fetch_pom(version: str) -> str:
    """The throwaway Maven project whose runtime dependencies are a KRaft broker."""
    deps = [
        ("org.apache.kafka", f"kafka_{SCALA_VERSION}", version),
        ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
        ("org.apache.logging.log4j", "log4j-slf4j2-impl", LOG4J_VERSION),
        ("org.slf4j", "slf4j-api", SLF4J_VERSION),
    ]
    body = "".join(
        f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>eddy.local</groupId><artifactId>apache-kafka</artifactId><version>1</version>"
        f"<dependencies>{body}</dependencies></project>"
    )


def install(version: str = KAFKA_VERSION, *, quiet: bool = True, timeout_s: float = 600.0) -> Path:
    """Fetch Apache Kafka ``version`` with Maven into ``kafka_home``; a no-op once done. Returns the home.

    The jars land in a scratch directory first and are moved into place whole, so an interrupted
    fetch never looks installed.
    """
    home = kafka_home(version)
    if (home / READY_MARKER).exists():
        return home
    missing = missing_tools()
    if missing:
        raise KafkaUnavailable(missing)
    home.parent.mkdir(parents=True, exist_ok=True)
    scratch = home.parent / f".{home.name}.{os.getpid()}.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    (scratch / "pom.xml").write_text(fetch_pom(version))
    argv = ["mvn", "-B", "-f", str(scratch / "pom.xml"), "dependency:copy-dependencies"]
    argv += [f"-DoutputDirectory={scratch / 'libs'}", "-DincludeScope=runtime"]
    if quiet:
        argv.append("-q")
    try:
        done = subprocess.run(argv, capture_output=quiet, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise KafkaUnavailable(f"fetching Apache Kafka {version} with Maven took over {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        tail = " ".join((done.stdout or "").strip().splitlines()[-3:])
        raise KafkaUnavailable(f"Maven could not fetch org.apache.kafka:kafka_{SCALA_VERSION}:{version}: {tail}")
    (scratch / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
    (scratch / READY_MARKER).write_text(f"org.apache.kafka:kafka_{SCALA_VERSION}:{version}\n")
    if home.exists():  # another process finished first; keep its copy
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        os.replace(scratch, home)
    return home


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in Kafka's URL-safe base64 form, never starting with "-".

    One id in 64 would otherwise start with "-", which the storage tool's ``-t`` then takes for an
    option (Kafka's own ``Uuid.randomUuid`` skips those for the same reason).

    >>> all(not new_cluster_id().startswith("-") for _ in range(1000))
    True
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass
class KafkaNode:
    """One KRaft node: broker and controller in one JVM."""

    node_id: int
    port: int
    controller_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def node_properties(node: KafkaNode, voters: str, size: int, overrides: Mapping[str, str]) -> dict[str, str]:
    """A combined broker+controller's ``server.properties`` for a cluster of ``size`` nodes."""
    replicas = str(min(3, size))
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(node.data_dir),
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": str(min(2, size)),
        # eddy creates every topic it uses with its own partition count; an auto-created one would be a bug.
        "auto.create.topics.enable": "false",
        # A test's first consumer group should not wait 3 s for members that are not coming.
        "group.initial.rebalance.delay.ms": "0",
        "log.segment.bytes": str(64 * 1024 * 1024),
    }
    props.update(overrides)
    return props


@dataclass
class KafkaCluster:
    """N KRaft nodes on loopback; start, fault and stop them one by one or all together."""

    base_dir: Path
    nodes: list[KafkaNode]
    cluster_id: str = field(default_factory=new_cluster_id)
    heap_mb: int = DEFAULT_HEAP_MB
    overrides: dict[str, str] = field(default_factory=dict)
    version: str = KAFKA_VERSION
    # More arguments for ``kafka-storage format`` (``--add-scram``: KRaft's first SCRAM credentials).
    format_args: tuple[str, ...] = ()
    # Security properties of the admin client that waits for the nodes (a secured listener needs them).
    client_security: dict[str, str] = field(default_factory=dict)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.address for node in self.nodes)

    @property
    def pids(self) -> list[int]:
        return [pid for pid in (node.pid for node in self.nodes) if pid]

    def alive(self) -> bool:
        return all(node.alive() for node in self.nodes)

    def exited(self) -> KafkaNode | None:
        """The first node that is not running, if any."""
        return next((node for node in self.nodes if not node.alive()), None)

    def format_and_start(self, timeout_s: float = 120.0) -> None:
        home = install(self.version)
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        for node in self.nodes:
            node.data_dir.mkdir(parents=True, exist_ok=True)
            props = node_properties(node, voters, len(self.nodes), self.overrides)
            config = node.data_dir.parent / f"server-{node.node_id}.properties"
            config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
            java(
                home,
                "kafka.tools.StorageTool",
                *("format", "-t", self.cluster_id, "-c", str(config), *self.format_args),
                heap_mb=256,
            )
        for node in self.nodes:
            self.start_node(node, wait=False)
        for node in self.nodes:
            self.wait_ready(node, timeout_s)
        self.wait_registered(timeout_s)

    def wait_registered(self, timeout_s: float) -> None:
        """Until every running node is in the cluster's metadata: an open port is not yet a broker."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers, "logger": QUIET, **self.client_security}
        admin = AdminClient(conf)
        wanted = {n.node_id for n in self.nodes if n.alive()}
        deadline = time.monotonic() + timeout_s
        seen: set[int] = set()
        while time.monotonic() < deadline:
            try:
                seen = set(admin.list_topics(timeout=2).brokers)
            except KafkaException:
                seen = set()
            if wanted <= seen:
                return
            time.sleep(0.1)
        self.stop()
        raise KafkaUnavailable(f"Apache Kafka nodes {sorted(wanted - seen)} did not join within {timeout_s:.0f} s")

    def start_node(self, node: KafkaNode, *, wait: bool = True, timeout_s: float = 120.0) -> None:
        """Start (or restart) one node from its formatted log dir."""
        home = install(self.version)
        config = node.data_dir.parent / f"server-{node.node_id}.properties"
        argv = java_argv(home, "kafka.Kafka", str(config), heap_mb=self.heap_mb)
        with open(node.log_path, "ab") as log:
            node.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        if wait:
            self.wait_ready(node, timeout_s)

    def wait_ready(self, node: KafkaNode, timeout_s: float) -> None:
        if not wait_for_port("127.0.0.1", node.port, timeout_s, alive=node.alive):
            code = node.proc.poll() if node.proc else None
            self.stop()
            raise KafkaUnavailable(
                f"Apache Kafka node {node.node_id} did not open 127.0.0.1:{node.port} within {timeout_s:.0f} s "
                f"(exit code {code}); see {node.log_path}"
            )

    def signal_node(self, node: KafkaNode, sig: signal.Signals) -> None:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(sig)

    def stop_node(self, node: KafkaNode, timeout_s: float = 30.0) -> None:
        """SIGTERM (a controlled shutdown: leadership moves first), then SIGKILL after ``timeout_s``."""
        if node.proc is not None:
            terminate(node.proc, timeout_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop every node. SIGTERM goes to all at once: a lone survivor would wait for a quorum."""
        running = [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]
        for node in running:
            self.signal_node(node, signal.SIGCONT)
            self.signal_node(node, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for node in running:
            assert node.proc is not None
            try:
                node.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(10)


def java_argv(home: Path, main: str, *args: str, heap_mb: int) -> list[str]:
    return [
        "java",
        f"-Xms{min(heap_mb, 256)}m",
        f"-Xmx{heap_mb}m",
        *JVM_OPTS,
        f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
        "-cp",
        str(home / "libs" / "*"),
        main,
        *args,
    ]


def java(home: Path, main: str, *args: str, heap_mb: int) -> None:
    done = subprocess.run(java_argv(home, main, *args, heap_mb=heap_mb), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise KafkaUnavailable(f"{main} {' '.join(args[:1])} failed: {(done.stdout + done.stderr).strip()[-400:]}")


def start_kafka(
    base_dir: Path,
    nodes: int = 1,
    *,
    heap_mb: int = DEFAULT_HEAP_MB,
    overrides: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    timeout_s: float = 120.0,
) -> KafkaCluster:
    """Install if needed, format fresh storage under ``base_dir`` and start ``nodes`` KRaft nodes.

    Returns once every node accepts connections; the caller stops the cluster (``KafkaCluster.stop``).
    """
    base_dir = base_dir.resolve()
    log_dir = (log_dir or base_dir).resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    members = [
        KafkaNode(
            node_id=i + 1,
            port=free_port(),
            controller_port=free_port(),
            data_dir=base_dir / f"node-{i + 1}" / "data",
            log_path=log_dir / (f"kafka-{i + 1}.log" if nodes > 1 else "broker.log"),
        )
        for i in range(nodes)
    ]
    cluster = KafkaCluster(base_dir, members, heap_mb=heap_mb, overrides=dict(overrides or {}))
    cluster.format_and_start(timeout_s)
    return cluster
