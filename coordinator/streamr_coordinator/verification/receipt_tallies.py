"""Receipt tallies: each (node, viewer session, interval)'s receipts summed as they arrive.

Reconciliation needs, per node and session, what the interval's receipts add up to after the
plausibility rules (``SessionReceipts``). Computing that from the receipt rows means grouping
every receipt of the interval (5.4 million an hour at 1,000 nodes); the receipts route already
has each batch in hand, so it adds the batch to a tally row instead (one upsert per node the
batch names), and reconciliation reads a row per session.

A tally holds every count that does not depend on history (``classify_receipt``'s buckets,
the plausible receipts' bytes and their lowest and highest sequence) plus ``reordered``: how
often a plausible receipt was not above every plausible sequence before it. When nothing was
reordered, the plausible sequences are all different, and if the lowest is above the highest
sequence counted in earlier intervals they all count: the tally *is* the summary
(``summary_of``). Otherwise (a segment fetched twice, an out-of-order batch, a segment not yet
attested when its receipt came) reconciliation asks the receipt rows for that session, as it
always could: the tally is a shortcut, never a second set of rules. Reconciliation also checks
that the tallies cover every receipt of the interval (a replica of an older version, receipts
written another way, a changed interval length) before it trusts them.

Concurrent batches of one session meet in the upsert: the database locks the row, so the
second adds to what the first wrote, and ``reordered`` compares with what is stored.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ..attestation.models import Segment
from .models import ReceiptTally
from .reconciliation import (
    DEFAULT,
    PLAUSIBLE,
    ReceiptFact,
    ReconcileParams,
    SegmentFact,
    SessionReceipts,
    classify_receipt,
)

_T = ReceiptTally.__table__
# The counts a tally adds up (besides bytes, sequences and times).
COUNTS = (
    "plausible",
    "reordered",
    "size_mismatches",
    "before_segment",
    "too_fast",
    "stale",
    "unknown_segment",
    "ok_receipts",
    "mismatches",
    "failures",
)


@dataclass(frozen=True)
class Tally:
    """One (node, session, interval)'s receipts so far."""

    counted_bytes: int = 0  # sum of min(bytes, segment size) over plausible receipts
    plausible: int = 0
    min_sequence: int = -1  # of plausible receipts; -1 when there is none
    max_sequence: int = -1
    reordered: int = 0
    size_mismatches: int = 0
    before_segment: int = 0
    too_fast: int = 0
    stale: int = 0
    unknown_segment: int = 0
    ok_receipts: int = 0
    mismatches: int = 0
    failures: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None


def tally_batch(
    receipts: Iterable[ReceiptFact],
    segments: Mapping[int, SegmentFact],
    params: ReconcileParams = DEFAULT,
) -> Tally:
    """One node's receipts of one batch (one session, one arrival), as a tally."""
    counts = dict.fromkeys(COUNTS, 0)
    counted_bytes = 0
    sequences: list[int] = []
    first_at = last_at = None
    for r in receipts:
        first_at = r.received_at if first_at is None else min(first_at, r.received_at)
        last_at = r.received_at if last_at is None else max(last_at, r.received_at)
        segment = segments.get(r.sequence)
        bucket = classify_receipt(r, segment, params)
        if bucket not in ("mismatches", "failures"):
            counts["ok_receipts"] += 1
        if bucket != PLAUSIBLE:
            counts[bucket] += 1
            continue
        assert segment is not None
        counts["size_mismatches"] += r.bytes != segment.size
        counted_bytes += min(r.bytes, segment.size)
        sequences.append(r.sequence)
    sequences.sort()  # a batch's order is the page's, not the player's: sorting loses nothing
    counts["plausible"] = len(sequences)
    counts["reordered"] = sum(1 for a, b in itertools.pairwise(sequences) if b <= a)
    return Tally(
        counted_bytes=counted_bytes,
        min_sequence=sequences[0] if sequences else -1,
        max_sequence=sequences[-1] if sequences else -1,
        first_at=first_at,
        last_at=last_at,
        **counts,
    )


def merge(stored: Tally, added: Tally) -> Tally:
    """``added`` arriving after ``stored``: exactly what the upsert (``add``) computes."""
    late = (
        stored.plausible > 0 and added.plausible > 0 and added.min_sequence <= stored.max_sequence
    )
    sums = {name: getattr(stored, name) + getattr(added, name) for name in COUNTS}
    sums["reordered"] += late
    return Tally(
        counted_bytes=stored.counted_bytes + added.counted_bytes,
        min_sequence=_lowest(stored.min_sequence, added.min_sequence),
        max_sequence=max(stored.max_sequence, added.max_sequence),
        first_at=_earliest(stored.first_at, added.first_at),
        last_at=max((t for t in (stored.last_at, added.last_at) if t is not None), default=None),
        **sums,
    )


def _lowest(a: int, b: int) -> int:
    return b if a < 0 else a if b < 0 else min(a, b)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


class TallyFields(Protocol):
    """A ``Tally`` or a ``receipt_tallies`` row: the same fields."""

    counted_bytes: int
    plausible: int
    min_sequence: int
    max_sequence: int
    reordered: int
    size_mismatches: int
    before_segment: int
    too_fast: int
    stale: int
    unknown_segment: int
    ok_receipts: int
    mismatches: int
    failures: int
    first_at: datetime | None
    last_at: datetime | None


