"""Run the validation service: ``python -m services.validation``."""

from __future__ import annotations

import sys

from services.validation.handlers import ValidateBatch
from shared.loop import StreamLoop
from shared.service import bootstrap


def main() -> int:
    ctx = bootstrap("validation")
    loop = StreamLoop(
        service="validation",
        consumer=ctx.consumer("eddy-validation"),
        producer=ctx.producer,
        serdes=ctx.serdes,
        topics=ctx.topics("events"),
        handler=ValidateBatch(ctx.contracts),
        batch_size=ctx.settings.batch_size,
        batch_timeout_s=ctx.settings.batch_timeout_s,
        health=ctx.health,
    )
    loop.run(ctx.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
