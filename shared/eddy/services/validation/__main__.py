"""Run the validation service: ``python -m eddy.services.validation``."""

from __future__ import annotations

import sys

from eddy.runtime.service import bootstrap
from eddy.services.validation.config import validation_config
from eddy.services.validation.fastlane import FastValidation
from eddy.services.validation.handlers import ValidateBatch
from eddy.services.validation.reference import published_references


def main() -> int:
    ctx = bootstrap("validation")
    config = validation_config()
    handler = ValidateBatch(ctx.contracts, config)
    references = ctx.until_authorized(
        lambda: published_references(ctx.settings, ctx.serdes, list(ctx.contracts)), "read the reference profiles"
    )
    for stream, record in references.items():
        handler.profiles[stream].restore_reference(record)
    events = ctx.topics("events")
    lane = None
    if config.fast_lane:
        lane = FastValidation(handler, {topic: ctx.serdes.schema_id(topic) for topic in events})
    ctx.health.set(fast_lane=lane.streams if lane else [])
    loop = ctx.stream_loop(events, handler, fast_lane=lane)
    loop.run(ctx.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
