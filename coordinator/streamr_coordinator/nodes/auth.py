"""Node-token authentication with a short in-process cache.

Heartbeats must not cost a database round trip each, so a token's lookup is remembered for a few
seconds. Deregistering clears this replica's entry at once; other replicas forget it within
``node_token_cache_ttl_s``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..credentials import secret_hash
from .models import Node


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

    def get(self, token_hash: str) -> NodeIdentity | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[token_hash]
            return None
        return entry[1]

    def put(self, token_hash: str, identity: NodeIdentity) -> None:
        if self._ttl_s <= 0:
            return
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        self._entries[token_hash] = (time.monotonic() + self._ttl_s, identity)

    def forget_node(self, node_id: str) -> None:
        for token_hash, (_, identity) in list(self._entries.items()):
            if identity.node_id == node_id:
                del self._entries[token_hash]


async def lookup_node_token(
    sessions: async_sessionmaker[AsyncSession], token: str, cache: NodeTokenCache
) -> NodeIdentity | None:
    """The node a token belongs to, from the cache or (on a miss) the database."""
    token_hash = secret_hash(token)
    identity = cache.get(token_hash)
    if identity is not None:
        return identity
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
    identity = NodeIdentity(node_id=row.id, stream_id=row.stream_id, owner_id=row.owner_id)
    cache.put(token_hash, identity)
    return identity
