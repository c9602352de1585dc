"""The registry's metadata in SQLite: versions, aliases, the audit trail, the outbox of model events, experiments.

Every decision is one transaction (:meth:`Store.transaction`) that changes
aliases, appends its audit row and queues its ``ModelEvent`` in the outbox. A
publisher sends the outbox to Kafka and marks rows published once the broker
has them, so a crash between the decision and its event loses neither: the
event is sent on the next start. Event ids derive from the outbox sequence,
so a re-sent event has the id it had the first time.

SQLite runs in WAL mode with ``synchronous=FULL``: a committed decision
survives a power cut. A partial unique index allows one champion per stream
(and one challenger); the commit checks there is exactly one champion.

Experiments (backtest runs: the models, the data range, the metrics) are a
table of their own: they change no alias, so they publish no event.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eddy.ml.roles import CHAMPION, VersionKey, model_event

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
    stream TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 1),
    spec TEXT NOT NULL,
    parent TEXT,
    code_version TEXT NOT NULL,
    training_offsets TEXT NOT NULL DEFAULT '[]',
    online_ranges TEXT NOT NULL DEFAULT '{}',
    learned_count INTEGER NOT NULL DEFAULT 0,
    online_learned_count INTEGER,
    schema_ids TEXT NOT NULL DEFAULT '{}',
    metrics TEXT NOT NULL DEFAULT '{}',
    created_by TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    candidate_id TEXT UNIQUE,
    reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (stream, name, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    stream TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    alias TEXT NOT NULL CHECK (alias IN ('champion', 'challenger', 'shadow', 'archived')),
    PRIMARY KEY (stream, name, version),
    FOREIGN KEY (stream, name, version) REFERENCES versions (stream, name, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS one_champion ON aliases (stream) WHERE alias = 'champion';
CREATE UNIQUE INDEX IF NOT EXISTS one_challenger ON aliases (stream) WHERE alias = 'challenger';
CREATE TABLE IF NOT EXISTS champion_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    event TEXT NOT NULL,
    published_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (seq) WHERE published_at_ms IS NULL;
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    actor TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    model TEXT NOT NULL,
    subjects TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_stream ON audit (stream, seq);
CREATE TABLE IF NOT EXISTS handled_requests (
    event_id TEXT PRIMARY KEY,
    stream TEXT NOT NULL,
    outcome TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY,
    stream TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS experiments_stream ON experiments (stream, created_at_ms);
"""


class InvariantError(RuntimeError):
    """A transaction that would leave a stream without exactly one champion: it is rolled back."""


class ExperimentConflict(ValueError):
    """An experiment id already recorded with a different document."""


@dataclass
class VersionRow:
    """One registered model version and its lineage."""

    stream: str
    name: str
    version: int
    spec: str
    sha256: str
    size: int
    created_by: str
    created_at_ms: int
    code_version: str = "unknown"
    parent: str | None = None
    training_offsets: list[dict[str, Any]] = field(default_factory=list)
    online_ranges: dict[str, dict[str, int]] = field(default_factory=dict)
    learned_count: int = 0
    online_learned_count: int | None = None
    schema_ids: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    candidate_id: str | None = None
    reason: str = ""

    @property
    def key(self) -> VersionKey:
        return VersionKey(self.name, self.version)

    def to_doc(self) -> dict[str, Any]:
        return {"key": str(self.key), **asdict(self)}


_JSON_COLUMNS = ("training_offsets", "online_ranges", "schema_ids", "metrics")


