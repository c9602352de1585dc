"""Who may do what on Kafka: one principal per service and per user role, and the ACLs that say so.

``PRINCIPALS`` is the one table. Each row names the topics a principal reads and writes, in the
symbolic form the docs use (``S.events`` is "the events topic of every stream served";
``eddy.model-events`` is one platform topic), the consumer groups it reads in and the transactional
ids it may use. :func:`acl_bindings` turns a row into Kafka ACLs for given streams and group prefix;
:func:`principals_markdown` renders the table for ``docs/operations.md`` (a test holds the two equal).

Where the rows come from (the services' ``__main__``):

- every service's start (``eddy.runtime.service.bootstrap``) lists all topics of its streams and the
  platform topics to create what is missing, so every service principal may *describe* them all;
  creating them is the ``topics`` principal's job (``python -m eddy.runtime.create_topics``).
- a stream loop reads in the group ``PREFIX-SERVICE`` and dead-letters to ``S.dlq`` (``eddy.dlq`` for
  the platform topics); with ``EDDY_KAFKA_TRANSACTIONS`` its transactional id is
  ``PREFIX-SERVICE.INSTANCE.DIGEST`` (``eddy.kafka.transactions.transactional_id``), except learning's
  loop, which never runs in a transaction.
- side readers (snapshot watchers, control feeds, scans) read without joining a group, under a
  ``group.id`` that starts with a fixed name (``eddy-history-``, ``eddy-inference-snapshots-``, ...).

Nothing here grants ``S.models`` or ``eddy.model-candidates`` writes beyond the services that
produce them: their records carry pickled models.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

from eddy.core.topics import MODEL_CANDIDATES_TOPIC, MODEL_EVENTS_TOPIC, PLATFORM_DLQ_TOPIC, PLATFORM_TOPICS

STREAM = "S."
# Every topic of a stream, and the platform topics: what every service lists at start.
ALL_TOPICS = "*"


@dataclass(frozen=True)
class Principal:
    """What one Kafka principal may do.

    Parameters
    ----------
    name : str
        The SASL user (``User:NAME``), also the suffix of its compose/Kubernetes secret.
    role : str
        Who runs as it: a service (its ``python -m eddy.services.<role>``) or a user role.
    reads, writes : tuple of str
        Topics in symbolic form: ``S.KIND`` for every served stream's topic of that kind, or a
        platform topic's full name.
    groups : tuple of str
        Consumer groups it reads in; ``{prefix}`` is ``EDDY_GROUP_PREFIX``. A name ending in ``*``
        is a prefix.
    transactional_ids : tuple of str
        Transactional ids it may use, in the same form.
    group_describes : tuple of str
        Groups whose committed offsets it may read without joining them (a lag scaler).
    describes : str
        ``*``: describe every eddy topic (a service's start lists them); empty: nothing beyond
        what it reads and writes.
    creates : bool
        May create eddy's topics (the ``topics`` job).
    """

    name: str
    role: str
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    transactional_ids: tuple[str, ...] = ()
    group_describes: tuple[str, ...] = ()
    describes: str = ""
    creates: bool = False

    def __post_init__(self) -> None:
        for topic in (*self.reads, *self.writes):
            if not (topic.startswith(STREAM) or topic in PLATFORM_TOPICS):
                raise ValueError(f"principal {self.name}: {topic!r} is neither S.KIND nor a platform topic")


def _service(
    name: str,
    reads: Sequence[str],
    writes: Sequence[str],
    side_groups: Sequence[str] = (),
    transactional: bool = True,
) -> Principal:
    """A service's row: its loop's group and transactional ids, its side readers' group prefixes."""
    return Principal(
        name=f"eddy-{name.replace('_', '-')}",
        role=name,
        reads=tuple(reads),
        writes=tuple(writes),
        groups=(f"{{prefix}}-{name}", *side_groups),
        transactional_ids=(f"{{prefix}}-{name}.*",) if transactional else (),
        describes=ALL_TOPICS,
    )


PRINCIPALS: tuple[Principal, ...] = (
    _service("ingestion", ["S.raw"], ["S.events", "S.feedback", "S.dlq"]),
    _service("validation", ["S.events", "S.profiles"], ["S.validated", "S.profiles", "S.dlq"], ["eddy-history-*"]),
    _service(
        "inference",
        ["S.validated", "S.models", MODEL_EVENTS_TOPIC],
        ["S.predictions", "S.dlq"],
        ["eddy-inference-snapshots-*"],
    ),
    _service(
        "learning",
        ["S.predictions", "S.feedback", "S.labeled", "S.models", MODEL_EVENTS_TOPIC],
        ["S.labeled", "S.models", "S.dlq"],
        ["eddy-learning-registry-*", "eddy-history-*"],
        transactional=False,
    ),
    _service(
        "monitoring",
        [
            "S.validated",
            "S.predictions",
            "S.labeled",
            "S.profiles",
            "S.dlq",
            "S.models",
            "S.feedback",
            MODEL_EVENTS_TOPIC,
        ],
        ["S.alerts", "S.dlq"],
        ["eddy-monitoring-control-*"],
    ),
    _service(
        "retraining",
        ["S.labeled", "S.alerts", MODEL_EVENTS_TOPIC],
        [MODEL_EVENTS_TOPIC, MODEL_CANDIDATES_TOPIC, "S.dlq", PLATFORM_DLQ_TOPIC],
        ["eddy-history-*"],
    ),
    _service(
        "model_registry",
        [MODEL_CANDIDATES_TOPIC, MODEL_EVENTS_TOPIC, "S.models"],
        ["S.models", MODEL_EVENTS_TOPIC, PLATFORM_DLQ_TOPIC],
        ["eddy-model-registry-lineage-*"],
    ),
    # Creates every topic before the services start (the compose `topics` service, the Kubernetes Job).
    Principal("eddy-topics", "topics job", describes=ALL_TOPICS, creates=True),
    # Users: a client that sends records straight to Kafka, and one that reads results.
    Principal("eddy-producer", "producer (user role)", writes=("S.raw", "S.events", "S.feedback")),
    Principal(
        "eddy-viewer",
        "viewer (user role)",
        reads=("S.predictions", "S.alerts"),
        groups=("{prefix}-viewer-*",),
    ),
    # KEDA's Kafka scaler (Kubernetes): the lag of the groups it scales, and nothing of their records.
    Principal(
        "eddy-keda",
        "KEDA lag scaler",
        group_describes=("{prefix}-validation", "{prefix}-inference", "{prefix}-monitoring"),
        describes=ALL_TOPICS,
    ),
)
BY_NAME = {p.name: p for p in PRINCIPALS}
BY_ROLE = {p.role: p for p in PRINCIPALS}


def principal(role: str) -> Principal:
    """The principal of a service or user role.

    >>> principal("inference").name
    'eddy-inference'
    >>> principal("chef")
    Traceback (most recent call last):
    ...
    KeyError: "no Kafka principal for 'chef': known roles are ingestion, validation, ..."
    """
    try:
        return BY_ROLE[role]
    except KeyError:
        raise KeyError(f"no Kafka principal for {role!r}: known roles are {', '.join(BY_ROLE)}") from None


def topic_names(symbolic: str, streams: Iterable[str]) -> list[str]:
    """The real topics a symbolic name stands for.

    >>> topic_names("S.models", ["demo", "fraud"])
    ['demo.models', 'fraud.models']
    >>> topic_names("eddy.model-events", ["demo"])
    ['eddy.model-events']
    """
    if symbolic in PLATFORM_TOPICS:
        return [symbolic]
    if not symbolic.startswith(STREAM):
        raise ValueError(f"{symbolic!r} is neither S.KIND nor a platform topic")
    return [f"{stream}.{symbolic[len(STREAM) :]}" for stream in streams]


def _pattern(name: str, prefix: str) -> tuple[str, ResourcePatternType]:
    resolved = name.replace("{prefix}", prefix)
    if resolved.endswith("*"):
        return resolved[:-1], ResourcePatternType.PREFIXED
    return resolved, ResourcePatternType.LITERAL


def acl_bindings(who: Principal, streams: Sequence[str], group_prefix: str = "eddy") -> list[AclBinding]:
    """The ALLOW ACLs of ``who`` for ``streams``, with consumer groups named after ``group_prefix``.

    Reads imply describe; writes imply describe. ``describes="*"`` adds describe on each stream's
    topics (the prefix ``STREAM.``) and on the platform topics.

    >>> [(b.name, b.operation.name) for b in acl_bindings(principal("producer (user role)"), ["demo"])]
    [('demo.raw', 'WRITE'), ('demo.events', 'WRITE'), ('demo.feedback', 'WRITE')]
    >>> b = acl_bindings(principal("viewer (user role)"), ["demo"])[-1]
    >>> (b.restype.name, b.name, b.resource_pattern_type.name, b.operation.name)
    ('GROUP', 'eddy-viewer-', 'PREFIXED', 'READ')
    """
    if not streams:
        raise ValueError("acl_bindings needs at least one stream")
    user = f"User:{who.name}"

    def allow(restype: ResourceType, name: str, pattern: ResourcePatternType, op: AclOperation) -> AclBinding:
        return AclBinding(restype, name, pattern, user, "*", op, AclPermissionType.ALLOW)

    literal = ResourcePatternType.LITERAL
    out: list[AclBinding] = []
    for symbolic in who.reads:
        out += [allow(ResourceType.TOPIC, t, literal, AclOperation.READ) for t in topic_names(symbolic, streams)]
    for symbolic in who.writes:
        out += [allow(ResourceType.TOPIC, t, literal, AclOperation.WRITE) for t in topic_names(symbolic, streams)]
    whole = [(f"{s}.", ResourcePatternType.PREFIXED) for s in streams] + [(t, literal) for t in PLATFORM_TOPICS]
    if who.describes == ALL_TOPICS:
        out += [allow(ResourceType.TOPIC, name, pattern, AclOperation.DESCRIBE) for name, pattern in whole]
    if who.creates:
        out += [allow(ResourceType.TOPIC, name, pattern, AclOperation.CREATE) for name, pattern in whole]
    for group in who.groups:
        name, pattern = _pattern(group, group_prefix)
        out.append(allow(ResourceType.GROUP, name, pattern, AclOperation.READ))
    for group in who.group_describes:
        name, pattern = _pattern(group, group_prefix)
        out.append(allow(ResourceType.GROUP, name, pattern, AclOperation.DESCRIBE))
    for tid in who.transactional_ids:
        name, pattern = _pattern(tid, group_prefix)
        out.append(allow(ResourceType.TRANSACTIONAL_ID, name, pattern, AclOperation.WRITE))
    return out


# Confluent's schema registry (compose's default registry) keeps its schemas in ``_schemas``, in its own group.
CONFLUENT_REGISTRY = "eddy-schema-registry"
CONFLUENT_REGISTRY_TOPIC = "_schemas"
CONFLUENT_REGISTRY_GROUP = "schema-registry"


def confluent_registry_bindings(user: str = CONFLUENT_REGISTRY) -> list[AclBinding]:
    """What Confluent's schema registry needs: its topic (created by itself, its config checked) and its group.

    >>> sorted(b.operation.name for b in confluent_registry_bindings())
    ['CREATE', 'DESCRIBE_CONFIGS', 'READ', 'READ', 'WRITE']
    """
    literal, allow = ResourcePatternType.LITERAL, AclPermissionType.ALLOW
    topic_ops = (AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DESCRIBE_CONFIGS)
    out = [
        AclBinding(ResourceType.TOPIC, CONFLUENT_REGISTRY_TOPIC, literal, f"User:{user}", "*", op, allow)
        for op in topic_ops
    ]
    group = AclBinding(
        ResourceType.GROUP, CONFLUENT_REGISTRY_GROUP, literal, f"User:{user}", "*", AclOperation.READ, allow
    )
    return [*out, group]


def all_bindings(streams: Sequence[str], group_prefix: str = "eddy") -> list[AclBinding]:
    """Every principal's ACLs (:data:`PRINCIPALS`) for ``streams``."""
    return [b for p in PRINCIPALS for b in acl_bindings(p, streams, group_prefix)]


def _cell(items: Iterable[str]) -> str:
    return ", ".join(f"`{i}`" for i in items) or "none"


def _groups(p: Principal) -> str:
    cells = [f"`{g}` (read)" for g in p.groups] + [f"`{g}` (describe)" for g in p.group_describes]
    return ", ".join(cells) or "none"


def principals_markdown() -> str:
    """The table of :data:`PRINCIPALS` as Markdown, as ``docs/operations.md`` shows it.

    >>> principals_markdown().splitlines()[2].split(" | ")[:2]
    ['| `User:eddy-ingestion`', 'ingestion']
    """
    rows = [
        "| principal | used by | reads | writes | groups | transactional ids (write) | topics: describe, create |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in PRINCIPALS:
        extent = ("all eddy topics" if p.describes == ALL_TOPICS else "only its own") + (
            "; create all eddy topics" if p.creates else ""
        )
        rows.append(
            f"| `User:{p.name}` | {p.role} | {_cell(p.reads)} | {_cell(p.writes)} | {_groups(p)} "
            f"| {_cell(p.transactional_ids)} | {extent} |"
        )
    return "\n".join(rows) + "\n"
