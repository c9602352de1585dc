"""Run the learning service: ``python -m eddy.services.learning`` (see runner.py for how it stays exact)."""

from __future__ import annotations

import sys

from eddy.core.topics import MODEL_EVENTS_TOPIC
from eddy.runtime.feed import SideFeed
from eddy.runtime.loop import StreamLoop
from eddy.runtime.service import bootstrap
from eddy.services.learning.runner import LearningService


def main() -> int:
    ctx = bootstrap("learning", background=True)
    feed = SideFeed(ctx.settings, [MODEL_EVENTS_TOPIC, *ctx.topics("models")], "learning-registry")
    feed.start()
    service = LearningService(ctx, feed)
    loop: StreamLoop
    loop = ctx.stream_loop(
        ctx.topics("predictions") + ctx.topics("feedback"),
        service.handle,
        on_assign=service.on_assign,
        on_batch_done=lambda offsets: service.on_batch_done(offsets, loop),
        on_idle=service.on_idle,
        on_gap=service.on_gap,
        # Checkpoints must see every batch's output acknowledged: one batch in flight at a time.
        max_in_flight=1,
    )
    loop.batch_size = service.limits.batch_size
    # Publish at start too: a crash between checkpoint and publish, or a new broker, leaves inference behind.
    service.publish(force=True)
    try:
        loop.run(ctx.stop)
    finally:
        feed.stop()
        service.checkpoint()
        service.publish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
