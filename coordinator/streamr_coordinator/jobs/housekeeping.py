"""Stream lifecycle timers and retention: the state is made right, so a second run is a no-op.

Retention keeps storage bounded: segment records, expired viewer sessions (their receipts go
with them), usage reports with their lines, receipts, nodes' /stats snapshots and job runs,
each after its own setting. The hourly roll-ups are brought up to date first, so what the
dashboards read survives the raw rows. Deletes go in bounded batches, renewing the lease
between them, so a first run over a large backlog neither holds a huge transaction nor loses
its lease.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import InstrumentedAttribute

from ..attestation.service import prune_segments
from ..context import AppContext
from ..database import utcnow
from ..streams.timers import age_streams
from ..usage.models import UsageReport
from ..verification.models import ReceiptTally, ReconciliationSession
from ..viewers.models import Receipt, ReceiptBatch
from ..viewers.service import prune_sessions
from .models import JobRun, NodeStats
from .rollups import hours_back, roll_up
from .runner import Run

BATCH = 5000


async def run_stream_timers(ctx: AppContext, run: Run) -> dict[str, object]:
    settings = ctx.settings
    async with ctx.sessions() as session:
        aged = await age_streams(session, settings.stale_after_s, settings.archive_after_s)
    return {"aged": aged}


async def delete_older(
    ctx: AppContext,
    run: Run,
    model: Any,
    stamp: InstrumentedAttribute[datetime],
    cutoff: datetime,
) -> int:
    """Delete ``model`` rows whose ``stamp`` is before ``cutoff``, ``BATCH`` at a time."""
    deleted = 0
    while True:
        async with ctx.sessions() as session:
            ids = select(model.id).where(stamp < cutoff).order_by(model.id).limit(BATCH)
            result = await session.execute(
                delete(model)
                .where(model.id.in_(ids.scalar_subquery()))
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        count = result.rowcount or 0
        deleted += count
        if count < BATCH:
            return deleted
        await run.renew()


async def prune_job_runs(ctx: AppContext, run: Run) -> int:
    """Runs older than the retention, and beyond the newest ``job_runs_kept`` of each job."""
    settings = ctx.settings
    cutoff = utcnow() - timedelta(seconds=settings.job_run_retention_s)
    deleted = await delete_older(ctx, run, JobRun, JobRun.started_at, cutoff)
    async with ctx.sessions() as session:
        jobs = list(await session.scalars(select(JobRun.job).distinct()))
        for job in jobs:
            oldest_kept = await session.scalar(
                select(JobRun.id)
                .where(JobRun.job == job)
                .order_by(JobRun.id.desc())
                .offset(settings.job_runs_kept - 1)
                .limit(1)
            )
            if oldest_kept is not None:
                result = await session.execute(
                    delete(JobRun)
                    .where(JobRun.job == job, JobRun.id < oldest_kept)
                    .execution_options(synchronize_session=False)
                )
                deleted += result.rowcount or 0
        await session.commit()
    return deleted


async def run_retention(ctx: AppContext, run: Run) -> dict[str, object]:
    settings = ctx.settings
    now = utcnow()
    # The hours whose raw rows may go now are rolled up first (idempotent, keeps the larger).
    await roll_up(ctx, hours_back(now, settings.rollup_lookback_s), run)
    async with ctx.sessions() as session:
        segments = await prune_segments(session, settings.segment_retention_s)
    async with ctx.sessions() as session:
        # Kept as long again as they lived: no report about them can still be on its way.
        sessions = await prune_sessions(session, settings.viewer_session_ttl_s)
    await run.renew()
    usage_cutoff = now - timedelta(seconds=settings.usage_retention_s)
    receipts = await delete_older(ctx, run, Receipt, Receipt.received_at, usage_cutoff)
    batches = await delete_older(ctx, run, ReceiptBatch, ReceiptBatch.received_at, usage_cutoff)
    reports = await delete_older(ctx, run, UsageReport, UsageReport.received_at, usage_cutoff)
    async with ctx.sessions() as session:
        # With their receipts (an hour's worth a run: a few hundred thousand rows at most).
        tallies = (
            await session.execute(
                delete(ReceiptTally).where(ReceiptTally.interval_start < usage_cutoff)
            )
        ).rowcount or 0
        # A session's running totals change while it is active: untouched for the retention,
        # no report or receipt about it can still come (they would be pruned on arrival).
        totals = (
            await session.execute(
                delete(ReconciliationSession).where(ReconciliationSession.updated_at < usage_cutoff)
            )
        ).rowcount or 0
        await session.commit()
    stats = await delete_older(
        ctx,
        run,
        NodeStats,
        NodeStats.collected_at,
        now - timedelta(seconds=settings.node_stats_retention_s),
    )
    runs = await prune_job_runs(ctx, run)
    async with ctx.sessions() as session:
        oldest_report = await session.scalar(select(func.min(UsageReport.received_at)))
    return {
        "pruned_segments": segments,
        "pruned_viewer_sessions": sessions,
        "pruned_receipts": receipts,
        "pruned_receipt_batches": batches,
        "pruned_receipt_tallies": tallies,
        "pruned_session_totals": totals,
        "pruned_usage_reports": reports,
        "pruned_node_stats": stats,
        "pruned_job_runs": runs,
        "oldest_usage_report": oldest_report.isoformat() if oldest_report else None,
    }
