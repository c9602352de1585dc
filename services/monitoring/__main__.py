"""Run the monitoring service: ``python -m services.monitoring``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.monitoring.config import monitor_config
from services.monitoring.handlers import Monitor
from shared.loop import BatchResult, InRecord
from shared.service import bootstrap


def main() -> int:
    ctx = bootstrap("monitoring")
    config = monitor_config()
    monitors = {name: Monitor(contract, config) for name, contract in ctx.contracts.items()}

    def handle(records: Sequence[InRecord]) -> BatchResult:
        result = BatchResult()
        for record in records:
            one = monitors[record.stream]([record])
            result.outputs.extend(one.outputs)
        return result

    topics = ctx.topics("validated") + ctx.topics("predictions") + ctx.topics("labeled")
    loop = ctx.stream_loop(topics, handle)
    loop.run(ctx.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
