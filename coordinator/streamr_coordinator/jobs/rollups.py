"""Hourly usage roll-ups: per node, stream and UTC hour, claimed and receipted bytes.

Claimed: usage reports' counted bytes (sessions the coordinator issued), by the hour the
report was received. Receipted: viewers' ``ok`` receipts for the node, by the hour they were
received. Both only ever grow for a given hour (rows are stamped when they arrive) until
retention deletes them, so each recomputation upserts the larger of the stored and the new
value: running it twice, on two workers, or after the raw rows were pruned changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ..context import AppContext
from ..database import utcnow
from ..usage.models import UsageReport
from ..viewers.models import Receipt
from .models import UsageHourly
from .runner import Run

HOUR = timedelta(hours=1)
COUNTERS = ("reports", "claimed_bytes", "receipts_ok", "receipted_ok_bytes", "receipts_failed")


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def hours_back(now: datetime, lookback_s: float) -> list[datetime]:
    """The hours from ``lookback_s`` ago up to the current one, oldest first."""
    first = hour_of(now - timedelta(seconds=lookback_s))
    hours = []
    while first <= now:
        hours.append(first)
        first += HOUR
    return hours


async def hour_totals(
    session: AsyncSession, hour: datetime
) -> dict[tuple[str, str], dict[str, int]]:
    """(node, stream) -> counters for one hour, from the raw rows."""
    end = hour + HOUR
    totals: dict[tuple[str, str], dict[str, int]] = {}

    def slot(node_id: str, stream_id: str) -> dict[str, int]:
        return totals.setdefault((node_id, stream_id), dict.fromkeys(COUNTERS, 0))

    claimed = await session.execute(
        select(
            UsageReport.node_id,
            UsageReport.stream_id,
            func.count(),
            func.coalesce(func.sum(UsageReport.counted_bytes), 0),
        )
        .where(UsageReport.received_at >= hour, UsageReport.received_at < end)
        .group_by(UsageReport.node_id, UsageReport.stream_id)
    )
    for node_id, stream_id, reports, counted in claimed:
        counters = slot(node_id, stream_id)
        counters["reports"] = int(reports)
        counters["claimed_bytes"] = int(counted)  # PostgreSQL sums are Decimal
    ok = Receipt.outcome == "ok"
    receipted = await session.execute(
        select(
            Receipt.node_id,
            Receipt.stream_id,
            func.coalesce(func.sum(case((ok, 1), else_=0)), 0),
            func.coalesce(func.sum(case((ok, Receipt.bytes), else_=0)), 0),
            func.coalesce(func.sum(case((ok, 0), else_=1)), 0),
        )
        .where(Receipt.node_id.is_not(None), Receipt.received_at >= hour, Receipt.received_at < end)
        .group_by(Receipt.node_id, Receipt.stream_id)
    )
    for node_id, stream_id, receipts_ok, ok_bytes, failed in receipted:
        counters = slot(node_id, stream_id)
        counters["receipts_ok"] = int(receipts_ok)
        counters["receipted_ok_bytes"] = int(ok_bytes)
        counters["receipts_failed"] = int(failed)
    return totals


async def upsert_hour(
    session: AsyncSession, hour: datetime, totals: dict[tuple[str, str], dict[str, int]]
) -> int:
    """Store the hour's totals, keeping the larger value of each counter. Returns rows written."""
    if not totals:
        return 0
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {"node_id": node_id, "stream_id": stream_id, "hour": hour, "updated_at": now, **counters}
        for (node_id, stream_id), counters in totals.items()
    ]
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    table = UsageHourly.__table__
    if dialect == "postgresql":
        pg = postgresql.insert(table)
        larger = func.greatest
        statement: Any = pg.on_conflict_do_update(
            index_elements=["node_id", "stream_id", "hour"],
            set_={
                **{c: larger(table.c[c], pg.excluded[c]) for c in COUNTERS},
                "updated_at": pg.excluded.updated_at,
            },
        )
    else:
        lite = sqlite.insert(table)
        statement = lite.on_conflict_do_update(
            index_elements=["node_id", "stream_id", "hour"],
            set_={
                **{c: func.max(table.c[c], lite.excluded[c]) for c in COUNTERS},
                "updated_at": lite.excluded.updated_at,
            },
        )
    await session.execute(statement, rows)
    return len(rows)


async def roll_up(ctx: AppContext, hours: Iterable[datetime], run: Run | None = None) -> int:
    """Recompute and store ``hours``; returns the (node, stream, hour) rows written."""
    written = 0
    for hour in hours:
        if run is not None:
            await run.renew()
        async with ctx.sessions() as session:
            totals = await hour_totals(session, hour)
            written += await upsert_hour(session, hour, totals)
            await session.commit()
    return written


async def run_rollups(ctx: AppContext, run: Run) -> dict[str, object]:
    hours = hours_back(utcnow(), ctx.settings.rollup_lookback_s)
    written = await roll_up(ctx, hours, run)
    return {"hours": len(hours), "rows": written, "from": hours[0].isoformat()}
