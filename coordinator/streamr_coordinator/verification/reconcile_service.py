"""Reconciliation against the database: each finished interval read once, never skipped.

Intervals are ``reconcile_interval_s`` long and aligned to the Unix epoch; [t, t+L) is done once
``now >= t + L + reconcile_grace_s`` (the last report and receipt batch are in). A watermark
holds the start of the next interval to do.

The database does the per-row work: one query summarizes the interval's receipts per (node,
stream, session) after the plausibility rules (``SessionReceipts``, exactly what the pure
``summarize_receipts`` computes from rows; a test holds the two equal on SQLite and PostgreSQL),
one sums the claims per (node, stream, session); both bring the session's facts and running
totals along. Python runs the pure ``reconcile`` per (node, stream) on those summaries, and
everything the interval produced (reconciliations, discrepancies, running totals, the watermark)
is written in bulk (SQLAlchemy Core, no ORM objects) in one transaction.
``UNIQUE(node, stream, interval_start)`` makes a second worker's copy fail rather than count
twice; a worker that died mid-interval left nothing, and the next run does it again.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    and_,
    case,
    cast,
    exists,
    extract,
    func,
    literal,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..attestation.models import Segment
from ..bulk import insert_rows
from ..context import AppContext
from ..database import utcnow
from ..usage.models import UsageLine, UsageReport
from ..viewers.models import Receipt, ViewerSession
from .models import (
    Discrepancy,
    NodeNetwork,
    ReceiptTally,
    Reconciliation,
    ReconciliationSession,
    Watermark,
)
from .receipt_tallies import COUNTS as TALLY_COUNTS
from .receipt_tallies import summary_of
from .reconciliation import (
    DEFAULT,
    IntervalInput,
    IntervalVerdict,
    ReconcileParams,
    SegmentFact,
    SessionFact,
    SessionReceipts,
    SessionTotals,
    max_receipt_bps,
    reconcile,
    segment_window,
)
from .watermarks import WatermarkMoved, advance

log = logging.getLogger("streamr.verification")

WATERMARK = "reconciliation"
MAX_INTERVALS_PER_RUN = 60  # catching up after downtime happens over several runs
FIRST_LOOKBACK_S = 86_400  # a fresh database starts no further back than this

Guard = Callable[[AsyncSession], Awaitable[None]]

_R = Receipt.__table__
_SEG = Segment.__table__
_TOT = ReconciliationSession.__table__
_VS = ViewerSession.__table__
_NN = NodeNetwork.__table__
_REC = Reconciliation.__table__
_DIS = Discrepancy.__table__
_TALLY = ReceiptTally.__table__

# A receipt's bucket (SessionReceipts): c counted (if its sequence is new), d duplicate of an
# earlier interval, b before its segment, s stale, t too fast, u unknown segment, m mismatch,
# f failure.
_BUCKETS = {
    "before_segment": "b",
    "stale": "s",
    "too_fast": "t",
    "unknown_segment": "u",
    "mismatches": "m",
    "failures": "f",
}


def interval_start(at: datetime, length_s: int) -> int:
    """The start (Unix seconds) of the interval holding ``at``."""
    seconds = int(at.timestamp())
    return seconds - seconds % length_s


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _age_s(dialect: str, later: Any, earlier: Any) -> ColumnElement[Any]:
    """Seconds from ``earlier`` to ``later`` (SQLite keeps timestamps as text)."""
    if dialect == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * 86_400.0
    return extract("epoch", later - earlier)


def _totals_columns() -> list[Any]:
    """The running totals of the row's (node, session), NULL when there are none yet."""
    return [
        _TOT.c.claimed.label("t_claimed"),
        _TOT.c.receipted.label("t_receipted"),
        _TOT.c.paid.label("t_paid"),
        _TOT.c.excluded_reason.label("t_excluded"),
        _TOT.c.max_sequence.label("t_max_sequence"),
        _TOT.c.ok_segments.label("t_ok_segments"),
    ]


