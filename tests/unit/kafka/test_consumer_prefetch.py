"""A service consumer's prefetch is bounded; a bulk read that sizes its own keeps it (see ``consumer_config``)."""

from __future__ import annotations

from confluent_kafka import Consumer
from eddy.core.settings import Settings
from eddy.kafka.client import BULK_READ, consumer_config

# Port 9 on loopback refuses at once: the client is built and checked, never connected.
SETTINGS = Settings(bootstrap_servers="127.0.0.1:9")


def test_service_consumers_prefetch_a_bounded_queue() -> None:
    for background in (False, True):
        conf = consumer_config(SETTINGS, "g", background=background)
        # Far below librdkafka's 100,000 records and 64 MB, which a lagging consumer fills.
        assert conf["queued.min.messages"] == 10_000
        assert conf["queued.max.messages.kbytes"] == 8192
        # A short wait to fetch again once the bound is reached, or a consumer reading a backlog starves.
        assert conf["fetch.queue.backoff.ms"] == 10


def test_a_bulk_read_keeps_the_prefetch_it_asks_for() -> None:
    conf = consumer_config(SETTINGS, "g", **BULK_READ)
    assert conf["queued.min.messages"] == BULK_READ["queued.min.messages"]
    assert "queued.max.messages.kbytes" not in conf and "fetch.queue.backoff.ms" not in conf


def test_an_override_of_one_bound_wins() -> None:
    assert consumer_config(SETTINGS, "g", **{"queued.max.messages.kbytes": 1024})["queued.max.messages.kbytes"] == 1024


def test_librdkafka_accepts_the_bounds() -> None:
    # fetch.max.bytes is cut to the byte bound, which must still hold one record of message.max.bytes (1 MB).
    Consumer(consumer_config(SETTINGS, "g")).close()
    Consumer(consumer_config(SETTINGS, "g", background=True)).close()
