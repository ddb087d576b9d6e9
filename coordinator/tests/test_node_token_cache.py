"""The node-token cache: how long an entry is trusted, and one database lookup per token at once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from streamr_coordinator.credentials import secret_hash
from streamr_coordinator.nodes import auth
from streamr_coordinator.nodes.auth import (
    NodeIdentity,
    NodeTokenCache,
    SharedTokenCache,
    lookup_node_token,
)
from tests.servers import free_port

NODE = NodeIdentity(node_id="node-1", stream_id="stream-1", owner_id="owner-1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The cache's clock only: Redis clients and the event loop keep the real one."""
    clock = Clock()
    monkeypatch.setattr(auth, "time", SimpleNamespace(monotonic=clock))
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
    asyncio.run(cache.forget_node("node-1"))
    assert cache.get("hash") is None


def test_concurrent_misses_share_one_lookup():
    async def scenario():
        cache = NodeTokenCache(ttl_s=10)
        queries = 0
        release = asyncio.Event()

        async def query(hashes: Sequence[str]) -> dict[str, NodeIdentity]:
            nonlocal queries
            queries += 1
            await release.wait()
            return dict.fromkeys(hashes, NODE)

        waiters = [asyncio.create_task(cache.load("hash", query)) for _ in range(5)]
        await asyncio.sleep(0)
        release.set()
        assert await asyncio.gather(*waiters) == [NODE] * 5
        assert queries == 1
        assert cache.get("hash") == NODE

    asyncio.run(scenario())


def test_misses_of_many_tokens_at_once_share_one_query():
    """A replica's first beats after a start: thousands of tokens, a few queries."""

    async def scenario():
        cache = NodeTokenCache(ttl_s=10)
        asked: list[int] = []
        nodes = {f"hash-{i}": NodeIdentity(f"node-{i}", "stream-1", "owner-1") for i in range(1200)}

        async def query(hashes: Sequence[str]) -> dict[str, NodeIdentity]:
            asked.append(len(hashes))
            await asyncio.sleep(0.01)
            return {h: nodes[h] for h in hashes if h in nodes}

        wanted = [*nodes, "unknown", "hash-7"]
        found = await asyncio.gather(*(cache.load(h, query) for h in wanted))
        assert found == [*nodes.values(), None, nodes["hash-7"]]
        # Each query at most BATCH_MAX tokens, every token asked once (hash-7 waited).
        assert sorted(asked) == [200 + 1, auth.BATCH_MAX, auth.BATCH_MAX]
        assert all(cache.get(h) == n for h, n in nodes.items())

    asyncio.run(scenario())


def test_an_unknown_token_is_not_cached():
    async def scenario():
        cache = NodeTokenCache(ttl_s=10)
        queries = 0

        async def query(hashes: Sequence[str]) -> dict[str, NodeIdentity]:
            nonlocal queries
            queries += 1
            return {}

        assert await cache.load("hash", query) is None
        assert await cache.load("hash", query) is None
        assert queries == 2

    asyncio.run(scenario())


def test_a_failed_lookup_fails_every_waiter_and_the_next_miss_retries():
    async def scenario():
        cache = NodeTokenCache(ttl_s=10)
        release = asyncio.Event()

        async def failing(hashes: Sequence[str]) -> dict[str, NodeIdentity]:
            await release.wait()
            raise ConnectionError("database down")

        async def working(hashes: Sequence[str]) -> dict[str, NodeIdentity]:
            return dict.fromkeys(hashes, NODE)

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

        async def query(hashes: Sequence[str]) -> dict[str, NodeIdentity]:
            await release.wait()
            return dict.fromkeys(hashes, NODE)

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


# ---------------------------------------------------------------- the shared tier (Redis)


class Database:
    """Stands in for the nodes table: which token hashes are registered, and how often asked."""

    def __init__(self, token_hash: str) -> None:
        self.registered = {token_hash: NODE}
        self.queries = 0
        self.asked = asyncio.Event()
        self.answer_after: asyncio.Event | None = None

    async def query(self, hashes: Sequence[str]) -> dict[str, NodeIdentity]:
        self.queries += 1
        self.asked.set()
        found = {h: self.registered[h] for h in hashes if h in self.registered}
        if self.answer_after is not None:
            await self.answer_after.wait()  # read before a deregistration, answered after
        return found

    def deregister(self, token_hash: str) -> None:
        del self.registered[token_hash]


def replicas(url: str, prefix: str, count: int = 2) -> tuple[Redis, list[NodeTokenCache]]:
    redis = Redis.from_url(url)
    return redis, [
        NodeTokenCache(ttl_s=10, shared=SharedTokenCache(redis, ttl_s=600, prefix=prefix))
        for _ in range(count)
    ]


def test_a_token_one_replica_looked_up_costs_the_others_no_database_lookup(redis_server):
    token_hash = secret_hash("token one")

    async def scenario() -> None:
        redis, (a, b) = replicas(redis_server, "t1")
        db = Database(token_hash)
        try:
            assert await a.load(token_hash, db.query) == NODE
            assert await b.load(token_hash, db.query) == NODE
            assert db.queries == 1
            assert b.get(token_hash) == NODE  # and b keeps it in process too
            keys = [k.decode() async for k in redis.scan_iter("t1:*")]
            assert f"t1:hash:{token_hash}" in keys
            for key in keys:  # the token itself is never stored, only its hash
                assert "token one" not in key
                value = await redis.get(key) if key.startswith("t1:hash:") else b""
                assert b"token one" not in value
            assert 590_000 < await redis.pttl(f"t1:hash:{token_hash}") <= 600_000
        finally:
            await redis.aclose()

    asyncio.run(scenario())


