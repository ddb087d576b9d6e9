"""A coarse, durable copy of each node's last heartbeat, written at most once a minute per node.

Presence (in Redis or memory) is the live truth; this copy lets the streamer see "last seen 3
days ago" after restarts, without turning every heartbeat into a database write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .models import Node

log = logging.getLogger("streamr.nodes")

# Background writes that may hold a database connection at once. A replica that starts (or a
# herd of nodes that joins) sees thousands of nodes for the first time within one heartbeat
# interval; unbounded, their writes took every pooled connection and heartbeats waited behind
# them for their token lookups (bench/load). A coarse timestamp can wait its turn.
CONCURRENT_WRITES = 4


class LastSeenRecorder:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], every_s: float = 60.0) -> None:
        self._sessions = sessions
        self._every_s = every_s
        self._written: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers = asyncio.Semaphore(CONCURRENT_WRITES)

    def seen(self, node_id: str, at: datetime, public_url: str | None, version: str) -> None:
        now = time.monotonic()
        if now - self._written.get(node_id, -self._every_s) < self._every_s:
            return
        self._written[node_id] = now
        task = asyncio.create_task(self._write(node_id, at, public_url, version))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(
        self, node_id: str, at: datetime, public_url: str | None, version: str
    ) -> None:
        values: dict[str, object] = {"last_seen_at": at, "version": version}
        if public_url is not None:
            values["public_url"] = public_url
        try:
            async with self._writers, self._sessions() as session:
                await session.execute(update(Node).where(Node.id == node_id).values(values))
                await session.commit()
        except Exception:
            # Losing one coarse timestamp is harmless; the next interval writes it again.
            self._written.pop(node_id, None)
            log.exception("could not record last_seen", extra={"node_id": node_id})

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
