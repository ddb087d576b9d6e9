"""A stream's routing inputs are gathered once for the sessions that open together, and again
once they are older than the TTL (viewers/routing_inputs.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from streamr_coordinator.nodes.relays import RelayCandidate
from streamr_coordinator.viewers import routing_inputs
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
