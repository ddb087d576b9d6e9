"""Targeted probes asked for by the API, run by the prober (a worker job).

A viewer's ``mismatch`` receipt arrives at any replica, but probes run in the worker that holds
the prober's lease: the request is put where that worker finds it — a Redis set shared by every
process in production, a set in this process on one machine (where the worker's jobs run in the
coordinator itself). A set, because many viewers reporting one node ask for one probe. A request
taken by a worker that then dies is lost; the node's next random probe and the viewers' two-
session rule still catch it.
"""

from __future__ import annotations

from typing import Protocol

from redis.asyncio import Redis


class ProbeRequests(Protocol):
    async def add(self, node_id: str) -> None: ...

    async def take(self, count: int) -> list[str]: ...


class InProcessProbeRequests:
    def __init__(self) -> None:
        self._nodes: set[str] = set()

    async def add(self, node_id: str) -> None:
        self._nodes.add(node_id)

    async def take(self, count: int) -> list[str]:
        taken = sorted(self._nodes)[:count]
        self._nodes.difference_update(taken)
        return taken


class RedisProbeRequests:
    def __init__(self, redis: Redis, key: str = "streamr:probe-requests") -> None:
        self._redis = redis
        self._key = key

    async def add(self, node_id: str) -> None:
        await self._redis.sadd(self._key, node_id)

    async def take(self, count: int) -> list[str]:
        # SPOP removes what it returns in one step: two workers never take the same request.
        taken = await self._redis.spop(self._key, count)
        return sorted(v.decode() if isinstance(v, bytes) else v for v in taken or [])
