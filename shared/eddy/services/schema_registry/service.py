"""Composition of the in-memory store with the journal: the write path.

Reads go straight to :class:`~.store.Store`. Writes are serialised by an
asyncio lock: the store plans the change against current state, the journal
makes it durable (``fsync`` in a worker thread so readers keep being served),
and only then is it applied to memory and acknowledged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from . import errors
from .journal import Journal, JournalError
from .store import Outcome, Store

T = TypeVar("T")


class RegistryService:
    """The store plus its durability.

    Parameters
    ----------
    store : Store
        State, already recovered from the journal.
    journal : Journal
        An open journal.
    """

    def __init__(self, store: Store, journal: Journal) -> None:
        self.store = store
        self._journal = journal
        self._write_lock = asyncio.Lock()

    async def write(self, plan: Callable[[Store], Outcome[T]]) -> T:
        """Plan, persist and apply one change atomically with respect to other writes.

        Parameters
        ----------
        plan : callable
            Receives the store and returns an :class:`Outcome` (may raise
            :class:`~.errors.RegistryError` to reject the request).

        Returns
        -------
        T
            The outcome's result, once durable and applied.

        Raises
        ------
        RegistryError
            From ``plan``, or 50001 if the journal write fails.
        """
        async with self._write_lock:
            outcome = plan(self.store)
            if outcome.ops:
                ops = list(outcome.ops)
                try:
                    await asyncio.get_running_loop().run_in_executor(None, self._journal.append, ops)
                except JournalError as exc:
                    raise errors.store_error(f"Error while writing to the registry journal: {exc}") from exc
                for op in ops:
                    self.store.apply(op)
            return outcome.result