def summary_of(tally: TallyFields, prior_max_sequence: int) -> SessionReceipts | None:
    """The session's ``SessionReceipts`` for the interval, or None when the tally cannot tell
    (see the module docstring) and the receipt rows must."""
    if tally.reordered or tally.unknown_segment:
        return None
    if tally.plausible and tally.min_sequence <= prior_max_sequence:
        return None
    return SessionReceipts(
        counted_bytes=tally.counted_bytes,
        ok_segments=tally.plausible,
        max_sequence=tally.max_sequence if tally.plausible else -1,
        size_mismatches=tally.size_mismatches,
        before_segment=tally.before_segment,
        too_fast=tally.too_fast,
        stale=tally.stale,
        unknown_segment=0,
        duplicates=0,
        ok_receipts=tally.ok_receipts,
        mismatches=tally.mismatches,
        failures=tally.failures,
        first_at=tally.first_at,
        last_at=tally.last_at,
    )


def bucket_start(at: datetime, bucket_s: int) -> datetime:
    seconds = int(at.timestamp())
    return datetime.fromtimestamp(seconds - seconds % bucket_s, UTC)


# --- the database side ----------------------------------------------------------------------

# Segments never change once attested: a replica keeps the ones receipts named recently.
_SEGMENT_CACHE: dict[tuple[str, int], SegmentFact] = {}
_SEGMENT_CACHE_MAX = 50_000


async def segment_facts(
    session: AsyncSession, stream_id: str, sequences: Iterable[int]
) -> dict[int, SegmentFact]:
    """The attested segments among ``sequences`` (one query for those not cached)."""
    wanted = set(sequences)
    found = {s: f for s in wanted if (f := _SEGMENT_CACHE.get((stream_id, s))) is not None}
    missing = wanted - found.keys()
    if missing:
        rows = await session.execute(
            select(Segment.sequence, Segment.size, Segment.created_at, Segment.duration_ms).where(
                Segment.stream_id == stream_id, Segment.sequence.in_(sorted(missing))
            )
        )
        if len(_SEGMENT_CACHE) + len(missing) > _SEGMENT_CACHE_MAX:
            _SEGMENT_CACHE.clear()  # simple and rare: the recent ones come back in one query
        for seq, size, created_at, duration_ms in rows:
            fact = SegmentFact(seq, size, created_at, duration_ms / 1000)
            found[seq] = _SEGMENT_CACHE[(stream_id, seq)] = fact
    return found


def _greatest(dialect: str, a: Any, b: Any) -> ColumnElement[Any]:
    return func.max(a, b) if dialect == "sqlite" else func.greatest(a, b)


def _least(dialect: str, a: Any, b: Any) -> ColumnElement[Any]:
    return func.min(a, b) if dialect == "sqlite" else func.least(a, b)


async def add(
    session: AsyncSession,
    *,
    stream_id: str,
    session_id: str,
    bucket_s: int,
    received_at: datetime,
    by_node: Mapping[str, Sequence[ReceiptFact]],
    params: ReconcileParams = DEFAULT,
) -> None:
    """Add one batch's receipts (grouped by the node that served them) to their tallies, in the
    caller's transaction."""
    if not by_node:
        return
    segments = await segment_facts(
        session, stream_id, {r.sequence for rs in by_node.values() for r in rs}
    )
    start = bucket_start(received_at, bucket_s)
    rows = []
    for node_id in sorted(by_node):  # one lock order for every writer
        t = tally_batch(by_node[node_id], segments, params)
        rows.append(
            {
                "node_id": node_id,
                "session_id": session_id,
                "bucket_s": bucket_s,
                "interval_start": start,
                "stream_id": stream_id,
                "counted_bytes": t.counted_bytes,
                "min_sequence": t.min_sequence,
                "max_sequence": t.max_sequence,
                "first_at": t.first_at,
                "last_at": t.last_at,
                **{name: getattr(t, name) for name in COUNTS},
            }
        )
    # One row per node as executemany parameters, not a multi-row VALUES: the statement stays
    # the same whatever the batch holds, so it is compiled once per process, not per batch.
    await session.execute(_upsert(session.get_bind().dialect.name), rows)


_UPSERTS: dict[str, Any] = {}


def _upsert(dialect: str) -> Any:
    """The tally upsert for ``dialect``: each column added to what is stored."""
    if dialect in _UPSERTS:
        return _UPSERTS[dialect]
    stmt: Any = sqlite.insert(_T) if dialect == "sqlite" else postgresql.insert(_T)
    new = stmt.excluded
    late = case(
        (
            (_T.c.plausible > 0) & (new.plausible > 0) & (new.min_sequence <= _T.c.max_sequence),
            1,
        ),
        else_=0,
    )
    updates: dict[str, Any] = {name: _T.c[name] + new[name] for name in COUNTS}
    updates["reordered"] = _T.c.reordered + new.reordered + late
    updates["counted_bytes"] = _T.c.counted_bytes + new.counted_bytes
    updates["min_sequence"] = case(
        (_T.c.min_sequence < 0, new.min_sequence),
        (new.min_sequence < 0, _T.c.min_sequence),
        else_=_least(dialect, _T.c.min_sequence, new.min_sequence),
    )
    updates["max_sequence"] = _greatest(dialect, _T.c.max_sequence, new.max_sequence)
    updates["first_at"] = _least(dialect, _T.c.first_at, new.first_at)
    updates["last_at"] = _greatest(dialect, _T.c.last_at, new.last_at)
    _UPSERTS[dialect] = stmt.on_conflict_do_update(
        index_elements=["node_id", "session_id", "bucket_s", "interval_start"], set_=updates
    )
    return _UPSERTS[dialect]
