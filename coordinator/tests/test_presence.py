"""The presence store contract, run against the in-process store and a real Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from streamr_coordinator.nodes.presence import InProcessPresence, NodePresence, RedisPresence


def presence(node_id: str, stream_id: str = "stream-1", connections: int = 1) -> NodePresence:
    return NodePresence(
        node_id=node_id,
        stream_id=stream_id,
        connections=connections,
        egress_bps=1000,
        egress_cap_bps=None,
        version="1",
        public_url=None,
        last_seen=datetime.now(UTC),
    )


@pytest.fixture(params=["in-process", "redis"])
def make_store(request):
    if request.param == "in-process":
        return InProcessPresence
    url = request.getfixturevalue("redis_server")
    return lambda: RedisPresence(Redis.from_url(url), prefix=f"test:{request.node.name}")


def test_beat_get_and_count(make_store):
    async def scenario():
        store = make_store()
        await store.beat(presence("a", connections=5), ttl_s=10)
        await store.beat(presence("b"), ttl_s=10)
        await store.beat(presence("c", stream_id="other"), ttl_s=10)
        found = await store.get_many(["a", "b", "missing"])
        assert set(found) == {"a", "b"}
        assert found["a"].connections == 5
        assert found["a"].last_seen.tzinfo is not None
        assert sorted(await store.online_in_stream("stream-1")) == ["a", "b"]
        await store.close()

    asyncio.run(scenario())


def test_expiry_and_forget(make_store):
    async def scenario():
        store = make_store()
        await store.beat(presence("short"), ttl_s=0.2)
        await store.beat(presence("long"), ttl_s=10)
        await store.beat(presence("gone"), ttl_s=10)
        await store.forget("gone", "stream-1")
        await asyncio.sleep(0.35)
        assert await store.online_in_stream("stream-1") == ["long"]
        assert set(await store.get_many(["short", "long", "gone"])) == {"long"}
        await store.close()

    asyncio.run(scenario())


def test_a_new_beat_extends_presence(make_store):
    async def scenario():
        store = make_store()
        await store.beat(presence("n", connections=1), ttl_s=0.3)
        await asyncio.sleep(0.2)
        await store.beat(presence("n", connections=2), ttl_s=0.3)
        await asyncio.sleep(0.2)
        found = await store.get_many(["n"])
        assert found["n"].connections == 2
        await store.close()

    asyncio.run(scenario())
