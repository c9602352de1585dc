"""How eddy's services set Python's cyclic garbage collector: for a stream loop, not for an interactive script.

CPython frees almost everything by reference counting; the cyclic collector only finds cycles. It starts a
young collection every 700 new container objects, and a full one, which walks every tracked object, once
enough survivors have piled up. A stream loop allocates several objects per record (the decoded value, its
record, the output) and holds tens of thousands of long-lived ones (the learner's join state and learned ids,
the models): so it collected hundreds of times a second, and each full collection walked the whole join
state. Measured on the learning handler alone (``python -m bench.bench_learning --handler-alone``), for
``StandardScaler | LogisticRegression``: 79,000-84,000 labels/s under CPython's settings, 167,000-182,000 under
these (docs/benchmarks.md, "Learning at scale").

So a service collects young objects every ``YOUNG_THRESHOLD`` allocations (a few batches' worth) instead, and
after start-up it moves everything it imported and built (modules, river, pandas, its contracts) to the
permanent generation (``gc.freeze``), which full collections never walk again. Cycles are still found; the
memory they hold just waits a little longer.

Examples
--------
>>> import gc
>>> saved = gc.get_threshold()
>>> tune_for_streaming(freeze=False)
>>> gc.get_threshold() == (YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
True
>>> gc.set_threshold(*saved)
"""

from __future__ import annotations

import gc

# Container allocations between young collections (CPython's default: 700).
YOUNG_THRESHOLD = 50_000
# Young collections between middle ones, and middle ones between full ones (CPython's: 10 and 10).
MIDDLE_THRESHOLD = 20
OLD_THRESHOLD = 20


def tune_for_streaming(freeze: bool = True) -> None:
    """Collect cycles at a stream loop's pace; with ``freeze``, leave what exists now out of every collection."""
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    if freeze:
        gc.collect()
        gc.freeze()
