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

That age is also why the cache remembers where it sent each new session for a heartbeat
interval: viewers who arrive together would otherwise all be sent to the one best node, whose
reported load cannot show them before its next beat (and whose egress cap the crowd could
overrun many times). Each session sent counts as one more connection and a viewer's share of
egress (``viewer_bps``) on that node until then, so the next viewers spread over the others.
A TTL of 0 turns both off: every session is routed from fresh inputs alone.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

from ..nodes.relays import RelayCandidate
from .routing import NodeSignals

MAX_STREAMS = 10_000  # entries kept; past it the cache starts afresh (simple, and rare)
DEFAULT_VIEWER_BPS = 3_000_000  # a viewer's egress while no node reports any (about 720p)


@dataclass(frozen=True)
class RoutingInputs:
    candidates: list[RelayCandidate]
    signals: Mapping[str, NodeSignals]


def viewer_bps(candidates: list[RelayCandidate]) -> int:
    """What one viewer costs a node, from what the nodes report: egress per connection."""
    serving = [c for c in candidates if c.connections > 0 and c.egress_bps > 0]
    if not serving:
        return DEFAULT_VIEWER_BPS
    return sum(c.egress_bps for c in serving) // sum(c.connections for c in serving)


def with_sent(candidates: list[RelayCandidate], sent: Mapping[str, int]) -> list[RelayCandidate]:
    """The candidates with the sessions sent to them lately counted into their load."""
    if not sent:
        return candidates
    share = viewer_bps(candidates)
    return [
        replace(c, connections=c.connections + n, egress_bps=c.egress_bps + n * share)
        if (n := sent.get(c.node_id))
        else c
        for c in candidates
    ]


Gather = Callable[[], Awaitable[RoutingInputs]]


class RoutingInputsCache:
    """A stream's routing inputs for ``ttl_s``; concurrent misses of one stream share a gather;
    the sessions sent to each node in the last ``sent_window_s`` count into its load."""

    def __init__(self, ttl_s: float, sent_window_s: float = 5.0) -> None:
        self._ttl_s = ttl_s
        self._sent_window_s = sent_window_s
        self._entries: dict[str, tuple[float, RoutingInputs]] = {}
        self._gathering: dict[str, asyncio.Task[RoutingInputs]] = {}
        # Per stream: (when, node) of each session sent lately, oldest first, and their count
        # per node (kept in step, so a crowd costs each session O(1), not O(crowd)).
        self._sent: dict[str, tuple[deque[tuple[float, str]], Counter[str]]] = {}

    async def get(self, stream_id: str, gather: Gather) -> RoutingInputs:
        """The stream's inputs, the sessions sent lately counted into the candidates' load."""
        if self._ttl_s <= 0:  # off: every session gathers its own, as fresh as can be
            return await gather()
        entry = self._entries.get(stream_id)
        if entry is not None and entry[0] > time.monotonic():
            inputs = entry[1]
        else:
            task = self._gathering.get(stream_id)
            if task is None:
                task = asyncio.create_task(self._gather(stream_id, gather))
                task.add_done_callback(_retrieved)
                self._gathering[stream_id] = task
            # Shielded: one viewer giving up does not cancel the gathering the others wait for.
            inputs = await asyncio.shield(task)
        sent = self._sent_lately(stream_id)
        if not sent:
            return inputs
        return RoutingInputs(with_sent(inputs.candidates, sent), inputs.signals)

    def sent(self, stream_id: str, node_id: str | None) -> None:
        """A session was sent to ``node_id`` first (None: the origin, not counted): count it
        until the node's load can show it."""
        if self._ttl_s <= 0 or node_id is None:
            return
        if stream_id not in self._sent and len(self._sent) >= MAX_STREAMS:
            self._sent.clear()
        recent, counts = self._sent.setdefault(stream_id, (deque(), Counter()))
        recent.append((time.monotonic(), node_id))
        counts[node_id] += 1

    def _sent_lately(self, stream_id: str) -> Counter[str]:
        if stream_id not in self._sent:
            return Counter()
        recent, counts = self._sent[stream_id]
        since = time.monotonic() - self._sent_window_s
        while recent and recent[0][0] < since:
            _, node_id = recent.popleft()
            counts[node_id] -= 1
            if not counts[node_id]:
                del counts[node_id]
        if not recent:
            del self._sent[stream_id]
        return counts

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
