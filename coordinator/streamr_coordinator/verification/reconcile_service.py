"""Reconciliation against the database: each finished interval read once, never skipped.

Intervals are ``reconcile_interval_s`` long and aligned to the Unix epoch; [t, t+L) is done once
``now >= t + L + reconcile_grace_s`` (the last report and receipt batch are in). A watermark
holds the start of the next interval to do. Each interval's inputs are loaded in a few bulk
queries (claims, receipts, sessions, node networks, segments, running totals), the pure
``reconcile`` runs per (node, stream) with activity, and everything the interval produced
(reconciliations, discrepancies, new running totals, the watermark) is written in one
transaction. ``UNIQUE(node, stream, interval_start)`` makes a second worker's copy fail rather
than count twice; a worker that died mid-interval left nothing, and the next run does it again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..attestation.models import Segment
from ..context import AppContext
from ..database import utcnow
from ..nodes.models import Node
from ..streams.models import Stream
from ..usage.models import UsageLine, UsageReport
from ..viewers.models import Receipt, ViewerSession
from .models import Discrepancy, NodeNetwork, Reconciliation, ReconciliationSession, Watermark
from .reconciliation import (
    DEFAULT,
    ClaimFact,
    IntervalInput,
    IntervalVerdict,
    ReceiptFact,
    ReconcileParams,
    SegmentFact,
    SessionFact,
    SessionTotals,
    reconcile,
)

log = logging.getLogger("streamr.verification")

WATERMARK = "reconciliation"
MAX_INTERVALS_PER_RUN = 60  # catching up after downtime happens over several runs
FIRST_LOOKBACK_S = 86_400  # a fresh database starts no further back than this
_CHUNK = 500

Guard = Callable[[AsyncSession], Awaitable[None]]


def interval_start(at: datetime, length_s: int) -> int:
    """The start (Unix seconds) of the interval holding ``at``."""
    seconds = int(at.timestamp())
    return seconds - seconds % length_s


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


@dataclass
class _Interval:
    """Everything one interval's reconciliations read, for all nodes at once."""

    claims: dict[tuple[str, str], list[ClaimFact]]
    receipts: dict[tuple[str, str], list[ReceiptFact]]
    sessions: dict[str, ViewerSession]
    networks: dict[str, set[str]]
    segments: dict[str, dict[int, SegmentFact]]
    totals: dict[tuple[str, str], ReconciliationSession]


