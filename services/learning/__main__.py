"""Run the learning service: ``python -m services.learning`` (see runner.py for how it stays exact)."""

from __future__ import annotations

import sys

from services.learning.runner import LearningService
from shared.loop import StreamLoop
from shared.service import bootstrap


def main() -> int:
    ctx = bootstrap("learning", background=True)
    service = LearningService(ctx)
    loop: StreamLoop
    loop = ctx.stream_loop(
        ctx.topics("predictions") + ctx.topics("feedback"),
        service.handle,
        on_assign=service.on_assign,
        on_batch_done=lambda offsets: service.on_batch_done(offsets, loop),
        on_idle=service.on_idle,
        # Checkpoints must see every batch's output acknowledged: one batch in flight at a time.
        max_in_flight=1,
    )
    # Publish at start too: a crash between checkpoint and publish, or a new broker, leaves inference behind.
    service.publish(force=True)
    try:
        loop.run(ctx.stop)
    finally:
        service.checkpoint()
        service.publish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
