"""``eddy up``: the embedded stack (broker, schema registry, every service, optionally the demo feed).

The running stack is described in ``STATE_DIR/stack.json`` so that ``eddy
status``, ``eddy down``, tests and scripts can find every address and pid.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from eddy.contracts.stream import load_contracts
from eddy.core.settings import Settings
from eddy.core.topics import PLATFORM_TOPICS, StreamTopics
from eddy.kafka.client import ensure_topics
from eddy.stack.brokers import LocalBroker, start_broker
from eddy.stack.embedded import free_port
from eddy.stack.supervisor import Child, Supervisor

log = logging.getLogger(__name__)

# The model registry starts before inference: it publishes every stream's alias table and artifacts.
SERVICES = ("ingestion", "validation", "model_registry", "inference", "learning", "monitoring", "retraining")
EMBEDDED_SESSION_TIMEOUT_MS = 6000
EMBEDDED_FETCH_WAIT_MS = 10
EMBEDDED_BACKGROUND_FETCH_WAIT_MS = 100


class StackError(RuntimeError):
    """The stack cannot start (or is already running)."""


def stack_file(state_dir: Path) -> Path:
    return state_dir / "stack.json"


def read_stack(state_dir: Path) -> dict[str, Any] | None:
    path = stack_file(state_dir)
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not running.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


class EmbeddedStack:
    """Starts everything, supervises it, and stops it in order."""

    def __init__(self, settings: Settings, env: dict[str, str], demo: bool = False, demo_args: list[str] | None = None):
        self.settings = settings
        self.env = env
        self.demo = demo
        self.demo_args = demo_args or []
        self.state_dir = settings.state_dir.resolve()
        self.logs = self.state_dir / "logs"
        self.broker: LocalBroker | None = None
        self.supervisor = Supervisor(on_change=self.write_stack_file)
        self.starts_broker = not env.get("EDDY_BOOTSTRAP_SERVERS")
        self.embedded_registry = not env.get("EDDY_SCHEMA_REGISTRY_URL")
        self.ready = False

    # -- start ------------------------------------------------------------------------

    def start(self) -> None:
        existing = read_stack(self.state_dir)
        running = (existing or {}).get("supervisor_pid")
        if running and running != os.getpid() and pid_alive(running):
            raise StackError(f"eddy is already running from {self.state_dir} (pid {running}); run `eddy down` first")
        self.logs.mkdir(parents=True, exist_ok=True)
        settings = self.settings
        if self.starts_broker:
            port = int(self.env.get("EDDY_BROKER_PORT") or 0)
            # Each start is a fresh cluster (Tansu keeps nothing; Kafka gets new storage), so state saved
            # against an earlier one is recognised as stale by its cluster id.
            shutil.rmtree(self.state_dir / "kafka", ignore_errors=True)
            self.broker = start_broker(settings.embedded_broker, self.state_dir, log_dir=self.logs, port=port)
            bootstrap = self.broker.bootstrap_servers
            settings = replace(settings, bootstrap_servers=bootstrap, session_timeout_ms=EMBEDDED_SESSION_TIMEOUT_MS)
            self.settings = settings
        if self.starts_broker and settings.embedded_broker == "tansu":
            if not self.env.get("EDDY_FETCH_WAIT_MAX_MS"):
                # Tansu answers a fetch only when fetch.wait.max.ms has passed, even with data ready.
                settings = replace(settings, fetch_wait_max_ms=EMBEDDED_FETCH_WAIT_MS)
            if not self.env.get("EDDY_BACKGROUND_FETCH_WAIT_MAX_MS"):
                # Short waits cost Tansu CPU (ten idle consumers at 10 ms take a third of a core), so only
                # the prediction path gets them.
                settings = replace(settings, background_fetch_wait_max_ms=EMBEDDED_BACKGROUND_FETCH_WAIT_MS)
            self.settings = settings
        contracts = load_contracts(settings.contracts_dir, settings.streams)
        topics = [t for s in contracts for t in StreamTopics(s).all()] + list(PLATFORM_TOPICS)
        ensure_topics(settings, topics)
        if self.embedded_registry:
            port = int(self.env.get("EDDY_SCHEMA_REGISTRY_PORT") or 0) or free_port()
            url = f"http://127.0.0.1:{port}"
            argv = [sys.executable, "-m", "eddy.services.schema_registry", "--host", "127.0.0.1", "--port", str(port)]
            argv += ["--data-dir", str(self.state_dir / "schema-registry")]
            self.supervisor.add(Child("schema_registry", argv, {}, self.logs / "schema_registry.log", url))
            settings = replace(settings, schema_registry_url=url)
            self.settings = settings
            wait_http(f"{url}/subjects", 30.0)
        # One signing keyring for every service (under the state dir unless one is configured), made before any
        # of them starts: learning, inference, retraining and the registry verify each other's models with it.
        replace(settings, state_dir=self.state_dir).keyring()
        child_env = {**settings.kafka_env(), "EDDY_STATE_DIR": str(self.state_dir), "EDDY_LOG_FORMAT": "json"}
        for name in SERVICES:
            port = free_port()
            env = {**child_env, "EDDY_HTTP_PORT": str(port), "EDDY_SERVICE_NAME": name}
            argv = [sys.executable, "-m", f"eddy.services.{name}"]
            self.supervisor.add(Child(name, argv, env, self.logs / f"{name}.log", f"http://127.0.0.1:{port}"))
        if self.demo:
            argv = [sys.executable, "-m", "eddy.cli.main", "demo-feed", *self.demo_args]
            self.supervisor.add(Child("demo-feed", argv, child_env, self.logs / "demo-feed.log"))
        self.ready = True
        self.write_stack_file()

    def write_stack_file(self) -> None:
        doc = {
            "supervisor_pid": os.getpid(),
            "state_dir": str(self.state_dir),
            "broker": self.settings.embedded_broker if self.starts_broker else "external",
            "broker_pids": self.broker.pids if self.broker else [],
            "ready": self.ready,
            "bootstrap_servers": self.settings.bootstrap_servers,
            "schema_registry_url": self.settings.schema_registry_url,
            "services": {
                c.name: {"url": c.url, "pid": c.pid, "restarts": c.restarts, "log": str(c.log_path)}
                for c in self.supervisor.children
            },
        }
        _write_json(stack_file(self.state_dir), doc)

    # -- run and stop -----------------------------------------------------------------

    def run_until_stopped(self, stop: threading.Event) -> None:
        while not stop.wait(0.25):
            self.supervisor.tick()
            if self.broker is not None and not self.broker.alive():
                raise StackError(f"the embedded broker exited; see its log in {self.logs}")

    def stop(self) -> None:
        self.supervisor.stop_all()
        if self.broker is not None:
            self.broker.stop()
        # Only our own: a start refused because another eddy runs from this state dir must not orphan it.
        if (read_stack(self.state_dir) or {}).get("supervisor_pid") in (None, os.getpid()):
            stack_file(self.state_dir).unlink(missing_ok=True)


def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise StackError(f"{url} did not answer within {timeout_s:.0f} s ({last})")


def service_health(url: str | None, timeout_s: float = 1.0) -> dict[str, Any]:
    if not url:
        return {"status": "n/a"}
    try:
        response = httpx.get(f"{url}/healthz", timeout=timeout_s)
        doc: dict[str, Any] = response.json()
        return doc
    except (httpx.HTTPError, ValueError) as exc:
        return {"status": "down", "error": type(exc).__name__}
