"""Run the retraining service: ``python -m services.retraining``."""

from __future__ import annotations

import sys

from services.retraining.handlers import RequestRetrain
from shared.service import bootstrap


def main() -> int:
    ctx = bootstrap("retraining", background=True)
    loop = ctx.stream_loop(ctx.topics("alerts"), RequestRetrain(ctx.contracts))
    loop.run(ctx.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
