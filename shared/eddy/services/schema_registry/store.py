"""In-memory registry state and its operations (pure: no I/O, no HTTP).

Reads return plain values. Writes are split in two so that the caller can make
them durable first: a ``plan_*`` method validates against the current state
and returns an :class:`Outcome` (the result plus the journal operations that
realise it) without changing anything; :meth:`Store.apply` then mutates the
state for one operation. Replaying the journal is just ``apply`` in order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

from . import errors
from .avro_model import AvroType
from .avro_parser import SchemaParseError, parse_schema
from .canonical import canonical_json
from .compatibility import Level, check_compatibility
from .versions import LATEST

T = TypeVar("T")
Op = dict[str, Any]

DEFAULT_LEVEL: Final = Level.BACKWARD


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """Result of a planned write and the journal operations that realise it."""

    result: T
    ops: tuple[Op, ...] = ()


@dataclass
class SchemaEntry:
    """A globally identified schema (ids are content-addressed and never reused)."""

    schema_id: int
    text: str
    by_id_body: bytes
    model: AvroType | None = None


@dataclass
class VersionEntry:
    """One version of a subject."""

    version: int
    schema_id: int
    deleted: bool = False


@dataclass
class SubjectState:
    """The versions of a subject, in ascending version order."""

    versions: dict[int, VersionEntry] = field(default_factory=dict)

    def live(self) -> list[VersionEntry]:
        """Versions that are not soft-deleted, oldest first."""
        return [v for v in self.versions.values() if not v.deleted]


@dataclass(frozen=True)
class VersionView:
    """A subject version as exposed by the API."""

    subject: str
    version: int
    schema_id: int
    schema: str
    deleted: bool

    def to_json(self) -> dict[str, Any]:
        """Return Confluent's ``Schema`` entity (``schemaType`` omitted for AVRO)."""
        return {"subject": self.subject, "version": self.version, "id": self.schema_id, "schema": self.schema}


@dataclass(frozen=True)
class Registration:
    """Result of registering a schema under a subject."""

    schema_id: int
    version: int


@dataclass(frozen=True)
class CompatibilityResult:
    """Result of a compatibility test."""

    is_compatible: bool
    messages: list[str]


@dataclass(frozen=True)
class ParsedSchema:
    """A validated candidate schema: its model and canonical text."""

    model: AvroType
    text: str


def parse_candidate(body: Any) -> ParsedSchema:
    """Validate a register/lookup/compatibility request body.

    Parameters
    ----------
    body : Any
        Decoded JSON request body.

    Returns
    -------
    ParsedSchema
        The parsed schema and its canonical text.

    Raises
    ------
    RegistryError
        400 if the body is not an object; 42201 for a missing, non-AVRO,
        referencing or invalid schema.
    """
    if not isinstance(body, dict):
        raise errors.bad_request("Request body must be a JSON object")
    schema_type = body.get("schemaType")
    if schema_type is not None and schema_type != "AVRO":
        raise errors.invalid_schema(f"Invalid schema type {schema_type!r}: this registry only supports AVRO schemas")
    references = body.get("references")
    if references:
        raise errors.invalid_schema("Invalid schema: schema references are not supported by this registry")
    text = body.get("schema")
    if not isinstance(text, str) or not text.strip():
        raise errors.invalid_schema("Invalid schema: 'schema' must be a non-empty string")
    try:
        model = parse_schema(text)
    except SchemaParseError as exc:
        raise errors.invalid_schema(str(exc)) from None
    return ParsedSchema(model, canonical_json(model))


def _by_id_body(text: str) -> bytes:
    return json.dumps({"schema": text}, separators=(",", ":"), ensure_ascii=False).encode()


