"""Run the inference service: ``python -m services.inference``."""

from __future__ import annotations

import sys

from services.inference.handlers import PredictBatch, ServingModel
from services.inference.snapshots import SnapshotWatcher
from shared.service import bootstrap


def main() -> int:
    ctx = bootstrap("inference")
    models = {name: ServingModel.fresh(contract) for name, contract in ctx.contracts.items()}
    watcher = SnapshotWatcher(ctx.settings, ctx.contracts, ctx.serdes, models)
    watcher.start()
    loop = ctx.stream_loop(ctx.topics("validated"), PredictBatch(ctx.contracts, models))
    try:
        loop.run(ctx.stop)
    finally:
        watcher.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
