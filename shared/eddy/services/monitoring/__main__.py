"""Run the monitoring service: ``python -m eddy.services.monitoring``.

It reads S.validated, S.predictions and S.labeled in its consumer group, follows
S.profiles, S.dlq, S.models (label freshness) and eddy.model-events from the beginning, reads
where S.feedback ends once a tick (label freshness), writes alerts to
S.alerts, and serves the dashboard at ``/dashboard`` beside ``/metrics``.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Sequence

from eddy.avro.serde import SerdeError
from eddy.core.topics import MODEL_EVENTS_TOPIC, StreamTopics
from eddy.runtime.feed import SideFeed
from eddy.runtime.loop import BatchResult, InRecord
from eddy.runtime.service import ServiceContext, bootstrap
from eddy.services.monitoring.config import monitor_config
from eddy.services.monitoring.dashboard import dashboard_api
from eddy.services.monitoring.feedback_ends import FeedbackEnds
from eddy.services.monitoring.handlers import Monitor


def main() -> int:
    monitors: dict[str, Monitor] = {}
    ctx = bootstrap("monitoring", http_api=dashboard_api(monitors), background=True)
    config = monitor_config()
    monitors.update({name: Monitor(contract, config) for name, contract in ctx.contracts.items()})
    control = SideFeed(
        ctx.settings,
        ctx.topics("profiles") + ctx.topics("dlq") + ctx.topics("models") + [MODEL_EVENTS_TOPIC],
        "monitoring-control",
    )
    control.start()
    # Where each stream's labels end, for the freshness lag: read once a tick.
    feedback = FeedbackEnds(ctx.settings, ctx.topics("feedback"), config.tick_s)

    def apply_control() -> None:
        for topic, value, reason in control.drain():
            apply(ctx, monitors, topic, value, reason)
        for topic, ends in feedback.due().items():
            monitors[StreamTopics.stream_of(topic)].on_feedback_ends(ends)
        for monitor in monitors.values():
            monitor.maybe_tick()

    def handle(records: Sequence[InRecord]) -> BatchResult:
        by_stream: dict[str, list[InRecord]] = defaultdict(list)
        for record in records:
            by_stream[record.stream].append(record)
        result = BatchResult()
        for stream, batch in by_stream.items():
            result.outputs.extend(monitors[stream](batch).outputs)
        apply_control()
        return result

    topics = ctx.topics("validated") + ctx.topics("predictions") + ctx.topics("labeled")
    loop = ctx.stream_loop(topics, handle, on_idle=apply_control)
    try:
        loop.run(ctx.stop)
    finally:
        control.stop()
        feedback.close()
    return 0


def apply(ctx: ServiceContext, monitors: dict[str, Monitor], topic: str, value: bytes, reason: str | None) -> None:
    """Hand one control record to its stream's monitor; an undecodable one is skipped (it is not ours to fix)."""
    if topic.endswith(".dlq"):
        monitor = monitors.get(StreamTopics.stream_of(topic))
        if monitor is not None:
            monitor.on_dlq(reason or "unknown")
        return
    try:
        record = ctx.serdes.for_topic(topic).decode(value)
    except SerdeError:
        return
    monitor = monitors.get(record.get("stream", ""))
    if monitor is None:
        return
    if topic == MODEL_EVENTS_TOPIC:
        monitor.on_model_event(record)
    elif topic.endswith(".models"):
        monitor.on_snapshot(record)
    else:
        monitor.on_profile(record)


if __name__ == "__main__":
    sys.exit(main())