async def _load(
    session: AsyncSession, start: datetime, end: datetime, params: ReconcileParams
) -> _Interval:
    # Every report belongs to a node and every receipt to a stream (foreign keys that cascade):
    # naming them all lets PostgreSQL range-scan the (node_id, received_at) and (stream_id,
    # received_at) indexes instead of reading the whole tables for each interval.
    claims: dict[tuple[str, str], list[ClaimFact]] = defaultdict(list)
    all_nodes = list(await session.scalars(select(Node.id).order_by(Node.id)))
    for chunk in _chunks(all_nodes):
        rows = await session.execute(
            select(
                UsageReport.node_id,
                UsageReport.stream_id,
                UsageReport.received_at,
                UsageLine.session_id,
                UsageLine.bytes,
                UsageLine.segments,
            )
            .join(UsageLine, UsageLine.report_pk == UsageReport.id)
            .where(
                UsageReport.node_id.in_(chunk),
                UsageReport.received_at >= start,
                UsageReport.received_at < end,
            )
        )
        for node_id, stream_id, at, sid, nbytes, segments in rows:
            claims[(node_id, stream_id)].append(ClaimFact(sid, nbytes, segments, at))

    receipts: dict[tuple[str, str], list[ReceiptFact]] = defaultdict(list)
    all_streams = list(await session.scalars(select(Stream.id).order_by(Stream.id)))
    for chunk in _chunks(all_streams):
        rows = await session.execute(
            select(
                Receipt.node_id,
                Receipt.stream_id,
                Receipt.session_id,
                Receipt.sequence,
                Receipt.bytes,
                Receipt.outcome,
                Receipt.received_at,
                Receipt.ttfb_ms,
                Receipt.download_ms,
            ).where(
                Receipt.stream_id.in_(chunk),
                Receipt.node_id.is_not(None),
                Receipt.received_at >= start,
                Receipt.received_at < end,
            )
        )
        for node_id, stream_id, sid, seq, nbytes, outcome, at, ttfb, download in rows:
            receipts[(node_id, stream_id)].append(
                ReceiptFact(sid, seq, nbytes, outcome, at, ttfb, download)
            )

    pairs = claims.keys() | receipts.keys()
    sids = sorted(
        {c.session_id for v in claims.values() for c in v}
        | {r.session_id for v in receipts.values() for r in v}
    )
    sessions: dict[str, ViewerSession] = {}
    for chunk in _chunks(sids):
        for row in await session.scalars(select(ViewerSession).where(ViewerSession.id.in_(chunk))):
            sessions[row.id] = row

    node_ids = sorted({node for node, _ in pairs})
    networks: dict[str, set[str]] = defaultdict(set)
    for chunk in _chunks(node_ids):
        for node_id, network in await session.execute(
            select(NodeNetwork.node_id, NodeNetwork.network).where(NodeNetwork.node_id.in_(chunk))
        ):
            networks[node_id].add(network)

    oldest = start - timedelta(seconds=params.max_receipt_age_s)
    active_streams = sorted({stream for _, stream in pairs})
    segments: dict[str, dict[int, SegmentFact]] = {stream_id: {} for stream_id in active_streams}
    for chunk in _chunks(active_streams):  # one query for all streams, not one per stream
        for stream_id, seq, size, at, duration_ms in await session.execute(
            select(
                Segment.stream_id,
                Segment.sequence,
                Segment.size,
                Segment.created_at,
                Segment.duration_ms,
            ).where(
                Segment.stream_id.in_(chunk),
                Segment.created_at >= oldest,
                Segment.created_at < end,
            )
        ):
            segments[stream_id][seq] = SegmentFact(seq, size, at, duration_ms / 1000)

    keys = sorted(
        {(node, c.session_id) for (node, _), v in claims.items() for c in v}
        | {(node, r.session_id) for (node, _), v in receipts.items() for r in v}
    )
    totals: dict[tuple[str, str], ReconciliationSession] = {}
    for chunk in _chunks(keys):
        for row in await session.scalars(
            select(ReconciliationSession).where(
                tuple_(ReconciliationSession.node_id, ReconciliationSession.session_id).in_(chunk)
            )
        ):
            totals[(row.node_id, row.session_id)] = row
    return _Interval(claims, receipts, sessions, networks, segments, totals)


def _totals_of(row: ReconciliationSession | None) -> SessionTotals:
    if row is None:
        return SessionTotals()
    return SessionTotals(
        claimed=row.claimed,
        receipted=row.receipted,
        paid=row.paid,
        excluded_reason=row.excluded_reason,
        seen_sequences=frozenset(row.seen_sequences or ()),
        ok_segments=row.ok_segments,
    )


def build_input(
    data: _Interval,
    node_id: str,
    stream_id: str,
    start: datetime,
    end: datetime,
    report_interval_s: float,
) -> IntervalInput:
    claims = data.claims.get((node_id, stream_id), [])
    receipts = data.receipts.get((node_id, stream_id), [])
    sids = {c.session_id for c in claims} | {r.session_id for r in receipts}
    node_networks = data.networks.get(node_id, set())
    sessions = {}
    for sid in sids:
        row = data.sessions.get(sid)
        if row is None or row.stream_id != stream_id:
            continue  # unknown here: reconcile calls it unknown_session
        sessions[sid] = SessionFact(
            session_id=sid,
            opened_at=row.created_at,
            same_network_as_node=row.client_network is not None
            and row.client_network in node_networks,
            sources_polls=row.sources_polls,
            is_probe=row.is_probe,
        )
    return IntervalInput(
        node_id=node_id,
        stream_id=stream_id,
        start=start,
        end=end,
        segments=data.segments.get(stream_id, {}),
        sessions=sessions,
        claims=claims,
        receipts=receipts,
        before={sid: _totals_of(data.totals.get((node_id, sid))) for sid in sids},
        report_interval_s=report_interval_s,
    )


