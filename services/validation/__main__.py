"""Run the validation service: ``python -m services.validation``."""

from __future__ import annotations

import sys

from services.validation.config import validation_config
from services.validation.handlers import ValidateBatch
from services.validation.reference import published_references
from shared.service import bootstrap


def main() -> int:
    ctx = bootstrap("validation")
    handler = ValidateBatch(ctx.contracts, validation_config())
    for stream, record in published_references(ctx.settings, ctx.serdes, list(ctx.contracts)).items():
        handler.profiles[stream].restore_reference(record)
    loop = ctx.stream_loop(ctx.topics("events"), handler)
    loop.run(ctx.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