def _facts(inner: Any) -> Select[Any]:
    """``inner`` (node_id, stream_id, session_id, ...) with the session's facts and running
    totals joined once per session, after the aggregation."""
    same_network = exists().where(
        _NN.c.node_id == inner.c.node_id, _NN.c.network == _VS.c.client_network
    )
    return select(
        inner,
        _VS.c.stream_id.label("v_stream_id"),
        _VS.c.created_at.label("v_opened_at"),
        _VS.c.sources_polls.label("v_sources_polls"),
        _VS.c.is_probe.label("v_is_probe"),
        same_network.label("v_same_network"),
        *_totals_columns(),
    ).select_from(
        inner.outerjoin(_VS, _VS.c.id == inner.c.session_id).outerjoin(
            _TOT,
            and_(_TOT.c.node_id == inner.c.node_id, _TOT.c.session_id == inner.c.session_id),
        )
    )


def receipt_summary_query(
    dialect: str,
    start: datetime,
    end: datetime,
    params: ReconcileParams = DEFAULT,
    *,
    sessions: set[str] | None = None,
) -> Select[Any]:
    """One row per (node, stream, session) with receipts received in [start, end) (of
    ``sessions`` only, when given): the ``SessionReceipts`` columns, the session's facts and its
    running totals."""
    earlier = _TOT.alias("earlier")  # the pair's highest sequence counted before
    prior = func.coalesce(earlier.c.max_sequence, -1)
    bucket = case(
        (_R.c.outcome == "mismatch", "m"),
        (_R.c.outcome != "ok", "f"),
        (_SEG.c.size.is_(None), "u"),
        (_R.c.received_at < _SEG.c.created_at, "b"),
        (_age_s(dialect, _R.c.received_at, _SEG.c.created_at) > params.max_receipt_age_s, "s"),
        (
            and_(
                _R.c.download_ms > 0,
                _R.c.bytes > 0,
                _R.c.bytes * 8000 > literal(max_receipt_bps(params), BigInteger) * _R.c.download_ms,
            ),
            "t",
        ),
        (_R.c.sequence <= prior, "d"),
        else_="c",
    )
    rows = (
        select(
            _R.c.node_id,
            _R.c.stream_id,
            _R.c.session_id,
            _R.c.sequence,
            _R.c.outcome,
            _R.c.received_at,
            bucket.label("bucket"),
            case((_R.c.bytes < _SEG.c.size, _R.c.bytes), else_=_SEG.c.size).label("value"),
            case((_R.c.bytes != _SEG.c.size, 1), else_=0).label("off_size"),
        )
        .select_from(
            _R.outerjoin(
                _SEG, and_(_SEG.c.stream_id == _R.c.stream_id, _SEG.c.sequence == _R.c.sequence)
            ).outerjoin(
                earlier,
                and_(earlier.c.node_id == _R.c.node_id, earlier.c.session_id == _R.c.session_id),
            )
        )
        .where(_R.c.node_id.is_not(None), _R.c.received_at >= start, _R.c.received_at < end)
        .where(_R.c.session_id.in_(sorted(sessions)) if sessions is not None else literal(True))
        .subquery("rows")
    )

    # Grouped by bucket too, so the bucket is computed once per receipt (a group key), and
    # a sequence receipted twice in the interval is one group.
    keys = (rows.c.node_id, rows.c.stream_id, rows.c.session_id)
    groups = (
        select(
            *keys,
            rows.c.sequence,
            rows.c.bucket,
            func.min(rows.c.value).label("value"),
            func.count().label("n"),
            func.sum(rows.c.off_size).label("off_size"),
            func.min(rows.c.received_at).label("first_at"),
            func.max(rows.c.received_at).label("last_at"),
        )
        .group_by(*keys, rows.c.sequence, rows.c.bucket)
        .subquery("groups")
    )
    g = groups.c
    counted = g.bucket == "c"

    def total(condition: ColumnElement[bool], value: Any) -> Any:
        return func.sum(case((condition, value), else_=0))

    per_session = (
        select(
            g.node_id,
            g.stream_id,
            g.session_id,
            total(counted, g.value).label("counted_bytes"),
            total(counted, 1).label("ok_segments"),
            func.coalesce(func.max(case((counted, g.sequence))), -1).label("max_sequence"),
            total(g.bucket.in_(("c", "d")), g.off_size).label("size_mismatches"),
            *(total(g.bucket == code, g.n).label(name) for name, code in _BUCKETS.items()),
            func.sum(case((counted, g.n - 1), (g.bucket == "d", g.n), else_=0)).label("duplicates"),
            total(g.bucket.not_in(("m", "f")), g.n).label("ok_receipts"),
            func.min(g.first_at).label("first_at"),
            func.max(g.last_at).label("last_at"),
        )
        .group_by(g.node_id, g.stream_id, g.session_id)
        .subquery("per_session")
    )
    return _facts(per_session)