class Store:
    """All registry state, held in memory."""

    def __init__(self, default_level: Level = DEFAULT_LEVEL) -> None:
        self._default_level = default_level
        self._global_level = default_level
        self._schemas: dict[int, SchemaEntry] = {}
        self._id_by_text: dict[str, int] = {}
        self._max_id = 0
        self._subjects: dict[str, SubjectState] = {}
        self._subject_levels: dict[str, Level] = {}
        # id -> {(subject, version)} including soft-deleted versions; an id with
        # no references left (all permanently deleted) is no longer served.
        self._refs: dict[int, dict[tuple[str, int], None]] = {}

    # ------------------------------------------------------------------ apply

    def apply(self, op: Op) -> None:
        """Apply one journal operation to the state.

        Parameters
        ----------
        op : dict
            An operation produced by a ``plan_*`` method (or read back from
            the journal).

        Raises
        ------
        ValueError
            For an unknown or inconsistent operation (journal corruption).
        """
        kind = op.get("op")
        if kind == "schema":
            schema_id, text = int(op["id"]), str(op["schema"])
            self._schemas[schema_id] = SchemaEntry(schema_id, text, _by_id_body(text))
            self._id_by_text[text] = schema_id
            self._max_id = max(self._max_id, schema_id)
        elif kind == "register":
            subject, version, schema_id = str(op["subject"]), int(op["version"]), int(op["id"])
            if schema_id not in self._schemas:
                raise ValueError(f"register references unknown schema id {schema_id}")
            state = self._subjects.setdefault(subject, SubjectState())
            state.versions[version] = VersionEntry(version, schema_id)
            self._refs.setdefault(schema_id, {})[(subject, version)] = None
        elif kind == "soft_delete":
            self._entry(op)[1].deleted = True
        elif kind == "hard_delete":
            subject, entry = self._entry(op)
            state = self._subjects[subject]
            del state.versions[entry.version]
            self._refs.get(entry.schema_id, {}).pop((subject, entry.version), None)
            if not state.versions:
                del self._subjects[subject]
        elif kind == "set_config":
            level = Level(op["level"])
            if op.get("subject") is None:
                self._global_level = level
            else:
                self._subject_levels[str(op["subject"])] = level
        elif kind == "delete_config":
            if op.get("subject") is None:
                self._global_level = self._default_level
            else:
                self._subject_levels.pop(str(op["subject"]), None)
        else:
            raise ValueError(f"unknown journal operation {kind!r}")

    def execute(self, outcome: Outcome[T]) -> T:
        """Apply an outcome's operations directly (no durability) and return its result."""
        for op in outcome.ops:
            self.apply(op)
        return outcome.result

    def _entry(self, op: Op) -> tuple[str, VersionEntry]:
        subject, version = str(op["subject"]), int(op["version"])
        state = self._subjects.get(subject)
        if state is None or version not in state.versions:
            raise ValueError(f"operation on unknown version {subject!r} v{version}")
        return subject, state.versions[version]

    # ------------------------------------------------------------------ reads

    @property
    def schema_count(self) -> int:
        """Number of distinct schema ids ever issued."""
        return len(self._schemas)

    @property
    def max_id(self) -> int:
        """Highest schema id ever issued (0 when empty)."""
        return self._max_id

    def schema_body_by_id(self, schema_id: int) -> bytes | None:
        """Return the pre-encoded ``{"schema": ...}`` body for a served id, else ``None``."""
        if not self._refs.get(schema_id):
            return None
        return self._schemas[schema_id].by_id_body

    def schema_by_id(self, schema_id: int) -> str:
        """Return the schema text of a served id.

        Raises
        ------
        RegistryError
            40403 if the id was never issued or all its versions were permanently deleted.
        """
        if not self._refs.get(schema_id):
            raise errors.schema_not_found(schema_id)
        return self._schemas[schema_id].text

    def subject_versions_for_id(
        self, schema_id: int, include_deleted: bool = False, subject: str | None = None
    ) -> list[tuple[str, int]]:
        """Return the ``(subject, version)`` pairs using a schema id.

        Raises
        ------
        RegistryError
            40403 if the id is not served.
        """
        refs = self._refs.get(schema_id)
        if not refs:
            raise errors.schema_not_found(schema_id)
        pairs = []
        for subj, version in refs:
            if subject is not None and subj != subject:
                continue
            if not include_deleted and self._subjects[subj].versions[version].deleted:
                continue
            pairs.append((subj, version))
        return sorted(pairs)

    def subjects(self, include_deleted: bool = False, deleted_only: bool = False, prefix: str = "") -> list[str]:
        """List subject names, sorted.

        Parameters
        ----------
        include_deleted : bool
            Also list subjects whose versions are all soft-deleted.
        deleted_only : bool
            Only list subjects that have soft-deleted versions (wins over ``include_deleted``).
        prefix : str
            Only list subjects starting with this prefix.
        """
        names = []
        for name, state in self._subjects.items():
            if not name.startswith(prefix):
                continue
            flags = [v.deleted for v in state.versions.values()]
            if deleted_only:
                keep = any(flags)
            elif include_deleted:
                keep = True
            else:
                keep = not all(flags)
            if keep:
                names.append(name)
        return sorted(names)

    def versions(self, subject: str, include_deleted: bool = False, deleted_only: bool = False) -> list[int]:
        """List a subject's version numbers, ascending.

        Raises
        ------
        RegistryError
            40401 if the subject has no versions in the requested view.
        """
        state = self._subjects.get(subject)
        if state is None or not (include_deleted or deleted_only or state.live()):
            raise errors.subject_not_found(subject)
        if deleted_only:
            return [v.version for v in state.versions.values() if v.deleted]
        return [v.version for v in state.versions.values() if include_deleted or not v.deleted]

    def get_version(self, subject: str, version: int, include_deleted: bool = False) -> VersionView:
        """Return one version (``version`` may be :data:`LATEST`).

        Raises
        ------
        RegistryError
            40401 if the subject has no visible versions, 40402 if the version is absent.
        """
        state = self._subjects.get(subject)
        visible = [] if state is None else [v for v in state.versions.values() if include_deleted or not v.deleted]
        if not visible:
            raise errors.subject_not_found(subject)
        if version == LATEST:
            entry = visible[-1]
        else:
            found = next((v for v in visible if v.version == version), None)
            if found is None:
                raise errors.version_not_found(version)
            entry = found
        return self._view(subject, entry)

    def _view(self, subject: str, entry: VersionEntry) -> VersionView:
        text = self._schemas[entry.schema_id].text
        return VersionView(subject, entry.version, entry.schema_id, text, entry.deleted)

    def lookup(self, subject: str, candidate: ParsedSchema, include_deleted: bool = False) -> VersionView:
        """Find the version of ``subject`` holding a schema equal to ``candidate``.

        Raises
        ------
        RegistryError
            40401 if the subject has no visible versions, 40403 if no version matches.
        """
        state = self._subjects.get(subject)
        visible = [] if state is None else [v for v in state.versions.values() if include_deleted or not v.deleted]
        if not visible:
            raise errors.subject_not_found(subject)
        schema_id = self._id_by_text.get(candidate.text)
        # Newest first: a schema re-registered after a soft delete has a newer live version.
        for entry in reversed(visible):
            if entry.schema_id == schema_id:
                return self._view(subject, entry)
        raise errors.schema_not_found()

    def list_schemas(
        self, prefix: str = "", include_deleted: bool = False, latest_only: bool = False
    ) -> list[VersionView]:
        """List subject versions (``GET /schemas``), by subject then version."""
        out: list[VersionView] = []
        for subject in sorted(self._subjects):
            if not subject.startswith(prefix):
                continue
            visible = [v for v in self._subjects[subject].versions.values() if include_deleted or not v.deleted]
            if latest_only:
                visible = visible[-1:]
            out += [self._view(subject, v) for v in visible]
        return out

    def model(self, schema_id: int) -> AvroType:
        """Return (and cache) the parsed model of a stored schema."""
        entry = self._schemas[schema_id]
        if entry.model is None:
            entry.model = parse_schema(entry.text)
        return entry.model

    # ------------------------------------------------------------ compatibility

    def level(self, subject: str | None, default_to_global: bool = True) -> Level:
        """Return the compatibility level in scope.

        Parameters
        ----------
        subject : str or None
            ``None`` for the global level.
        default_to_global : bool
            Fall back to the global level when the subject has none.

        Raises
        ------
        RegistryError
            40408 if the subject has no level and ``default_to_global`` is false.
        """
        if subject is None:
            return self._global_level
        level = self._subject_levels.get(subject)
        if level is not None:
            return level
        if default_to_global:
            return self._global_level
        raise errors.subject_compatibility_not_configured(subject)

    def _history(self, subject: str) -> list[tuple[int, AvroType]]:
        state = self._subjects.get(subject)
        if state is None:
            return []
        return [(v.version, self.model(v.schema_id)) for v in state.live()]

    def test_compatibility(self, subject: str, candidate: ParsedSchema, version: int | None) -> CompatibilityResult:
        """Test a candidate against one version (or, with ``None``, as registration would).

        Raises
        ------
        RegistryError
            40401/40402 if an explicit version does not exist.
        """
        level = self.level(subject)
        history = self._history(subject)
        if version is not None:
            if version == LATEST:
                history = history[-1:]
            else:
                matching = [(v, m) for v, m in history if v == version]
                if not matching:
                    if not history:
                        raise errors.subject_not_found(subject)
                    raise errors.version_not_found(version)
                history = matching
        messages = check_compatibility(level, candidate.model, history)
        return CompatibilityResult(not messages, messages)

    # ------------------------------------------------------------------ writes

    def plan_register(self, subject: str, candidate: ParsedSchema) -> Outcome[Registration]:
        """Plan registering ``candidate`` under ``subject``.

        Re-registering a schema that is live in the subject returns the
        existing id and version. A new version gets ``max(version) + 1``
        (soft-deleted versions count, as in Confluent); a schema already known
        under any subject keeps its global id.

        Raises
        ------
        RegistryError
            409 if the schema breaks the subject's compatibility level.
        """
        state = self._subjects.get(subject)
        known_id = self._id_by_text.get(candidate.text)
        live = state.live() if state else []
        for entry in reversed(live):
            if entry.schema_id == known_id:
                return Outcome(Registration(entry.schema_id, entry.version))
        history = [(v.version, self.model(v.schema_id)) for v in live]
        messages = check_compatibility(self.level(subject), candidate.model, history)
        if messages:
            raise errors.incompatible_schema(subject, messages)
        ops: list[Op] = []
        schema_id = known_id
        if schema_id is None:
            schema_id = self._max_id + 1
            ops.append({"op": "schema", "id": schema_id, "schema": candidate.text})
        version = max(state.versions, default=0) + 1 if state else 1
        if state:
            # Confluent drops soft-deleted versions of the same schema when it is
            # registered again, so the id maps to a single version per subject.
            ops += [
                {"op": "hard_delete", "subject": subject, "version": v.version}
                for v in state.versions.values()
                if v.deleted and v.schema_id == schema_id
            ]
        ops.append({"op": "register", "subject": subject, "version": version, "id": schema_id})
        return Outcome(Registration(schema_id, version), tuple(ops))

    def plan_delete_subject(self, subject: str, permanent: bool) -> Outcome[list[int]]:
        """Plan a soft (or permanent) delete of every version of a subject.

        Raises
        ------
        RegistryError
            40401 unknown subject; 40404 soft delete of an already soft-deleted
            subject; 40405 permanent delete of live versions.
        """
        state = self._subjects.get(subject)
        if state is None:
            raise errors.subject_not_found(subject)
        if permanent:
            if state.live():
                raise errors.subject_not_soft_deleted(subject)
            targets = list(state.versions)
            ops: list[Op] = [{"op": "hard_delete", "subject": subject, "version": v} for v in targets]
            if subject in self._subject_levels:
                ops.append({"op": "delete_config", "subject": subject})
            return Outcome(targets, tuple(ops))
        live = [v.version for v in state.live()]
        if not live:
            raise errors.subject_soft_deleted(subject)
        return Outcome(live, tuple({"op": "soft_delete", "subject": subject, "version": v} for v in live))

    def plan_delete_version(self, subject: str, version: int, permanent: bool) -> Outcome[int]:
        """Plan a soft (or permanent) delete of one version (``version`` may be :data:`LATEST`).

        Raises
        ------
        RegistryError
            40401/40402 unknown subject/version; 40406 soft delete of a
            soft-deleted version; 40407 permanent delete of a live version.
        """
        state = self._subjects.get(subject)
        if state is None:
            raise errors.subject_not_found(subject)
        if version == LATEST:
            candidates = list(state.versions.values()) if permanent else state.live()
            if not candidates:
                raise errors.subject_not_found(subject)
            entry = candidates[-1]
        else:
            found = state.versions.get(version)
            if found is None:
                raise errors.version_not_found(version)
            entry = found
        if permanent:
            if not entry.deleted:
                raise errors.version_not_soft_deleted(subject, entry.version)
            ops: list[Op] = [{"op": "hard_delete", "subject": subject, "version": entry.version}]
            if len(state.versions) == 1 and subject in self._subject_levels:
                ops.append({"op": "delete_config", "subject": subject})
            return Outcome(entry.version, tuple(ops))
        if entry.deleted:
            raise errors.version_soft_deleted(subject, entry.version)
        return Outcome(entry.version, ({"op": "soft_delete", "subject": subject, "version": entry.version},))

    def plan_set_level(self, subject: str | None, level: Level) -> Outcome[Level]:
        """Plan setting the global (``subject=None``) or a subject's level."""
        return Outcome(level, ({"op": "set_config", "subject": subject, "level": level.value},))

    def plan_delete_level(self, subject: str | None) -> Outcome[Level]:
        """Plan removing a subject's level (or resetting the global one); returns the old level.

        Raises
        ------
        RegistryError
            40401 if the subject has no subject-level compatibility.
        """
        if subject is None:
            return Outcome(self._global_level, ({"op": "delete_config", "subject": None},))
        old = self._subject_levels.get(subject)
        if old is None:
            raise errors.subject_not_found(subject)
        return Outcome(old, ({"op": "delete_config", "subject": subject},))


def replay(store: Store, ops: Iterable[Op]) -> None:
    """Apply journal operations in order (startup recovery)."""
    for op in ops:
        store.apply(op)