class Store:
    """The registry database; safe to share between the loop thread and HTTP threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE), so their bounds are ours.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._touched: set[str] | None = None
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self.transaction():
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('instance', ?)", (uuid.uuid4().hex,))
        self.instance = self._db.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- transactions -------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic decision; nested use joins the outer transaction.

        Raises
        ------
        InvariantError
            If a stream whose aliases changed would not have exactly one champion (nothing is written).
        """
        with self._lock:
            if self._touched is not None:
                yield
                return
            self._touched = set()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                for stream in self._touched:
                    champions = self._db.execute(
                        "SELECT COUNT(*) FROM aliases WHERE stream = ? AND alias = 'champion'", (stream,)
                    ).fetchone()[0]
                    if champions != 1:
                        raise InvariantError(f"stream {stream!r} would have {champions} champions")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            finally:
                self._touched = None

    def _in_transaction(self) -> None:
        if self._touched is None:
            raise RuntimeError("registry writes happen inside Store.transaction()")

    # -- versions and aliases -------------------------------------------------------

    def insert_version(self, row: VersionRow) -> None:
        self._in_transaction()
        doc = asdict(row)
        for column in _JSON_COLUMNS:
            doc[column] = json.dumps(doc[column], sort_keys=True)
        columns = ", ".join(doc)
        self._db.execute(f"INSERT INTO versions ({columns}) VALUES ({', '.join('?' * len(doc))})", list(doc.values()))

    def set_alias(self, stream: str, key: VersionKey, alias: str, at_ms: int | None = None) -> None:
        self._in_transaction()
        assert self._touched is not None
        self._touched.add(stream)
        self._db.execute(
            "INSERT INTO aliases VALUES (?, ?, ?, ?) ON CONFLICT (stream, name, version) DO UPDATE SET alias = ?",
            (stream, key.name, key.version, alias, alias),
        )
        if alias == CHAMPION:
            self._db.execute(
                "INSERT INTO champion_history (stream, name, version, at_ms) VALUES (?, ?, ?, ?)",
                (stream, key.name, key.version, at_ms if at_ms is not None else _now_ms()),
            )

    def next_version(self, stream: str, name: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM versions WHERE stream = ? AND name = ?", (stream, name)
            ).fetchone()
            return int(row[0]) + 1

    def aliases(self, stream: str) -> dict[VersionKey, str]:
        with self._lock:
            rows = self._db.execute("SELECT name, version, alias FROM aliases WHERE stream = ?", (stream,)).fetchall()
        return {VersionKey(r["name"], r["version"]): r["alias"] for r in rows}

    def streams(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT DISTINCT stream FROM versions ORDER BY stream")]

    def version(self, stream: str, key: VersionKey) -> VersionRow | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM versions WHERE stream = ? AND name = ? AND version = ?", (stream, key.name, key.version)
            ).fetchone()
        return _row(row) if row is not None else None

    def versions(self, stream: str) -> list[VersionRow]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM versions WHERE stream = ? ORDER BY name, version", (stream,))
            return [_row(r) for r in rows.fetchall()]

    def has_candidate(self, candidate_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM versions WHERE candidate_id = ?", (candidate_id,)).fetchone()
        return row is not None

    def champion_history(self, stream: str) -> list[VersionKey]:
        """Every version that became champion, oldest first (a version appears once per time it did)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name, version FROM champion_history WHERE stream = ? ORDER BY seq", (stream,)
            ).fetchall()
        return [VersionKey(r["name"], r["version"]) for r in rows]

    def rolled_back_from(self, stream: str) -> set[VersionKey]:
        """The versions a rollback has taken the champion seat from: never a default rollback target."""
        with self._lock:
            rows = self._db.execute(
                "SELECT details FROM audit WHERE stream = ? AND event_type = 'rolled_back'", (stream,)
            ).fetchall()
        return {VersionKey.parse(json.loads(r["details"])["from"]) for r in rows}

    def update_online(
        self, stream: str, key: VersionKey, ranges: Mapping[str, Mapping[str, int]], learned: int
    ) -> None:
        """Record what learning has learned into a version online (its own transaction: no alias changes)."""
        with self.transaction():
            self._db.execute(
                "UPDATE versions SET online_ranges = ?, online_learned_count = ? "
                "WHERE stream = ? AND name = ? AND version = ?",
                (json.dumps(ranges, sort_keys=True), learned, stream, key.name, key.version),
            )

    # -- requests ----------------------------------------------------------------------

    def handled(self, event_id: str) -> str | None:
        """The outcome of a request already handled, or None."""
        with self._lock:
            row = self._db.execute("SELECT outcome FROM handled_requests WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else str(row[0])

    def mark_handled(self, event_id: str, stream: str, outcome: str) -> None:
        self._in_transaction()
        self._db.execute("INSERT INTO handled_requests VALUES (?, ?, ?, ?)", (event_id, stream, outcome, _now_ms()))

    # -- events: outbox and audit -------------------------------------------------------

    def append_event(
        self,
        stream: str,
        key: VersionKey,
        event_type: str,
        actor: str,
        details: Mapping[str, Any],
        *,
        alias: str | None = None,
        subjects: Sequence[VersionKey] = (),
        audit: bool = True,
        audit_actor: str | None = None,
        at_ms: int | None = None,
    ) -> dict[str, Any]:
        """Queue a model event in the outbox (and the audit trail); its id derives from its sequence number.

        The audit trail names ``audit_actor`` as the actor when given (who asked for a change the
        registry publishes as its own), else the event's ``actor``.
        """
        self._in_transaction()
        cursor = self._db.execute("INSERT INTO outbox (stream, event) VALUES (?, '')", (stream,))
        seq = int(cursor.lastrowid or 0)
        event = model_event(
            stream, key, event_type, actor, details, alias=alias, event_id=self.event_id(seq), at_ms=at_ms
        )
        self._db.execute("UPDATE outbox SET event = ? WHERE seq = ?", (json.dumps(event), seq))
        if audit:
            touched = "|" + "|".join(str(k) for k in (key, *subjects)) + "|"
            row = (seq, stream, event["event_id"], event_type, audit_actor or actor, event["at_ms"], str(key), touched)
            self._db.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (*row, event["details"]))
        return event

    def event_id(self, seq: int) -> str:
        """The id of the outbox's event number ``seq``: the same on every re-send."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"eddy-model-registry/{self.instance}/{seq}"))

    def unpublished(self, limit: int = 1000) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event FROM outbox WHERE published_at_ms IS NULL ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [(int(r["seq"]), json.loads(r["event"])) for r in rows]

    def mark_published(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        with self.transaction():
            now = _now_ms()
            self._db.executemany("UPDATE outbox SET published_at_ms = ? WHERE seq = ?", [(now, s) for s in seqs])

    def audit(self, stream: str, limit: int = 100, key: VersionKey | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` audit entries of ``stream`` (of those that touched ``key``), newest first."""
        query = "SELECT * FROM audit WHERE stream = ?"
        args: list[Any] = [stream]
        if key is not None:
            query += " AND subjects LIKE ?"
            args.append(f"%|{key}|%")
        query += " ORDER BY seq DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [
            {**dict(r), "subjects": [s for s in r["subjects"].split("|") if s], "details": json.loads(r["details"])}
            for r in rows
        ]

    # -- experiments ----------------------------------------------------------------------

    def add_experiment(
        self,
        experiment_id: str,
        stream: str,
        created_by: str,
        title: str,
        doc: Mapping[str, Any],
        created_at_ms: int | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Record an experiment (a backtest run); returns it and whether it is new.

        Recording the same id with the same document again is a no-op, so a client may retry a
        request whose answer it lost.

        Raises
        ------
        ExperimentConflict
            If ``experiment_id`` is recorded with another stream, title, creator or document.
        """
        at_ms = created_at_ms if created_at_ms is not None else _now_ms()
        text = json.dumps(doc, sort_keys=True)
        with self.transaction():
            row = self._db.execute("SELECT * FROM experiments WHERE id = ?", (experiment_id,)).fetchone()
            if row is not None:
                same = (row["stream"], row["created_by"], row["title"], row["doc"]) == (stream, created_by, title, text)
                if not same:
                    raise ExperimentConflict(f"experiment {experiment_id!r} is already recorded, with other content")
                return _experiment(row), False
            self._db.execute(
                "INSERT INTO experiments (id, stream, created_at_ms, created_by, title, doc) VALUES (?, ?, ?, ?, ?, ?)",
                (experiment_id, stream, at_ms, created_by, title, text),
            )
            row = self._db.execute("SELECT * FROM experiments WHERE id = ?", (experiment_id,)).fetchone()
        return _experiment(row), True

    def experiments(self, stream: str, limit: int = 50) -> list[dict[str, Any]]:
        """The newest ``limit`` experiments of ``stream``, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM experiments WHERE stream = ? ORDER BY created_at_ms DESC, rowid DESC LIMIT ?",
                (stream, limit),
            ).fetchall()
        return [_experiment(r) for r in rows]

    def experiment(self, experiment_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM experiments WHERE id = ?", (experiment_id,)).fetchone()
        return _experiment(row) if row is not None else None

    def check(self) -> dict[str, int]:
        """Champions per stream (for tests and start-up checks: each must be 1)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT stream, SUM(alias = 'champion') FROM aliases GROUP BY stream ORDER BY stream"
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}


def _row(row: sqlite3.Row) -> VersionRow:
    doc = dict(row)
    for column in _JSON_COLUMNS:
        doc[column] = json.loads(doc[column])
    return VersionRow(**doc)


def _experiment(row: sqlite3.Row) -> dict[str, Any]:
    """An experiment as the API shows it: its document, with the columns that index it on top."""
    return {
        **json.loads(row["doc"]),
        "id": row["id"],
        "stream": row["stream"],
        "created_at_ms": row["created_at_ms"],
        "created_by": row["created_by"],
        "title": row["title"],
    }


def _now_ms() -> int:
    return int(time.time() * 1000)
