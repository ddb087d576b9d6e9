"""What routing knows about a stream's nodes, gathered at most once a second per replica.

Routing a viewer needs the stream's present, reachable nodes with their load
(``relay_candidates``) and what viewers and probes said of them lately (``node_signals``). For a
stream with thousands of relays that is thousands of rows and several aggregates over recent
receipts, tens of milliseconds, and viewers arrive together (a stream going live, a raid): 500
sessions opened at once kept both replicas of bench/load busy for twenty seconds. So a replica
keeps a stream's inputs for ``STREAMR_ROUTING_INPUTS_TTL_S`` (1 s by default), and the sessions
that open meanwhile share them; what is particular to a session (the node it sticks to, the
nodes it failed with) is still applied per session by ``order_sources``. A second is well inside
what routing lives with anyway: a node's load is as old as its last heartbeat (5 s apart).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from ..nodes.relays import RelayCandidate
from .routing import NodeSignals

MAX_STREAMS = 10_000  # entries kept; past it the cache starts afresh (simple, and rare)


@dataclass(frozen=True)
class RoutingInputs:
    candidates: list[RelayCandidate]
    signals: Mapping[str, NodeSignals]


Gather = Callable[[], Awaitable[RoutingInputs]]


class RoutingInputsCache:
    """A stream's routing inputs for ``ttl_s``; concurrent misses of one stream share a gather."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, RoutingInputs]] = {}
        self._gathering: dict[str, asyncio.Task[RoutingInputs]] = {}

    async def get(self, stream_id: str, gather: Gather) -> RoutingInputs:
        if self._ttl_s <= 0:  # off: every session gathers its own, as fresh as can be
            return await gather()
        entry = self._entries.get(stream_id)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        task = self._gathering.get(stream_id)
        if task is None:
            task = asyncio.create_task(self._gather(stream_id, gather))
            task.add_done_callback(_retrieved)
            self._gathering[stream_id] = task
        # Shielded: one viewer giving up does not cancel the gathering the others wait for.
        return await asyncio.shield(task)

    async def _gather(self, stream_id: str, gather: Gather) -> RoutingInputs:
        started = time.monotonic()
        try:
            inputs = await gather()
        finally:
            del self._gathering[stream_id]
        if len(self._entries) >= MAX_STREAMS:
            self._entries.clear()
        self._entries[stream_id] = (started + self._ttl_s, inputs)
        return inputs


def _retrieved(task: asyncio.Task[RoutingInputs]) -> None:
    if not task.cancelled():
        task.exception()  # every waiter still there gets it; none left is no error
