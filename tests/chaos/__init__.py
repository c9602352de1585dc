"""Jepsen-style fault runs of the whole embedded stack.

- ``load``: a seeded, bounded, constant-rate load through the real ingestion paths (HTTP gateway and a
  direct producer to ``S.events``), labels too, with a known share of invalid events.
- ``faults``: a seeded fault plan (SIGKILL, SIGTERM, SIGSTOP/SIGCONT on every service, both registries
  included) and the scheduler that applies it to a running stack.
- ``checker``: reads the stream's topics to their end and counts, per event id, what was lost,
  duplicated, never learned or out of order; prints the verdict table.
- ``harness``: one run: stack up, load and faults together, settle, check, stack down.

``tests/chaos/test_chaos.py`` is the short run CI does; ``python -m bench.chaos`` the long one
(``docs/reliability.md``).
"""
