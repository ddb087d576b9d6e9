"""The node-token cache: how long an entry is trusted, and one database lookup per token at once."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from streamr_coordinator.credentials import secret_hash
from streamr_coordinator.nodes import auth
from streamr_coordinator.nodes.auth import NodeIdentity, NodeTokenCache, lookup_node_token
from tests.servers import free_port

NODE = NodeIdentity(node_id="node-1", stream_id="stream-1", owner_id="owner-1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(auth.time, "monotonic", clock)
    return clock


def test_an_entry_is_trusted_for_most_of_the_ttl_and_never_beyond_it(clock):
    for _ in range(50):  # the lifetime is random, so try many
        cache = NodeTokenCache(ttl_s=10)
        cache.put("hash", NODE)
        clock.now += 7.9
        assert cache.get("hash") == NODE
        clock.now += 2.1  # 10 s after the lookup
        assert cache.get("hash") is None
        clock.now -= 10


def test_a_zero_ttl_caches_nothing():
    cache = NodeTokenCache(ttl_s=0)
    cache.put("hash", NODE)
    assert cache.get("hash") is None


def test_forgetting_a_node_drops_its_entries():
    cache = NodeTokenCache(ttl_s=10)
    cache.put("hash", NODE)
    cache.forget_node("node-1")
    assert cache.get("hash") is None


def test_concurrent_misses_share_one_lookup():
    async def scenario():
        cache = NodeTokenCache(ttl_s=10)
        queries = 0
        release = asyncio.Event()

        async def query() -> NodeIdentity | None:
            nonlocal queries
            queries += 1
            await release.wait()
            return NODE

        waiters = [asyncio.create_task(cache.load("hash", query)) for _ in range(5)]
        await asyncio.sleep(0)
        release.set()
        assert await asyncio.gather(*waiters) == [NODE] * 5
        assert queries == 1
        assert cache.get("hash") == NODE

    asyncio.run(scenario())


def test_an_unknown_token_is_not_cached():
    async def scenario():
        cache = NodeTokenCache(ttl_s=10)
        queries = 0

        async def query() -> NodeIdentity | None:
            nonlocal queries
            queries += 1
            return None

        assert await cache.load("hash", query) is None
        assert await cache.load("hash", query) is None
        assert queries == 2

    asyncio.run(scenario())


def test_a_failed_lookup_fails_every_waiter_and_the_next_miss_retries():
    async def scenario():
        cache = NodeTokenCache(ttl_s=10)
        release = asyncio.Event()

        async def failing() -> NodeIdentity | None:
            await release.wait()
            raise ConnectionError("database down")

        async def working() -> NodeIdentity | None:
            return NODE

        waiters = [asyncio.create_task(cache.load("hash", failing)) for _ in range(3)]
        await asyncio.sleep(0)
        release.set()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results)
        assert await cache.load("hash", working) == NODE

    asyncio.run(scenario())


def test_a_waiter_that_gives_up_does_not_cancel_the_lookup_for_the_others():
    async def scenario():
        cache = NodeTokenCache(ttl_s=10)
        release = asyncio.Event()

        async def query() -> NodeIdentity | None:
            await release.wait()
            return NODE

        impatient = asyncio.create_task(cache.load("hash", query))
        patient = asyncio.create_task(cache.load("hash", query))
        await asyncio.sleep(0)
        impatient.cancel()
        await asyncio.sleep(0)
        release.set()
        assert await patient == NODE
        assert impatient.cancelled()

    asyncio.run(scenario())


def test_while_the_database_is_away_a_known_token_is_accepted_for_a_while(clock):
    """A real connection to a port nobody listens on: the lookup fails as during a restart."""

    async def scenario() -> None:
        engine = create_async_engine(f"postgresql+asyncpg://u:p@127.0.0.1:{free_port()}/db")
        sessions = async_sessionmaker(engine)
        cache = NodeTokenCache(ttl_s=10)
        cache.put(secret_hash("known token"), NODE)
        clock.now += 60  # long expired: a fresh lookup is due, and the database is away
        try:
            assert await lookup_node_token(sessions, "known token", cache) == NODE
            with pytest.raises(ConnectionRefusedError):  # never seen: nothing to fall back on
                await lookup_node_token(sessions, "unknown token", cache)
            clock.now += auth.STALE_IF_DOWN_S  # known, but too long ago
            with pytest.raises(ConnectionRefusedError):
                await lookup_node_token(sessions, "known token", cache)
        finally:
            await engine.dispose()

    asyncio.run(scenario())
