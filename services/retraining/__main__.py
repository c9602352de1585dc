"""Run the retraining service: ``python -m services.retraining``."""

from __future__ import annotations

import sys

from services.retraining.handlers import RequestRetrain
from shared.loop import StreamLoop
from shared.service import bootstrap


def main() -> int:
    ctx = bootstrap("retraining")
    loop = StreamLoop(
        service="retraining",
        consumer=ctx.consumer("eddy-retraining"),
        producer=ctx.producer,
        serdes=ctx.serdes,
        topics=ctx.topics("alerts"),
        handler=RequestRetrain(ctx.contracts),
        batch_size=ctx.settings.batch_size,
        batch_timeout_s=ctx.settings.batch_timeout_s,
        health=ctx.health,
    )
    loop.run(ctx.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
