"""Node-token authentication with a short in-process cache.

Heartbeats must not cost a database round trip each, so a token's lookup is remembered for a few
seconds. Deregistering clears this replica's entry at once; other replicas forget it within
``node_token_cache_ttl_s``.

While the database is away (a restart, a failover), a token this replica knew is still accepted
for up to ``STALE_IF_DOWN_S`` after its entry expired: nodes keep heartbeating (presence lives in
Redis) instead of all dropping out of routing after ``node_token_cache_ttl_s``. A token
deregistered meanwhile on another replica is accepted that much longer, only during the outage.

Two details keep the misses cheap when many heartbeats arrive at once: each entry lives a random
80-100 % of that time, so entries filled together (after a restart, or in a burst) do not all
expire together; and a token is looked up once at a time, the requests that miss meanwhile
waiting for that lookup instead of each running their own.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..credentials import secret_hash
from ..errors import is_storage_outage
from .models import Node

STALE_IF_DOWN_S = 600.0


@dataclass(frozen=True)
class NodeIdentity:
    node_id: str
    stream_id: str
    owner_id: str


class NodeTokenCache:
    def __init__(self, ttl_s: float = 10.0, max_entries: int = 100_000) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._entries: dict[str, tuple[float, NodeIdentity]] = {}
        self._loading: dict[str, asyncio.Task[NodeIdentity | None]] = {}

    def get(self, token_hash: str) -> NodeIdentity | None:
        """A fresh entry; an expired one stays for ``stale`` (bounded by ``max_entries``)."""
        entry = self._entries.get(token_hash)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def stale(self, token_hash: str, max_age_s: float = STALE_IF_DOWN_S) -> NodeIdentity | None:
        """An entry that expired less than ``max_age_s`` ago: only while the database is down."""
        entry = self._entries.get(token_hash)
        if entry is None or entry[0] + max_age_s <= time.monotonic():
            return None
        return entry[1]

    def put(self, token_hash: str, identity: NodeIdentity) -> None:
        if self._ttl_s <= 0:
            return
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        ttl_s = self._ttl_s * random.uniform(0.8, 1.0)  # noqa: S311 - spreading, not secrecy
        self._entries[token_hash] = (time.monotonic() + ttl_s, identity)

    def forget_node(self, node_id: str) -> None:
        for token_hash, (_, identity) in list(self._entries.items()):
            if identity.node_id == node_id:
                del self._entries[token_hash]

    async def load(
        self, token_hash: str, query: Callable[[], Awaitable[NodeIdentity | None]]
    ) -> NodeIdentity | None:
        """Run ``query`` for a missing entry, or wait for the run already under way."""
        task = self._loading.get(token_hash)
        if task is None:
            task = asyncio.create_task(self._query_and_put(token_hash, query))
            self._loading[token_hash] = task
            task.add_done_callback(partial(self._loaded, token_hash))
        # Shielded: one caller giving up does not cancel the lookup the others wait for.
        return await asyncio.shield(task)

    async def _query_and_put(
        self, token_hash: str, query: Callable[[], Awaitable[NodeIdentity | None]]
    ) -> NodeIdentity | None:
        identity = await query()
        if identity is not None:
            self.put(token_hash, identity)
        return identity

    def _loaded(self, token_hash: str, task: asyncio.Task[NodeIdentity | None]) -> None:
        if self._loading.get(token_hash) is task:
            del self._loading[token_hash]
        if not task.cancelled():
            task.exception()  # marks it retrieved: every waiter that is still there gets it


async def lookup_node_token(
    sessions: async_sessionmaker[AsyncSession], token: str, cache: NodeTokenCache
) -> NodeIdentity | None:
    """The node a token belongs to, from the cache or (on a miss) the database."""
    token_hash = secret_hash(token)
    identity = cache.get(token_hash)
    if identity is not None:
        return identity

    async def query() -> NodeIdentity | None:
        async with sessions() as session:
            row = (
                await session.execute(
                    select(Node.id, Node.stream_id, Node.owner_id).where(
                        Node.token_hash == token_hash, Node.deregistered_at.is_(None)
                    )
                )
            ).first()
        if row is None:
            return None
        return NodeIdentity(node_id=row.id, stream_id=row.stream_id, owner_id=row.owner_id)

    try:
        return await cache.load(token_hash, query)
    except (DBAPIError, OSError) as exc:
        known = cache.stale(token_hash) if _database_away(exc) else None
        if known is None:
            raise
        return known


def _database_away(exc: Exception) -> bool:
    """A refused or cut connection, or a server shutting down: not a wrong query."""
    if isinstance(exc, OSError | OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and is_storage_outage(exc)
