"""Run the ingestion gateway: ``python -m services.ingestion``."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading

from aiohttp import web
from confluent_kafka import Producer

from services.ingestion.app import Gateway
from shared.kafka import producer_config
from shared.service import bootstrap

log = logging.getLogger("services.ingestion")


def main() -> int:
    # The gateway serves /metrics and /healthz from its own app, on its own port.
    ctx = bootstrap("ingestion", serve=False)
    producer = Producer(producer_config(ctx.settings, **{"queue.buffering.max.messages": 200_000}))
    gateway = Gateway(ctx.contracts, ctx.serdes, producer, ctx.health)
    asyncio.run(_serve(gateway, ctx.settings.http_host, ctx.settings.http_port, ctx.stop))
    return 0


async def _serve(gateway: Gateway, host: str, port: int, stop: threading.Event) -> None:
    runner = web.AppRunner(gateway.app(), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("serving", extra={"url": f"http://{host}:{port}"})
    while not stop.is_set():
        await asyncio.sleep(0.2)
    await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