def claim_summary_query(start: datetime, end: datetime) -> Select[Any]:
    """One row per (node, stream, session) claimed in reports received in [start, end): the
    claimed bytes, the session's facts and its running totals."""
    claims = (
        select(
            UsageReport.node_id,
            UsageReport.stream_id,
            UsageLine.session_id,
            func.sum(UsageLine.bytes).label("claimed"),
            func.min(UsageReport.received_at).label("first_claim_at"),
            func.max(UsageReport.received_at).label("last_claim_at"),
        )
        .join(UsageLine, UsageLine.report_pk == UsageReport.id)
        .where(UsageReport.received_at >= start, UsageReport.received_at < end)
        .group_by(UsageReport.node_id, UsageReport.stream_id, UsageLine.session_id)
        .subquery("claims")
    )
    return _facts(claims)


_COUNT_FIELDS = tuple(
    name for name in SessionReceipts.__dataclass_fields__ if name not in ("first_at", "last_at")
)


@dataclass
class _Pair:
    """One (node, stream)'s inputs of the interval."""

    claims: dict[str, int] = field(default_factory=dict)
    receipts: dict[str, SessionReceipts] = field(default_factory=dict)
    sessions: dict[str, SessionFact] = field(default_factory=dict)
    before: dict[str, SessionTotals] = field(default_factory=dict)
    claim_spans: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)

    def active_span(self, sid: str) -> tuple[datetime, datetime] | None:
        """The first and last claim or receipt of the session in the window."""
        times = [t for t in self.claim_spans.get(sid, ()) if t is not None]
        summary = self.receipts.get(sid)
        if summary is not None:
            times += [t for t in (summary.first_at, summary.last_at) if t is not None]
        return (min(times), max(times)) if times else None


def _take_facts(pair: _Pair, stream_id: str, row: Any) -> None:
    sid = row.session_id
    if row.v_stream_id == stream_id and sid not in pair.sessions:
        pair.sessions[sid] = SessionFact(
            session_id=sid,
            opened_at=row.v_opened_at,
            same_network_as_node=bool(row.v_same_network),
            sources_polls=row.v_sources_polls,
            is_probe=bool(row.v_is_probe),
        )
    if row.t_claimed is not None and sid not in pair.before:
        pair.before[sid] = SessionTotals(
            claimed=row.t_claimed,
            receipted=row.t_receipted,
            paid=row.t_paid,
            excluded_reason=row.t_excluded,
            max_sequence=row.t_max_sequence,
            ok_segments=row.t_ok_segments,
        )


def tally_summary_query(bucket_s: int, start: datetime, end: datetime) -> Select[Any]:
    """The receipt tallies (``receipt_tallies``) of [start, end), one row per (node, stream,
    session), with the session's facts and running totals. A window of several intervals
    adds their tallies up in time order, as ``receipt_tallies.merge`` would: a later interval
    whose lowest plausible sequence is not above every earlier one counts as reordered."""
    t = _TALLY.c
    earlier_max = func.max(t.max_sequence).over(
        partition_by=(t.node_id, t.session_id), order_by=t.interval_start, rows=(None, -1)
    )
    ranked = (
        select(_TALLY, earlier_max.label("earlier_max"))
        .where(t.bucket_s == bucket_s, t.interval_start >= start, t.interval_start < end)
        .subquery("ranked")
    )
    r = ranked.c
    late = case((and_(r.plausible > 0, r.earlier_max >= r.min_sequence), 1), else_=0)

    def total(column: Any) -> Any:
        return cast(func.sum(column), BigInteger)

    grouped = (
        select(
            r.node_id,
            r.stream_id,
            r.session_id,
            total(r.counted_bytes).label("counted_bytes"),
            func.coalesce(func.min(case((r.plausible > 0, r.min_sequence))), -1).label(
                "min_sequence"
            ),
            func.max(r.max_sequence).label("max_sequence"),
            (total(r.reordered) + total(late)).label("reordered"),
            *(total(r[name]).label(name) for name in TALLY_COUNTS if name != "reordered"),
            func.min(r.first_at).label("first_at"),
            func.max(r.last_at).label("last_at"),
        )
        .group_by(r.node_id, r.stream_id, r.session_id)
        .subquery("tallies")
    )
    return _facts(grouped)


