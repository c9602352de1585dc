"""Run the ingestion service: ``python -m eddy.services.ingestion``.

Two doors in one process: the HTTP gateway, and the Kafka bridge from ``S.raw``
(JSON) to ``S.events`` (Avro), in a thread beside it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading

from aiohttp import web
from confluent_kafka import Producer

from eddy.kafka.client import producer_config
from eddy.runtime.auth import ApiKeys
from eddy.runtime.service import bootstrap
from eddy.services.ingestion.app import Gateway
from eddy.services.ingestion.bridge import BridgeRaw
from eddy.services.ingestion.config import ingestion_config

log = logging.getLogger("eddy.services.ingestion")


def main() -> int:
    # The gateway serves /metrics and /healthz from its own app, on its own port.
    ctx = bootstrap("ingestion", serve=False)
    config = ingestion_config()
    pii_key = ctx.settings.pii_key.encode()
    producer = Producer(producer_config(ctx.settings, **{"queue.buffering.max.messages": config.queue_max + 10_000}))
    gateway = Gateway(ctx.contracts, ctx.serdes, producer, ctx.health, config, ApiKeys.from_env(), pii_key)
    bridge = ctx.stream_loop(ctx.topics("raw"), BridgeRaw(ctx.contracts, pii_key))
    bridge_thread = threading.Thread(target=bridge.run, args=(ctx.stop,), name="bridge")
    bridge_thread.start()
    try:
        asyncio.run(_serve(gateway, ctx.settings.http_host, ctx.settings.http_port, ctx.stop))
    finally:
        ctx.stop.set()
        bridge_thread.join(30)
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
