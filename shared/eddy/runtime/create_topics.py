"""Create every topic eddy uses, then exit: ``python -m eddy.runtime.create_topics``.

The one-shot job of a deployment (the compose file's ``topics`` service, a Kubernetes Job) that runs
before the eddy services: each stream's topics from its contract, plus the platform topics, with
``EDDY_PARTITIONS`` partitions and ``EDDY_REPLICATION_FACTOR`` replicas, over the same Kafka client
settings (security included) as the services. Topics that exist are left as they are, so a second run
exits 0 too. The services create missing topics themselves as well; running this first keeps the
partition count and replication factor in one place rather than in whichever service starts first.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from eddy.contracts.durations import ContractError
from eddy.contracts.learning import partition_problem
from eddy.contracts.stream import load_contracts
from eddy.core.settings import Settings
from eddy.core.topics import PLATFORM_TOPICS, StreamTopics
from eddy.kafka.client import ensure_topics
from eddy.runtime import observability as obs

log = logging.getLogger("eddy.runtime.create_topics")


def wanted_topics(settings: Settings) -> list[str]:
    """Every topic of the contracts ``settings`` selects, then the platform topics, without repeats.

    Parameters
    ----------
    settings : Settings
        Where the contracts are and which streams to serve (``EDDY_STREAMS``; empty: all).

    Returns
    -------
    list of str
        Topic names in a stable order.
    """
    contracts = load_contracts(settings.contracts_dir, settings.streams)
    for stream, contract in contracts.items():
        # A model learning in shards needs a partition count that is a multiple of its shards.
        problem = partition_problem(
            {m.name: m.shards for m in contract.models}, settings.partitions, f"stream {stream!r}"
        )
        if problem is not None:
            raise ContractError(problem)
    topics = [topic for stream in sorted(contracts) for topic in StreamTopics(stream).all()]
    return list(dict.fromkeys([*topics, *PLATFORM_TOPICS]))


def main(argv: Sequence[str] | None = None) -> int:
    """Create the missing topics.

    Returns
    -------
    int
        0 once every topic exists, 1 when Kafka refuses or stays unreachable, 2 for settings that cannot work.
    """
    parser = argparse.ArgumentParser(prog="python -m eddy.runtime.create_topics", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for Kafka to answer (default 120)"
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:  # SettingsError, or a number that does not read as one
        print(f"create_topics: {exc}", file=sys.stderr)
        return 2
    obs.setup_logging("create_topics", settings.log_level, settings.log_format)
    try:
        topics = wanted_topics(settings)
    except ContractError as exc:
        print(f"create_topics: {exc}", file=sys.stderr)
        return 2
    try:
        ensure_topics(settings, topics, timeout_s=args.timeout)
    except Exception as exc:  # any Kafka or connection failure ends the job with its reason
        log.error("topics not created", extra={"error": f"{type(exc).__name__}: {exc}"})
        return 1
    log.info(
        "topics ready",
        extra={
            "topics": len(topics),
            "partitions": settings.partitions,
            "replication_factor": settings.replication_factor,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