async def _load_receipts(
    session: AsyncSession,
    pairs: dict[tuple[str, str], _Pair],
    start: datetime,
    end: datetime,
    params: ReconcileParams,
    bucket_s: int,
) -> dict[str, int]:
    """Each (node, session)'s ``SessionReceipts`` of the window [start, end) (one or more
    intervals of ``bucket_s``) into ``pairs``: from the tallies where they can tell, from the
    receipt rows where they cannot (or when they do not cover every receipt of the window).
    Returns how many sessions came which way."""
    receipts = await session.scalar(
        select(func.count())
        .select_from(_R)
        .where(_R.c.node_id.is_not(None), _R.c.received_at >= start, _R.c.received_at < end)
    )
    tallied = await session.scalar(
        select(
            func.coalesce(
                func.sum(_TALLY.c.ok_receipts + _TALLY.c.mismatches + _TALLY.c.failures), 0
            )
        ).where(
            _TALLY.c.bucket_s == bucket_s,
            _TALLY.c.interval_start >= start,
            _TALLY.c.interval_start < end,
        )
    )
    if int(tallied) != receipts:
        # Some receipt is not tallied (written by a replica of an older version, or another
        # way; the interval length changed): every summary from the rows.
        from_rows = await _summaries_from_rows(session, pairs, start, end, params, None)
        return {"tallied": 0, "from_rows": from_rows}
    told = [
        (row, summary_of(row, -1 if row.t_max_sequence is None else row.t_max_sequence))
        for row in await session.execute(tally_summary_query(bucket_s, start, end))
    ]
    # A session a tally cannot tell comes from the rows, with all its nodes.
    exact = {row.session_id for row, summary in told if summary is None}
    used = 0
    for row, summary in told:
        if summary is None or row.session_id in exact:
            continue
        used += 1
        pair = pairs[(row.node_id, row.stream_id)]
        pair.receipts[row.session_id] = summary
        _take_facts(pair, row.stream_id, row)
    from_rows = (
        await _summaries_from_rows(session, pairs, start, end, params, exact) if exact else 0
    )
    return {"tallied": used, "from_rows": from_rows}


async def _summaries_from_rows(
    session: AsyncSession,
    pairs: dict[tuple[str, str], _Pair],
    start: datetime,
    end: datetime,
    params: ReconcileParams,
    sessions: set[str] | None,
) -> int:
    query = receipt_summary_query(_dialect(session), start, end, params, sessions=sessions)
    count = 0
    for row in await session.execute(query):
        count += 1
        pair = pairs[(row.node_id, row.stream_id)]
        pair.receipts[row.session_id] = SessionReceipts(
            **{name: int(getattr(row, name)) for name in _COUNT_FIELDS},  # SUMs may be numeric
            first_at=row.first_at,
            last_at=row.last_at,
        )
        _take_facts(pair, row.stream_id, row)
    return count


async def _claim_rows(sessions: Callable[[], Any], start: datetime, end: datetime) -> list[Any]:
    async with sessions() as other:
        return list(await other.execute(claim_summary_query(start, end)))


