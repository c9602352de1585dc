"""Seeded faults for the brokers of a 3-node KRaft cluster: SIGKILL, SIGTERM and SIGSTOP.

A chaos run with broker faults starts its own Apache Kafka cluster (:func:`start_cluster`: three nodes,
each broker and controller, ``min.insync.replicas=2``) and hands it to the stack as an external broker,
whose topics eddy then creates with replication factor 3. A :class:`BrokerFault` plan, drawn from the
seed, aims each fault at a *role*, resolved to a node only when the fault is due: the active KRaft
controller (the highest-epoch leader in the nodes' ``quorum-state`` files; the Kafka protocol's
``describe_cluster`` names a random broker in KRaft mode, not the controller) or the leader of one
partition of the stream's topics (from the cluster's metadata).

- SIGKILL: the node dies; it is restarted from its log dir after ``down_s``.
- SIGTERM: a controlled shutdown (leadership moves first), then a restart after ``down_s``.
- SIGSTOP: the node freezes for ``down_s``, then gets SIGCONT. Pauses past the broker session timeout
  (9 s) get the node fenced by the controller; a frozen controller loses the quorum's leadership.

Never more than one broker is down: a fault is applied only when every node is up and every partition
has its full ISR again, so ``min.insync.replicas=2`` stays satisfiable and ``acks=all`` writes can go on.
Faults are applied in order, each when both its time has come and the cluster is whole again.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from eddy.stack.apache_kafka import QUIET, KafkaCluster, KafkaNode, start_kafka
from eddy.stack.embedded import wait_for_port

from tests.chaos.faults import now_ms

BrokerFaultKind = Literal["SIGKILL", "SIGTERM", "SIGSTOP"]
Role = Literal["controller", "leader"]
NODES = 3
REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2
HEAP_MB = 384
CLUSTER_OVERRIDES = {
    # Every topic, the brokers' own included, needs two of its three replicas for an acks=all write.
    "min.insync.replicas": str(MIN_INSYNC_REPLICAS),
    "default.replication.factor": str(REPLICATION_FACTOR),
}
# Roles a plan cycles through: the controller once for every two partition leaders.
ROLE_CYCLE: tuple[Role, ...] = ("controller", "leader", "leader")
KINDS: tuple[BrokerFaultKind, ...] = ("SIGKILL", "SIGTERM", "SIGSTOP")
HEALTHY_TIMEOUT_S = 120.0
TERM_TIMEOUT_S = 60.0
POLL_S = 0.5


@dataclass(frozen=True)
class BrokerFault:
    """One planned broker fault: ``at_s`` after the load starts, ``kind`` to the node holding ``role``.

    For ``leader``, the node leading partition ``partition`` of the stream topic ``topic_kind``
    (``events``, ``validated``, ``predictions``, ...). ``down_s``: how long the node stays down
    (killed or terminated: until its restart; stopped: until its SIGCONT).
    """

    at_s: float
    kind: BrokerFaultKind
    role: Role
    down_s: float
    topic_kind: str = ""
    partition: int = 0

    def describe(self) -> str:
        target = "controller" if self.role == "controller" else f"leader {self.topic_kind}[{self.partition}]"
        return f"{self.kind} {target}, down {self.down_s:.1f}s"


def plan_broker_faults(
    seed: int, count: int, window_s: tuple[float, float], topic_kinds: tuple[str, ...], partitions: int = 4
) -> list[BrokerFault]:
    """``count`` broker faults at seeded times in ``window_s``, kinds and roles dealt from seeded shuffles.

    Every three faults include each kind; every three, the controller once. Killed and terminated
    nodes stay down 2-8 s; stops last 2-14 s, some past the broker session timeout (9 s).

    >>> plan = plan_broker_faults(1, 6, (5.0, 40.0), ("events", "predictions"))
    >>> plan == plan_broker_faults(1, 6, (5.0, 40.0), ("events", "predictions"))
    True
    >>> sorted(f.kind for f in plan[:3]), sum(f.role == "controller" for f in plan)
    (['SIGKILL', 'SIGSTOP', 'SIGTERM'], 2)
    """
    rng = random.Random(f"broker-faults-{seed}")
    times = sorted(round(rng.uniform(*window_s), 2) for _ in range(count))
    kinds: list[BrokerFaultKind] = []
    roles: list[Role] = []
    plan = []
    for at in times:
        kinds = kinds or rng.sample(list(KINDS), len(KINDS))
        roles = roles or rng.sample(list(ROLE_CYCLE), len(ROLE_CYCLE))
        kind, role = kinds.pop(), roles.pop()
        down = round(rng.uniform(2.0, 14.0) if kind == "SIGSTOP" else rng.uniform(2.0, 8.0), 2)
        topic = rng.choice(topic_kinds) if role == "leader" else ""
        plan.append(BrokerFault(at, kind, role, down, topic, rng.randrange(partitions) if topic else 0))
    return plan


@dataclass
class BrokerFaultRecord:
    """What became of one broker fault (times in epoch milliseconds)."""

    fault: BrokerFault
    node_id: int | None = None
    also: str = ""  # the node's other roles when hit, e.g. "also controller"
    injected_ms: int | None = None
    exit_code: int | None = None
    back_ms: int | None = None  # restarted (its port open) or continued
    whole_ms: int | None = None  # every node up and every partition's ISR full again
    skipped: str = ""

    def line(self, started_ms: int) -> str:
        at = f"+{(self.injected_ms - started_ms) / 1000:6.1f}s" if self.injected_ms else "    -    "
        what = f"{at}  kafka-{self.node_id or '?'}  {self.fault.describe():<38}"
        if self.skipped:
            return f"{what} skipped: {self.skipped}"
        parts = [self.also] if self.also else []
        if self.exit_code is not None:
            parts.append(f"exit {self.exit_code}")
        if self.back_ms and self.injected_ms:
            parts.append(
                f"{'continued' if self.fault.kind == 'SIGSTOP' else 'restarted'} after "
                f"{(self.back_ms - self.injected_ms) / 1000:.1f}s"
            )
        parts.append(
            f"ISR full after {(self.whole_ms - self.injected_ms) / 1000:.1f}s"
            if self.whole_ms and self.injected_ms
            else "ISR not full again"
        )
        return f"{what} {', '.join(parts)}"

    @property
    def span(self) -> tuple[int, int] | None:
        """From the signal until the node was back, for putting redeliveries down to a fault."""
        if self.injected_ms is None:
            return None
        return self.injected_ms, self.back_ms or self.injected_ms


def start_cluster(base_dir: Path) -> KafkaCluster:
    """Three KRaft nodes on loopback, formatted fresh under ``base_dir``, with ``min.insync.replicas=2``."""
    return start_kafka(base_dir, NODES, heap_mb=HEAP_MB, overrides=CLUSTER_OVERRIDES, log_dir=base_dir / "logs")


def active_controller(cluster: KafkaCluster) -> int | None:
    """The KRaft quorum's leader: the newest epoch's leader among the nodes' ``quorum-state`` files."""
    best: tuple[int, int] | None = None
    for node in cluster.nodes:
        try:
            state = json.loads((node.data_dir / "__cluster_metadata-0" / "quorum-state").read_text())
        except (OSError, ValueError):
            continue
        leader, epoch = int(state.get("leaderId", -1)), int(state.get("leaderEpoch", -1))
        if leader >= 0 and (best is None or epoch > best[1]):
            best = (leader, epoch)
    return best[0] if best else None


