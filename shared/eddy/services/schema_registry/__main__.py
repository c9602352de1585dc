"""Process entry point: ``python -m eddy.services.schema_registry``.

Composition root: settings -> journal recovery -> store -> HTTP server. On
SIGTERM or SIGINT the listener is closed, in-flight requests are finished, the
journal is closed and the process exits 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from .app import create_app
from .app_keys import METRICS
from .config import Settings, parse_settings
from .fastlane import FastLaneServer
from .journal import Journal, JournalError
from .service import RegistryService
from .store import Store, replay

log = logging.getLogger("eddy.services.schema_registry")

_SHUTDOWN_TIMEOUT_S = 10.0


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run the registry until ``stop`` is set or SIGTERM/SIGINT arrives.

    Parameters
    ----------
    settings : Settings
        Where to listen and where the data lives.
    stop : asyncio.Event, optional
        External stop signal (signals also set it).
    """
    stop = stop or asyncio.Event()
    journal = Journal(settings.data_dir)
    ops = journal.open()
    try:
        store = Store()
        replay(store, ops)
        log.info(
            "recovered %d operations from %s (%d schemas, max id %d)",
            len(ops),
            journal.path,
            store.schema_count,
            store.max_id,
        )
        app = create_app(RegistryService(store, journal), max_body_bytes=settings.max_body_bytes)
        # Startup objects (imports, recovered state) live for the whole process;
        # freezing them keeps full GC passes from rescanning them under load.
        gc.collect()
        gc.freeze()
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        assert runner.server is not None
        # Lookups by id are answered in front of aiohttp; every other request goes through it (fastlane.py).
        front = FastLaneServer(store, app[METRICS], runner.server)
        port = await front.start(settings.host, settings.port)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        log.info("schema registry listening on http://%s:%d", settings.host, port)
        try:
            await stop.wait()
        finally:
            log.info("schema registry shutting down")
            await front.stop()
            await runner.cleanup()
    finally:
        journal.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse settings, run the server and return the process exit code."""
    settings = parse_settings(argv)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        asyncio.run(serve(settings))
    except JournalError as exc:
        log.error("%s", exc)
        return 1
    except OSError as exc:
        log.error("cannot start schema registry: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
