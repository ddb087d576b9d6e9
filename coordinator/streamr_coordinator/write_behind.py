"""Writes collected for a moment and sent as one batch, off the request that caused them.

Heartbeats and the like arrive a thousand a second; giving each its own round trip (a database
transaction, a Redis command) costs more than the request itself. A ``WriteBehind`` keeps the
newest value per key and, ``delay_s`` after the first of a burst, hands the whole batch to its
``write`` function: presence to Redis, last-seen times and node networks to the database. What
to do when a write fails is the writer's business (retry with the next batch, or let the next
sighting bring it back).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, TypeVar

log = logging.getLogger("streamr.write_behind")


K = TypeVar("K")
V = TypeVar("V")


class WriteBehind(Generic[K, V]):
    def __init__(
        self, name: str, write: Callable[[dict[K, V]], Awaitable[None]], delay_s: float
    ) -> None:
        self._name = name
        self._write = write
        self._delay_s = delay_s
        self._pending: dict[K, V] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def put(self, key: K, value: V) -> None:
        """Write ``value`` for ``key`` with the next batch (a newer value replaces an older)."""
        self._pending[key] = value
        if self._flusher is None or self._flusher.done():
            # A context of its own: the flush serves many requests, not the one that started it
            # (whose request id would otherwise be on its log lines).
            self._flusher = asyncio.create_task(self._flush_soon(), context=contextvars.Context())

    def put_back(self, batch: Mapping[K, V]) -> None:
        """A failed batch, for the next flush; values that arrived meanwhile are newer and win."""
        for key, value in batch.items():
            self._pending.setdefault(key, value)

    def discard(self, key: K) -> None:
        self._pending.pop(key, None)

    async def flush(self) -> None:
        """Write what is pending now; the writer's errors reach the caller."""
        async with self._lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, {}
            await self._write(batch)

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self._delay_s)
        try:
            await self.flush()
        except Exception as exc:  # nobody awaits this task: say so here
            log.warning(
                "write behind: a batch was not written",
                extra={"writer": self._name, "error": type(exc).__name__},
            )

    async def drain(self) -> None:
        """Write what is pending (at shutdown, and in tests)."""
        self.stop()
        await self.flush()

    def stop(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
