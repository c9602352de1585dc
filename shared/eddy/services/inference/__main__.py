"""Run the inference service: ``python -m eddy.services.inference``.

Two doors in one process: the stream loop from S.validated in the main thread, and the synchronous
prediction API (``http.py``) in a thread beside it, both answering with the same serving models.
"""

from __future__ import annotations

import sys

from eddy.runtime.service import bootstrap
from eddy.services.inference.config import inference_config
from eddy.services.inference.handlers import PredictBatch, fresh_models
from eddy.services.inference.http import start_predict_api
from eddy.services.inference.snapshots import SnapshotWatcher


def main() -> int:
    ctx = bootstrap("inference")
    models = fresh_models(ctx.contracts)
    watcher = SnapshotWatcher(ctx.settings, ctx.contracts, ctx.serdes, models, ctx.keys, ctx.health)
    watcher.start()
    loop = ctx.stream_loop(ctx.topics("validated"), PredictBatch(ctx.contracts, models))
    api = start_predict_api(ctx, PredictBatch(ctx.contracts, models), inference_config())
    try:
        loop.run(ctx.stop)
    finally:
        api.stop()
        watcher.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