class BrokerFaultScheduler:
    """Applies a broker fault plan to ``cluster`` in order; see the module docstring.

    Restarted nodes are started from the thread that runs :meth:`run`, and a node started with
    ``PR_SET_PDEATHSIG`` gets SIGTERM when the *thread* that forked it ends, so that thread must outlive
    the cluster: :meth:`run` returns only once ``release`` is set (after the cluster is stopped).
    ``done`` is set as soon as the plan is through and the cluster is whole.
    """

    def __init__(self, cluster: KafkaCluster, plan: list[BrokerFault], topics: dict[str, str]) -> None:
        self.cluster = cluster
        self.plan = plan
        self.topics = topics  # topic kind -> topic name
        self.records = [BrokerFaultRecord(f) for f in plan]
        self.done = threading.Event()
        self.release = threading.Event()
        self.error: BaseException | None = None
        conf: dict[str, Any] = {"bootstrap.servers": cluster.bootstrap_servers, "logger": QUIET}
        self.admin = AdminClient(conf)

    def run(self, stop: threading.Event, origin: float) -> None:
        try:
            for record in self.records:
                if stop.wait(max(0.0, origin + record.fault.at_s - time.monotonic())):
                    record.skipped = "the run stopped first"
                    continue
                self._apply(record)
        except BaseException as exc:  # reported by the harness; the cluster is still restored below
            self.error = exc
        finally:
            try:
                self._restore()
            except BaseException as exc:  # a node that cannot start again: the run fails, it does not hang
                self.error = self.error or exc
            finally:
                self.done.set()
                self.release.wait()

    def _apply(self, record: BrokerFaultRecord) -> None:
        if not self.wait_whole(HEALTHY_TIMEOUT_S):
            record.skipped = f"the cluster was not whole within {HEALTHY_TIMEOUT_S:.0f}s"
            return
        fault = record.fault
        node = self._target(fault)
        if node is None:
            record.skipped = f"no node holds {fault.describe()}"
            return
        record.node_id = node.node_id
        record.also = self._other_roles(node, fault)
        record.injected_ms = now_ms()
        self.cluster.signal_node(node, getattr(signal, fault.kind))
        if fault.kind == "SIGSTOP":
            time.sleep(fault.down_s)
            self.cluster.signal_node(node, signal.SIGCONT)
        else:
            record.exit_code = _wait_exit(node, TERM_TIMEOUT_S if fault.kind == "SIGTERM" else 10.0)
            time.sleep(fault.down_s)
            # Not start_node's own wait: on a timeout it stops the whole cluster, which suits a first start
            # but would end the run here. A node slow to come back (a JVM start took 40 s on two busy cores)
            # shows as a cluster not whole in time instead.
            self.cluster.start_node(node, wait=False)
            wait_for_port("127.0.0.1", node.port, HEALTHY_TIMEOUT_S, alive=node.alive)
        record.back_ms = now_ms()
        if self.wait_whole(HEALTHY_TIMEOUT_S):
            record.whole_ms = now_ms()

    def _target(self, fault: BrokerFault) -> KafkaNode | None:
        if fault.role == "controller":
            wanted = active_controller(self.cluster)
        else:
            wanted = self._leaders().get((self.topics[fault.topic_kind], fault.partition))
        return next((n for n in self.cluster.nodes if n.node_id == wanted), None)

    def _other_roles(self, node: KafkaNode, fault: BrokerFault) -> str:
        led = sorted(f"{t.rsplit('.', 1)[-1]}[{p}]" for (t, p), n in self._leaders().items() if n == node.node_id)
        roles = ["controller"] if fault.role != "controller" and active_controller(self.cluster) == node.node_id else []
        if fault.role == "controller" and led:
            roles.append(f"leader of {len(led)} stream partitions")
        return f"also {' and '.join(roles)}" if roles else ""

    def _leaders(self) -> dict[tuple[str, int], int]:
        try:
            metadata = self.admin.list_topics(timeout=5)
        except KafkaException:
            return {}
        wanted = set(self.topics.values())
        return {
            (name, p.id): p.leader
            for name, topic in metadata.topics.items()
            if name in wanted
            for p in topic.partitions.values()
        }

    def wait_whole(self, timeout_s: float) -> bool:
        """Until every node runs and is registered, and every partition's ISR holds all its replicas."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.cluster.alive() and _whole(self.admin, len(self.cluster.nodes)):
                return True
            time.sleep(POLL_S)
        return False

    def _restore(self) -> None:
        """Whatever the run did, leave every node running: continue the stopped, restart the dead."""
        for node in self.cluster.nodes:
            if node.alive():
                self.cluster.signal_node(node, signal.SIGCONT)
            else:
                self.cluster.start_node(node, wait=False)


def _whole(admin: AdminClient, nodes: int) -> bool:
    try:
        metadata = admin.list_topics(timeout=5)
    except KafkaException:
        return False
    if len(metadata.brokers) < nodes:
        return False
    return all(
        len(p.isrs) == len(p.replicas) and p.leader >= 0
        for topic in metadata.topics.values()
        for p in topic.partitions.values()
    )


def _wait_exit(node: KafkaNode, timeout_s: float) -> int | None:
    """The node's exit code; SIGKILL past ``timeout_s`` (a controlled shutdown that hangs)."""
    proc = node.proc
    if proc is None:
        return None
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)