async def _load(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    params: ReconcileParams,
    bucket_s: int,
    sessions: Callable[[], Any] | None = None,
) -> tuple[dict[tuple[str, str], _Pair], dict[str, dict[int, SegmentFact]]]:
    pairs: dict[tuple[str, str], _Pair] = defaultdict(_Pair)
    claims: asyncio.Task[list[Any]] | None = None
    if sessions is not None and _dialect(session) == "postgresql":
        # The claims are read on a connection of their own while the receipts are read on this
        # one: the window has ended, nothing but this job writes what both read, and PostgreSQL
        # runs the two on two cores (a backlog window's claims are a million lines an hour).
        claims = asyncio.create_task(_claim_rows(sessions, start, end))
    try:
        await _load_receipts(session, pairs, start, end, params, bucket_s)
    except BaseException:
        if claims is not None:
            claims.cancel()
        raise
    claim_rows = (
        await claims
        if claims is not None
        else await session.execute(claim_summary_query(start, end))
    )
    for row in claim_rows:
        pair = pairs[(row.node_id, row.stream_id)]
        pair.claims[row.session_id] = int(row.claimed)
        pair.claim_spans[row.session_id] = (row.first_claim_at, row.last_claim_at)
        _take_facts(pair, row.stream_id, row)

    # The streams' segments of the window, for the plausibility cap and the target duration.
    oldest = start - timedelta(seconds=params.plausible_lookback_s)
    streams = sorted({stream for _, stream in pairs})
    segments: dict[str, dict[int, SegmentFact]] = {stream: {} for stream in streams}
    if streams:
        for stream_id, seq, size, at, duration_ms in await session.execute(
            select(
                _SEG.c.stream_id,
                _SEG.c.sequence,
                _SEG.c.size,
                _SEG.c.created_at,
                _SEG.c.duration_ms,
            ).where(
                _SEG.c.stream_id.in_(streams),
                _SEG.c.created_at >= oldest,
                _SEG.c.created_at < end,
            )
        ):
            segments[stream_id][seq] = SegmentFact(seq, size, at, duration_ms / 1000)
    return pairs, segments


class _SegmentBytes:
    """Bytes of a stream's segments attested in a time range (prefix sums)."""

    def __init__(self, segments: dict[int, SegmentFact]) -> None:
        ordered = sorted(segments.values(), key=lambda s: s.attested_at)
        self.times = [s.attested_at for s in ordered]
        self.prefix = [0]
        for seg in ordered:
            self.prefix.append(self.prefix[-1] + seg.size)

    def between(self, earliest: datetime, before: datetime) -> int:
        return (
            self.prefix[bisect_left(self.times, before)]
            - self.prefix[bisect_left(self.times, earliest)]
        )


def _session_window_bytes(
    pair: _Pair,
    segment_bytes: _SegmentBytes,
    length_s: int,
    params: ReconcileParams,
) -> dict[str, int]:
    """``IntervalInput.session_window_bytes`` for a window of several intervals."""
    out = {}
    lookback = timedelta(seconds=params.plausible_lookback_s)
    for sid in pair.claims.keys() | pair.receipts.keys():
        span = pair.active_span(sid)
        if span is not None:
            first = _at(interval_start(span[0], length_s))
            last_end = _at(interval_start(span[1], length_s) + length_s)
            out[sid] = segment_bytes.between(first - lookback, last_end)
    return out


async def reconcile_interval(
    ctx: AppContext,
    start_s: int,
    *,
    intervals: int = 1,
    params: ReconcileParams = DEFAULT,
    guard: Guard | None = None,
) -> dict[str, int]:
    """Reconcile every node with activity in the window of ``intervals`` intervals starting at
    ``start_s`` and move the watermark past it, in one transaction. Pairs already reconciled
    are left as they are. WatermarkMoved when another worker finished the window first.

    A window of several intervals (a backlog: a worker that was down, or is catching up) gives
    each node one verdict for the whole window: payment is the same as interval by interval
    (running totals: boundaries never matter), the plausibility cap follows each session's own
    activity (``session_window_bytes``), and trust weighs the verdict by its length."""
    length = ctx.settings.reconcile_interval_s
    start, end = _at(start_s), _at(start_s + length * intervals)
    for _attempt in range(3):
        async with ctx.sessions() as session:
            pairs, segments = await _load(session, start, end, params, length, ctx.sessions)
            done = set(
                await session.execute(
                    select(_REC.c.node_id, _REC.c.stream_id).where(_REC.c.interval_start == start)
                )
            )
            written: list[tuple[IntervalInput, IntervalVerdict]] = []
            windows = {
                stream: segment_window(facts, start, end, params)
                for stream, facts in segments.items()
            }
            bytes_in = {stream: _SegmentBytes(facts) for stream, facts in segments.items()}
            for (node_id, stream_id), pair in sorted(pairs.items()):
                if (node_id, stream_id) in done:
                    continue
                per_session = None
                if intervals > 1:
                    per_session = _session_window_bytes(pair, bytes_in[stream_id], length, params)
                inp = IntervalInput(
                    node_id=node_id,
                    stream_id=stream_id,
                    start=start,
                    end=end,
                    segments=segments.get(stream_id, {}),
                    sessions=pair.sessions,
                    claims=pair.claims,
                    receipts=pair.receipts,
                    before=pair.before,
                    report_interval_s=ctx.settings.usage_report_interval_s,
                    window=windows.get(stream_id),
                    session_window_bytes=per_session,
                )
                written.append((inp, reconcile(inp, params)))
            try:
                await _write(session, written)
                await advance(session, WATERMARK, start_s, start_s + length * intervals)
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