def viewer_summary(inp: IntervalInput, verdict: IntervalVerdict) -> tuple[int, int, int]:
    """(ok, failed, sessions with a mismatch) over receipts of real, uncontrolled viewers."""
    ok = failed = 0
    mismatching: set[str] = set()
    for r in inp.receipts:
        fact = inp.sessions.get(r.session_id)
        if fact is None or fact.is_probe or r.session_id in verdict.excluded:
            continue
        if r.outcome == "ok":
            ok += 1
        elif r.outcome == "mismatch":
            mismatching.add(r.session_id)
        else:
            failed += 1
    return ok, failed, len(mismatching)


class WatermarkMoved(Exception):
    """Another worker reconciled this interval meanwhile."""


async def reconcile_interval(
    ctx: AppContext,
    start_s: int,
    *,
    params: ReconcileParams = DEFAULT,
    guard: Guard | None = None,
) -> dict[str, int]:
    """Reconcile every node with activity in the interval starting at ``start_s`` and move the
    watermark past it, in one transaction. Pairs already reconciled are left as they are.
    WatermarkMoved when another worker finished the interval first."""
    length = ctx.settings.reconcile_interval_s
    start, end = _at(start_s), _at(start_s + length)
    for _attempt in range(3):
        async with ctx.sessions() as session:
            data = await _load(session, start, end, params)
            done = set(
                await session.execute(
                    select(Reconciliation.node_id, Reconciliation.stream_id).where(
                        Reconciliation.interval_start == start
                    )
                )
            )
            pairs = sorted((data.claims.keys() | data.receipts.keys()) - done)
            written: list[tuple[Reconciliation, IntervalVerdict]] = []
            for node_id, stream_id in pairs:
                inp = build_input(
                    data, node_id, stream_id, start, end, ctx.settings.usage_report_interval_s
                )
                verdict = reconcile(inp, params)
                written.append((_write(session, data, inp, verdict), verdict))
            try:
                await session.flush()  # the reconciliations' ids, for their discrepancies
                session.add_all(
                    Discrepancy(
                        reconciliation_id=row.id,
                        node_id=row.node_id,
                        kind=d.kind[:32],
                        session_id=d.session_id,
                        claimed=d.claimed,
                        receipted=d.receipted,
                        evidence=dict(d.evidence),
                        created_at=row.created_at,
                    )
                    for row, verdict in written
                    for d in verdict.discrepancies
                )
                await _advance(session, WATERMARK, start_s, start_s + length)
                if guard is not None:
                    await guard(session)
                await session.commit()
            except IntegrityError:
                await session.rollback()  # another worker wrote some of it: redo the rest
                continue
        paid = sum(verdict.paid_bytes for _, verdict in written)
        if written:
            log.info(
                "interval reconciled",
                extra={
                    "interval_start": start.isoformat(),
                    "nodes": len(written),
                    "paid_bytes": paid,
                },
            )
        return {"nodes": len(written), "paid_bytes": paid, "already_done": len(done)}
    raise RuntimeError(f"interval {start.isoformat()} could not be written after 3 attempts")


