"""A stream's routing inputs are gathered once for the sessions that open together, and again
once they are older than the TTL (viewers/routing_inputs.py)."""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace

import pytest

from streamr_coordinator.nodes.relays import RelayCandidate
from streamr_coordinator.viewers import routing_inputs
from streamr_coordinator.viewers.routing import order_sources
from streamr_coordinator.viewers.routing_inputs import RoutingInputs, RoutingInputsCache


class Gatherer:
    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.release.set()
        self.fail = False

    async def __call__(self) -> RoutingInputs:
        self.calls += 1
        await self.release.wait()
        if self.fail:
            raise ConnectionRefusedError("database away")
        node = RelayCandidate(f"node-{self.calls}", "http://192.0.2.1:8080", 0, 0, None)
        return RoutingInputs(candidates=[node], signals={})


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    clock = SimpleNamespace(now=100.0)
    monkeypatch.setattr(routing_inputs, "time", SimpleNamespace(monotonic=lambda: clock.now))
    return clock


def test_sessions_opening_together_share_one_gathering(clock):
    async def scenario() -> None:
        cache, gather = RoutingInputsCache(ttl_s=1.0), Gatherer()
        gather.release.clear()
        waiting = [asyncio.create_task(cache.get("stream", gather)) for _ in range(50)]
        await asyncio.sleep(0)
        gather.release.set()
        results = await asyncio.gather(*waiting)
        assert gather.calls == 1 and all(r is results[0] for r in results)
        # Another stream is its own.
        assert (await cache.get("other", gather)).candidates[0].node_id == "node-2"

    asyncio.run(scenario())


def test_inputs_are_reused_for_the_ttl_then_gathered_again(clock):
    async def scenario() -> None:
        cache, gather = RoutingInputsCache(ttl_s=1.0), Gatherer()
        first = await cache.get("stream", gather)
        clock.now += 0.9
        assert await cache.get("stream", gather) is first
        clock.now += 0.2
        again = await cache.get("stream", gather)
        assert again is not first and gather.calls == 2

    asyncio.run(scenario())


def test_a_zero_ttl_gathers_for_every_session(clock):
    async def scenario() -> None:
        cache, gather = RoutingInputsCache(ttl_s=0), Gatherer()
        for _ in range(3):
            await cache.get("stream", gather)
        assert gather.calls == 3

    asyncio.run(scenario())


def test_a_failed_gathering_fails_its_waiters_and_is_not_kept(clock):
    async def scenario() -> None:
        cache, gather = RoutingInputsCache(ttl_s=1.0), Gatherer()
        gather.fail = True
        gather.release.clear()
        waiting = [asyncio.create_task(cache.get("stream", gather)) for _ in range(3)]
        await asyncio.sleep(0)
        gather.release.set()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(r, ConnectionRefusedError) for r in results)
        gather.fail = False
        assert (await cache.get("stream", gather)).candidates and gather.calls == 2

    asyncio.run(scenario())


def test_a_viewer_giving_up_does_not_cancel_the_gathering_for_the_others(clock):
    async def scenario() -> None:
        cache, gather = RoutingInputsCache(ttl_s=1.0), Gatherer()
        gather.release.clear()
        impatient = asyncio.create_task(cache.get("stream", gather))
        patient = asyncio.create_task(cache.get("stream", gather))
        await asyncio.sleep(0)
        impatient.cancel()
        await asyncio.sleep(0)
        gather.release.set()
        assert (await patient).candidates
        assert impatient.cancelled() and gather.calls == 1

    asyncio.run(scenario())


# ---------------------------------------------------------------- viewers arriving together


def capped(node_id: str, cap_bps: int, egress_bps: int = 0, connections: int = 0) -> RelayCandidate:
    return RelayCandidate(node_id, f"http://{node_id}.example", connections, egress_bps, cap_bps)


def crowd(cache: RoutingInputsCache, gather, viewers: int) -> Counter[str]:
    """Where ``viewers`` new sessions of one stream are sent first, one after another."""

    async def scenario() -> Counter[str]:
        first: Counter[str] = Counter()
        for _ in range(viewers):
            inputs = await cache.get("stream", gather)
            [best, *_] = order_sources(inputs.candidates, "http://origin", signals=inputs.signals)
            assert best.node_id is not None
            first[best.node_id] += 1
            cache.sent("stream", best.node_id)
        return first

    return asyncio.run(scenario())


def fixed(*candidates: RelayCandidate):
    async def gather() -> RoutingInputs:
        return RoutingInputs(candidates=list(candidates), signals={})

    return gather


def test_viewers_arriving_together_spread_over_the_nodes_by_their_room(clock):
    # Both idle, so no node reports a viewer's egress yet: 3 Mbit/s each is assumed. 30 viewers
    # need 90 Mbit/s: the roomier node takes more, neither is pushed past its cap.
    big, small = capped("big", 60_000_000), capped("small", 30_000_000)
    first = crowd(RoutingInputsCache(ttl_s=1.0), fixed(big, small), 30)
    assert first == {"big": 20, "small": 10}


def test_a_viewers_share_comes_from_what_the_nodes_report():
    busy = capped("a", 100_000_000, egress_bps=10_000_000, connections=4)
    idle = capped("b", 100_000_000)
    assert routing_inputs.viewer_bps([busy, idle]) == 2_500_000
    assert routing_inputs.viewer_bps([idle]) == routing_inputs.DEFAULT_VIEWER_BPS


def test_sessions_sent_count_for_a_heartbeat_interval_then_the_nodes_own_load_rules(clock):
    cache = RoutingInputsCache(ttl_s=1.0, sent_window_s=5.0)
    gather = fixed(capped("a", 20_000_000), capped("b", 10_000_000))
    assert crowd(cache, gather, 4) == {"a": 4}  # a: 8 Mbit/s of room left, b: 10
    assert crowd(cache, gather, 1) == {"b": 1}
    clock.now += 5.1  # the nodes' next heartbeats carry their real load
    assert crowd(cache, gather, 1) == {"a": 1}


def test_with_a_zero_ttl_every_session_sees_the_nodes_as_reported(clock):
    gather = fixed(capped("a", 20_000_000), capped("b", 10_000_000))
    assert crowd(RoutingInputsCache(ttl_s=0), gather, 6) == {"a": 6}
