"""A coarse, durable copy of each node's last heartbeat, written at most once a minute per node.

Presence (in Redis or memory) is the live truth; this copy lets the streamer see "last seen 3
days ago" after restarts, without turning every heartbeat into a database write.

The writes are batched: a node that is due joins the pending batch, and one flush a
``flush_delay_s`` writes the whole batch in one transaction and one executemany (one round trip
on asyncpg). At 5,000 nodes a replica has about 80 nodes due a second; written one transaction
each (pool checkout, connection check, BEGIN, UPDATE, COMMIT) they cost a replica more CPU than
all their heartbeats' presence did (bench/load).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from sqlalchemy import bindparam, or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..errors import is_database_away
from ..write_behind import WriteBehind
from .models import Node

log = logging.getLogger("streamr.nodes")

EVERY_S = 60.0  # a replica writes a node's last-seen time at most this often

# Core statements on the table (an ORM UPDATE with a WHERE clause takes no executemany), with
# parameter names that are not column names (SQLAlchemy reserves those for SET).
_NODES = Node.__table__

# Only forward: a newer time written meanwhile (a heartbeat on another replica) is never undone.
# Parameters ``node`` and ``seen``; rows written in node id order cannot deadlock.
FORWARD = (
    update(_NODES)
    .where(
        _NODES.c.id == bindparam("node"),
        or_(_NODES.c.last_seen_at.is_(None), _NODES.c.last_seen_at < bindparam("seen")),
    )
    .values(last_seen_at=bindparam("seen"))
)
_WITH_URL = (
    update(_NODES)
    .where(_NODES.c.id == bindparam("b_id"))
    .values(
        last_seen_at=bindparam("b_at"),
        version=bindparam("b_version"),
        public_url=bindparam("b_url"),
    )
)
_WITHOUT_URL = (
    update(_NODES)
    .where(_NODES.c.id == bindparam("b_id"))
    .values(last_seen_at=bindparam("b_at"), version=bindparam("b_version"))
)


class LastSeenRecorder:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        every_s: float = EVERY_S,
        flush_delay_s: float = 0.25,
    ) -> None:
        self._sessions = sessions
        self._every_s = every_s
        self._written: dict[str, float] = {}
        self._batch: WriteBehind[str, tuple[datetime, str | None, str]] = WriteBehind(
            "last seen", self._write, flush_delay_s
        )

    def seen(self, node_id: str, at: datetime, public_url: str | None, version: str) -> None:
        now = time.monotonic()
        if now - self._written.get(node_id, -self._every_s) < self._every_s:
            return
        self._written[node_id] = now
        self._batch.put(node_id, (at, public_url, version))

    async def flush(self) -> None:
        """Write every pending node now. A batch the database could not take (busy or away)
        waits for the next flush; one it refused is written again at each node's next heartbeat
        (a coarse timestamp loses nothing meanwhile)."""
        await self._batch.flush()

    async def _write(self, batch: dict[str, tuple[datetime, str | None, str]]) -> None:
        # In node id order, as every writer of many node rows at once (the presence
        # reaper, the other replicas): rows locked in one order cannot deadlock.
        ordered = sorted(batch.items())
        with_url = [
            {"b_id": node_id, "b_at": at, "b_version": version, "b_url": url}
            for node_id, (at, url, version) in ordered
            if url is not None
        ]
        without_url = [
            {"b_id": node_id, "b_at": at, "b_version": version}
            for node_id, (at, url, version) in ordered
            if url is None
        ]
        try:
            async with self._sessions() as session:
                for statement, rows in ((_WITH_URL, with_url), (_WITHOUT_URL, without_url)):
                    if rows:
                        await session.execute(statement, rows)
                await session.commit()
        except Exception as exc:
            if is_database_away(exc):
                # The database is busy or away (SQLite's one writer at a time, a restart): the
                # batch waits for the next flush, which the next heartbeat brings.
                self._batch.put_back(batch)
                log.warning("last_seen: batch kept for the next flush", extra={"nodes": len(batch)})
                return
            for node_id in batch:
                self._written.pop(node_id, None)
            log.exception("could not record last_seen", extra={"nodes": len(batch)})

    async def drain(self) -> None:
        """Write what is pending (at shutdown, and in tests)."""
        await self._batch.drain()
