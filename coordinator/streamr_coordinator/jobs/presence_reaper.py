"""Presence reaper: the database learns when each node was last seen, to the heartbeat.

Presence (nodes/presence.py) expires by itself, so the relay tree, viewer routing and the
dashboards' "online" stop using a node as soon as its heartbeats stop. The durable
``nodes.last_seen_at`` is coarser: the heartbeat path writes it at most once a minute
(nodes/last_seen.py), and a node that leaves cleanly writes it as it leaves (``DELETE
/nodes/{id}/presence``). This job makes it exact for the rest, at a write only where one is due:

- a node whose presence will have expired by the next run (its latest beat is older than the
  presence TTL less 1.2 runs: 9 s with the defaults, a beat every 5 s, presence for 15 s, a
  run every 5 s ± 10 %) has stopped beating: its latest beat is recorded while presence still
  knows it. Not sooner: when the replicas fall behind, beats arrive seconds late, and writing
  every late node would add to the load that made them late (bench/load saw exactly that);
- a node whose durable time is further behind than the heartbeat path ever leaves it (its
  batch failed, the database was down): recorded.

A node that beats on time costs nothing here. (At 5,000 nodes this job had written every
present node each run, about 330 rows a second: PostgreSQL's largest writer.) Writes only go
forward, so running it twice, or on two workers, changes nothing. It also reports the nodes
that went offline lately (within about a minute and a half); reading every node's presence
drops expired records from the in-process store.

Presence is per process without Redis: there, this job sees nodes only when it runs inside
the coordinator (run_background_jobs), which is the one-machine setup anyway.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from ..context import AppContext
from ..database import utcnow
from ..nodes import last_seen
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
    expiring = now - timedelta(
        seconds=max(
            settings.presence_ttl_s - settings.presence_reaper_interval_s * 1.2,
            settings.heartbeat_interval_s * 1.5,
        )
    )
    behind = timedelta(seconds=last_seen.EVERY_S + settings.heartbeat_interval_s * 2)
    # A node that left is reported while its durable time is this recent (which may be up to
    # a minute before its last beat: see above), so possibly in two runs.
    recently = now - timedelta(
        seconds=settings.presence_ttl_s
        + settings.presence_reaper_interval_s * 1.5
        + last_seen.EVERY_S
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
            if row.last_seen_at is not None and row.last_seen_at >= presence.last_seen:
                continue
            if (
                row.last_seen_at is None
                or presence.last_seen < expiring
                or row.last_seen_at < presence.last_seen - behind
            ):
                updates.append({"node": row.id, "seen": presence.last_seen})
    if updates:
        # In node id order, as the replicas' batched last-seen writes (nodes/last_seen.py):
        # rows locked in one order cannot deadlock.
        updates.sort(key=lambda u: str(u["node"]))
        await run.renew()
        async with ctx.sessions() as session:
            await session.execute(last_seen.FORWARD, updates)
            await session.commit()
    return {
        "nodes": len(rows),
        "online": online,
        "last_seen_recorded": len(updates),
        "went_offline": len(went_offline),
        "went_offline_nodes": went_offline[:20],
    }