async def _write(
    session: AsyncSession, written: list[tuple[IntervalInput, IntervalVerdict]]
) -> None:
    """The interval's reconciliations, their discrepancies and the new running totals, each
    in one statement (bulk.insert_rows)."""
    if not written:
        return
    now = utcnow()
    recs = [
        {
            "node_id": inp.node_id,
            "stream_id": inp.stream_id,
            "interval_start": inp.start,
            "interval_end": inp.end,
            "claimed_bytes": v.claimed_bytes,
            "receipted_bytes": v.receipted_bytes,
            "plausible_bytes": v.plausible_bytes,
            "paid_bytes": v.paid_bytes,
            "outcome": v.outcome,
            "ratio": v.ratio,
            "excluded_sessions": len(v.excluded),
            "viewer_ok": v.viewer_ok,
            "viewer_failed": v.viewer_failed,
            "viewer_mismatch_sessions": v.viewer_mismatch_sessions,
            "created_at": now,
        }
        for inp, v in written
    ]
    returned = await insert_rows(session, _REC, recs, returning=("id", "node_id", "stream_id"))
    ids = {(node, stream): rec_id for rec_id, node, stream in returned}
    if len(ids) < len(recs):  # SQLite returns nothing from an executemany: read the ids back
        rows = await session.execute(
            select(_REC.c.id, _REC.c.node_id, _REC.c.stream_id).where(
                _REC.c.interval_start == written[0][0].start
            )
        )
        ids = {(node, stream): rec_id for rec_id, node, stream in rows}
    discrepancies = [
        {
            "reconciliation_id": ids[(inp.node_id, inp.stream_id)],
            "node_id": inp.node_id,
            "kind": d.kind[:32],
            "session_id": d.session_id,
            "claimed": d.claimed,
            "receipted": d.receipted,
            "evidence": dict(d.evidence),
            "created_at": now,
        }
        for inp, v in written
        for d in v.discrepancies
    ]
    await insert_rows(session, _DIS, discrepancies)
    totals = [
        {
            "node_id": inp.node_id,
            "session_id": sid,
            "stream_id": inp.stream_id,
            "claimed": t.claimed,
            "receipted": t.receipted,
            "paid": t.paid,
            "excluded_reason": t.excluded_reason,
            "max_sequence": t.max_sequence,
            "ok_segments": t.ok_segments,
            "updated_at": now,
        }
        for inp, v in written
        for sid, t in v.after.items()
    ]
    await insert_rows(session, _TOT, totals, upsert=("node_id", "session_id"))


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
    """Reconcile every finished interval since the watermark (at most ``max_intervals``). When
    several are due at once (a backlog), they are reconciled in windows of up to
    ``reconcile_catchup_window_s`` (``reconcile_interval``)."""
    now = now or utcnow()
    length = ctx.settings.reconcile_interval_s
    per_window = max(1, ctx.settings.reconcile_catchup_window_s // length)
    ready_before = now.timestamp() - ctx.settings.reconcile_grace_s
    intervals = windows = nodes = paid = 0
    start = await watermark(ctx, now)
    while start + length <= ready_before and intervals < max_intervals:
        due = int((ready_before - start) // length)
        size = min(due, per_window, max_intervals - intervals)
        try:
            result = await reconcile_interval(
                ctx, start, intervals=size, params=params, guard=guard
            )
        except WatermarkMoved:
            start = await watermark(ctx, now)  # another worker is ahead: carry on from there
            continue
        intervals += size
        windows += 1
        nodes += result["nodes"]
        paid += result["paid_bytes"]
        start += length * size
    return {
        "intervals": intervals,
        "windows": windows,
        "reconciliations": nodes,
        "paid_bytes": paid,
        "next_interval": _at(start).isoformat(),
    }