def test_a_deregistration_on_one_replica_is_honoured_by_another_within_its_ttl(redis_server, clock):
    token_hash = secret_hash("token two")

    async def scenario() -> None:
        redis, (a, b) = replicas(redis_server, "t2")
        db = Database(token_hash)
        try:
            assert await a.load(token_hash, db.query) == NODE
            assert await b.load(token_hash, db.query) == NODE
            db.deregister(token_hash)
            await a.forget_node(NODE.node_id)
            assert a.get(token_hash) is None
            assert await redis.exists(f"t2:hash:{token_hash}", f"t2:node:{NODE.node_id}") == 0
            assert b.get(token_hash) == NODE  # b trusts its own entry for its short TTL...
            clock.now += 10
            assert b.get(token_hash) is None  # ...then asks Redis, which forgot, then the DB
            assert await b.load(token_hash, db.query) is None
            assert db.queries == 2
        finally:
            await redis.aclose()

    asyncio.run(scenario())


def test_a_lookup_under_way_during_a_deregistration_does_not_store_the_token_again(
    redis_server,
):
    """Replica b read the node from the database just before a deregistered it."""
    token_hash = secret_hash("token three")

    async def scenario() -> None:
        redis, (a, b) = replicas(redis_server, "t3")
        db = Database(token_hash)
        db.answer_after = asyncio.Event()
        try:
            lookup = asyncio.create_task(b.load(token_hash, db.query))
            await db.asked.wait()
            db.deregister(token_hash)
            await a.forget_node(NODE.node_id)
            db.answer_after.set()
            assert await lookup is None
            assert b.get(token_hash) is None
            assert await redis.exists(f"t3:hash:{token_hash}") == 0
            db.answer_after = None
            assert await a.load(token_hash, db.query) is None
        finally:
            await redis.aclose()

    asyncio.run(scenario())


def test_without_redis_the_database_answers():
    """A real connection to a port nobody listens on: Redis is away, lookups still work."""
    token_hash = secret_hash("token four")

    async def scenario() -> None:
        redis, (a,) = replicas(f"redis://127.0.0.1:{free_port()}/0", "t4", count=1)
        db = Database(token_hash)
        try:
            assert await a.load(token_hash, db.query) == NODE
            assert a.get(token_hash) == NODE
            assert db.queries == 1
        finally:
            await redis.aclose()

    asyncio.run(scenario())


# ---------------------------------------------------------------- the revocation feed (Redis)


def long_lived(url: str, prefix: str, count: int = 2) -> tuple[Redis, list[NodeTokenCache]]:
    """Replicas that trust their entries for a minute, as a cluster with Redis runs them."""
    redis = Redis.from_url(url)
    return redis, [
        NodeTokenCache(ttl_s=60, shared=SharedTokenCache(redis, ttl_s=600, prefix=prefix))
        for _ in range(count)
    ]


def test_with_redis_a_deregistration_reaches_every_replica_within_a_poll(redis_server, clock):
    token_hash = secret_hash("token five")

    async def scenario() -> None:
        redis, (a, b) = long_lived(redis_server, "t5")
        db = Database(token_hash)
        try:
            for replica in (a, b):
                await replica.sync_revocations()
                assert await replica.load(token_hash, db.query) == NODE
            clock.now += 30
            await b.sync_revocations()
            assert b.get(token_hash) == NODE, "a long TTL while nothing was revoked"
            db.deregister(token_hash)
            await a.forget_node(NODE.node_id)
            clock.now += auth.REVOCATION_POLL_S
            await b.sync_revocations()
            assert b.get(token_hash) is None, "read from the feed, not after the TTL"
            assert await b.load(token_hash, db.query) is None
        finally:
            await redis.aclose()

    asyncio.run(scenario())


def test_while_the_feed_cannot_be_read_entries_last_only_the_short_ttl(clock):

    async def scenario() -> None:
        redis = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
        cache = NodeTokenCache(ttl_s=60, shared=SharedTokenCache(redis, prefix="t6"))
        try:
            await cache.sync_revocations()  # Redis is away: not read, and no error
            cache.put("hash", NODE)
            clock.now += auth.FEED_DOWN_TTL_S - 0.5
            assert cache.get("hash") == NODE
            clock.now += 1
            assert cache.get("hash") is None
        finally:
            await redis.aclose()

    asyncio.run(scenario())


def test_a_lookup_from_redis_under_way_during_a_deregistration_is_not_kept(redis_server, clock):
    """Replica b read the token from Redis just before a deregistered the node, and learnt of
    the deregistration from the feed before its lookup finished."""
    token_hash = secret_hash("token seven")

    async def scenario() -> None:
        redis, (a, b) = long_lived(redis_server, "t7")
        db = Database(token_hash)
        try:
            await a.sync_revocations()
            await b.sync_revocations()
            assert await a.load(token_hash, db.query) == NODE  # now in Redis
            release = asyncio.Event()
            shared_get = b._shared.get_many

            async def slow_get(hashes: Sequence[str]) -> dict[str, NodeIdentity]:
                found = await shared_get(hashes)
                await release.wait()
                return found

            b._shared.get_many = slow_get
            lookup = asyncio.create_task(b.load(token_hash, db.query))
            await asyncio.sleep(0.05)
            db.deregister(token_hash)
            await a.forget_node(NODE.node_id)
            clock.now += auth.REVOCATION_POLL_S
            await b.sync_revocations()
            release.set()
            assert await lookup is None
            assert b.get(token_hash) is None
        finally:
            await redis.aclose()

    asyncio.run(scenario())
