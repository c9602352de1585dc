"""Run the validation service: ``python -m services.validation``."""

from __future__ import annotations

import sys

from services.validation.handlers import ValidateBatch
from shared.service import bootstrap


def main() -> int:
    ctx = bootstrap("validation")
    loop = ctx.stream_loop(ctx.topics("events"), ValidateBatch(ctx.contracts))
    loop.run(ctx.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
