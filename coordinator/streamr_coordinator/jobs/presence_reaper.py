"""Presence reaper: the database learns when each node was last seen, to the heartbeat.

Presence (nodes/presence.py) expires by itself, so the relay tree, viewer routing and the
dashboards' "online" stop using a node as soon as its heartbeats stop. What would be left
wrong is the durable ``nodes.last_seen_at``: the heartbeat path writes it at most once a
minute (nodes/last_seen.py), so a node that went offline would show up to a minute too early.
This job copies each present node's latest heartbeat time into ``last_seen_at`` (only forward,
so running it twice, or on two workers, changes nothing), and reports the nodes that went
offline since about the last run. Reading every node's presence also drops expired records
from the in-process store.

Presence is per process without Redis: there, this job sees nodes only when it runs inside
the coordinator (run_background_jobs), which is the one-machine setup anyway.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import bindparam, or_, select, update

from ..context import AppContext
from ..database import utcnow
from ..nodes.models import Node
from .runner import Run

CHUNK = 1000  # nodes per presence read


async def run_presence_reaper(ctx: AppContext, run: Run) -> dict[str, object]:
    settings = ctx.settings
    async with ctx.sessions() as session:
        rows = (
            await session.execute(
                select(Node.id, Node.last_seen_at).where(Node.deregistered_at.is_(None))
            )
        ).all()
    now = utcnow()
    lag = timedelta(seconds=settings.heartbeat_interval_s)
    recently = now - timedelta(
        seconds=settings.presence_ttl_s + settings.presence_reaper_interval_s * 1.5
    )
    updates: list[dict[str, object]] = []
    online = 0
    went_offline: list[str] = []
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        live = await ctx.presence.get_many([row.id for row in chunk])
        for row in chunk:
            presence = live.get(row.id)
            if presence is None:
                if row.last_seen_at is not None and row.last_seen_at >= recently:
                    went_offline.append(row.id)
                continue
            online += 1
            if row.last_seen_at is None or row.last_seen_at < presence.last_seen - lag:
                updates.append({"node": row.id, "seen": presence.last_seen})
    if updates:
        # In node id order, as the replicas' batched last-seen writes (nodes/last_seen.py):
        # rows locked in one order cannot deadlock.
        updates.sort(key=lambda u: str(u["node"]))
        await run.renew()
        async with ctx.sessions() as session:
            # Only forward: a newer time written meanwhile (by a heartbeat) is never undone.
            nodes = Node.__table__.c
            await session.execute(
                update(Node.__table__)
                .where(
                    nodes.id == bindparam("node"),
                    or_(nodes.last_seen_at.is_(None), nodes.last_seen_at < bindparam("seen")),
                )
                .values(last_seen_at=bindparam("seen")),
                updates,
            )
            await session.commit()
    return {
        "nodes": len(rows),
        "online": online,
        "last_seen_recorded": len(updates),
        "went_offline": len(went_offline),
        "went_offline_nodes": went_offline[:20],
    }
