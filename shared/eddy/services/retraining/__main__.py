"""Run the retraining service: ``python -m eddy.services.retraining``.

It reads S.labeled, S.alerts and eddy.model-events and writes retrain requests,
trial decisions and rejections to eddy.model-events and challengers to
eddy.model-candidates (handlers.py).

Its state (windows, roles, trials) lives in memory, so every start rebuilds it
by reading all three topics from the beginning, whatever the consumer group
committed (the embedded broker's "latest" offsets cannot be trusted either).
Before that, the whole of eddy.model-events is scanned once, so that what the
replay re-derives and was already published or answered is not published or
trained again. Run one instance: the state is per process, and a second member
of the group would see only some partitions.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from eddy.avro.serde import SerdeError, SerdeRegistry
from eddy.core.topics import MODEL_EVENTS_TOPIC
from eddy.history.reader import start_up_records
from eddy.runtime.service import ServiceContext, bootstrap, code_version
from eddy.services.retraining.handlers import Retraining

log = logging.getLogger("eddy.services.retraining")
# Records older than this when read are history being replayed: they rebuild state but train nothing.
REPLAY_LAG_S = 300.0
# The model-event history is read whole before deciding anything; a read that cannot finish fails the start.
HISTORY_TIMEOUT_S = 120.0


def main() -> int:
    ctx = bootstrap("retraining", background=True)
    handler = Retraining(
        ctx.contracts,
        signer=ctx.keys,
        schema_ids=schema_ids(ctx.serdes),
        code_version=code_version(),
        replay_lag_s=REPLAY_LAG_S,
    )
    handler.prime(ctx.until_authorized(lambda: history(ctx), "read the model-event history"))
    topics = ctx.topics("labeled") + ctx.topics("alerts") + [MODEL_EVENTS_TOPIC]
    loop = ctx.stream_loop(topics, handler, on_assign=FromTheBeginning())
    loop.run(ctx.stop)  # until SIGTERM or SIGINT sets ctx.stop
    return 0


class FromTheBeginning:
    """Each partition read from offset 0 the first time this process is assigned it.

    The in-memory state is rebuilt from the whole history; a partition coming back after a
    rebalance continues from the group's committed offset (its history is in memory already).
    """

    def __init__(self) -> None:
        self.seen: set[tuple[str, int]] = set()

    def __call__(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            if (p.topic, p.partition) not in self.seen:
                p.offset = OFFSET_BEGINNING
                self.seen.add((p.topic, p.partition))
        consumer.assign(partitions)


def history(ctx: ServiceContext) -> list[dict[str, Any]]:
    """Every decodable record of eddy.model-events so far (a low-rate control topic: read whole)."""
    serde = ctx.serdes.for_topic(MODEL_EVENTS_TOPIC)
    events = []
    for message in start_up_records(ctx.settings, [MODEL_EVENTS_TOPIC], HISTORY_TIMEOUT_S):
        try:
            events.append(serde.decode(message.value()))
        except SerdeError:
            continue  # not ours to fix; the loop dead-letters it when it reads it
    log.info("read model-event history", extra={"events": len(events)})
    return events


def schema_ids(serdes: SerdeRegistry) -> Callable[[str], int | None]:
    """The registry id of a topic's value schema, or None when it has none (a candidate's lineage)."""

    def lookup(topic: str) -> int | None:
        try:
            return serdes.schema_id(topic)
        except Exception:
            log.warning("no schema id", extra={"topic": topic}, exc_info=True)
            return None

    return lookup


if __name__ == "__main__":
    sys.exit(main())