class BrokerChaos:
    """A run's own 3-node cluster and the thread that faults it, from start to a clean stop.

    Use as a context manager around the stack: on the way out the fault thread is told to stop (a
    node it holds down is restored first), the cluster is stopped, and only then is the thread let go.
    """

    def __init__(self, workdir: Path, seed: int, count: int) -> None:
        self.workdir = workdir
        self.seed = seed
        self.count = count
        self.cluster: KafkaCluster | None = None
        self.scheduler: BrokerFaultScheduler | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def __enter__(self) -> BrokerChaos:
        self.cluster = start_cluster(self.workdir / "kafka")
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self.scheduler is not None:
            self.scheduler.done.wait(TERM_TIMEOUT_S + 30)
        if self.cluster is not None:
            self.cluster.stop()
        if self.scheduler is not None:
            self.scheduler.release.set()
        if self._thread is not None:
            self._thread.join(30)

    @property
    def bootstrap_servers(self) -> str:
        assert self.cluster is not None
        return self.cluster.bootstrap_servers

    def begin(self, topics: dict[str, str], window_s: tuple[float, float], origin: float) -> None:
        """Start applying the seed's plan, timed from ``origin`` (monotonic)."""
        assert self.cluster is not None
        plan = plan_broker_faults(self.seed, self.count, window_s, tuple(topics))
        self.scheduler = BrokerFaultScheduler(self.cluster, plan, topics)
        self._thread = threading.Thread(target=self.scheduler.run, args=(self._stop, origin), name="chaos-brokers")
        self._thread.start()

    def interrupt(self) -> None:
        """Apply no further fault (the one under way still ends with its node restored)."""
        self._stop.set()

    def wait_done(self, timeout_s: float) -> list[BrokerFaultRecord]:
        """Until the plan is through and the cluster whole again (bounded); the records so far."""
        if self.scheduler is None:
            return []
        self.scheduler.done.wait(timeout_s)
        if self.scheduler.error is not None:
            raise RuntimeError("the broker fault thread failed") from self.scheduler.error
        return self.scheduler.records