def _write(
    session: AsyncSession, data: _Interval, inp: IntervalInput, verdict: IntervalVerdict
) -> Reconciliation:
    """Add the interval's reconciliation and the new running totals to ``session``."""
    ok, failed, mismatching = viewer_summary(inp, verdict)
    row = Reconciliation(
        node_id=inp.node_id,
        stream_id=inp.stream_id,
        interval_start=inp.start,
        interval_end=inp.end,
        claimed_bytes=verdict.claimed_bytes,
        receipted_bytes=verdict.receipted_bytes,
        plausible_bytes=verdict.plausible_bytes,
        paid_bytes=verdict.paid_bytes,
        outcome=verdict.outcome,
        ratio=verdict.ratio,
        excluded_sessions=len(verdict.excluded),
        viewer_ok=ok,
        viewer_failed=failed,
        viewer_mismatch_sessions=mismatching,
        created_at=utcnow(),
    )
    session.add(row)
    for sid in inp.before:
        totals = verdict.after.get(sid)
        if totals is None:
            continue
        existing = data.totals.get((inp.node_id, sid))
        if existing is None:
            existing = ReconciliationSession(node_id=inp.node_id, session_id=sid)
            session.add(existing)
            data.totals[(inp.node_id, sid)] = existing
        existing.stream_id = inp.stream_id
        existing.claimed = totals.claimed
        existing.receipted = totals.receipted
        existing.paid = totals.paid
        existing.excluded_reason = totals.excluded_reason
        existing.ok_segments = totals.ok_segments
        existing.seen_sequences = sorted(totals.seen_sequences)
        existing.updated_at = row.created_at
    return row


async def _advance(session: AsyncSession, name: str, expected: int, to: int) -> None:
    """Move a watermark from ``expected`` to ``to``; WatermarkMoved if someone else moved it."""
    result = await session.execute(
        update(Watermark)
        .where(Watermark.name == name, Watermark.position == expected)
        .values(position=to, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:
        raise WatermarkMoved(name)


async def _first_start(ctx: AppContext, session: AsyncSession, now: datetime) -> int:
    """Where a fresh database starts: the interval of the earliest report or receipt."""
    length = ctx.settings.reconcile_interval_s
    earliest = [
        await session.scalar(select(func.min(UsageReport.received_at))),
        await session.scalar(select(func.min(Receipt.received_at))),
    ]
    found = [at for at in earliest if at is not None]
    floor = now - timedelta(seconds=FIRST_LOOKBACK_S)
    first = max(min(found), floor) if found else now
    return interval_start(first, length)


async def watermark(ctx: AppContext, now: datetime) -> int:
    """The start of the next interval to reconcile (created on first use)."""
    async with ctx.sessions() as session:
        row = await session.get(Watermark, WATERMARK)
        if row is not None:
            return row.position
        start = await _first_start(ctx, session, now)
        session.add(Watermark(name=WATERMARK, position=start, updated_at=utcnow()))
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            row = await session.get(Watermark, WATERMARK)
            assert row is not None
            return row.position
        return start


async def reconcile_due(
    ctx: AppContext,
    now: datetime | None = None,
    *,
    params: ReconcileParams = DEFAULT,
    guard: Guard | None = None,
    max_intervals: int = MAX_INTERVALS_PER_RUN,
) -> dict[str, Any]:
    """Reconcile every finished interval since the watermark (at most ``max_intervals``)."""
    now = now or utcnow()
    length = ctx.settings.reconcile_interval_s
    ready_before = now.timestamp() - ctx.settings.reconcile_grace_s
    intervals = nodes = paid = 0
    start = await watermark(ctx, now)
    while start + length <= ready_before and intervals < max_intervals:
        try:
            result = await reconcile_interval(ctx, start, params=params, guard=guard)
        except WatermarkMoved:
            start = await watermark(ctx, now)  # another worker is ahead: carry on from there
            continue
        intervals += 1
        nodes += result["nodes"]
        paid += result["paid_bytes"]
        start += length
    return {
        "intervals": intervals,
        "reconciliations": nodes,
        "paid_bytes": paid,
        "next_interval": _at(start).isoformat(),
    }
