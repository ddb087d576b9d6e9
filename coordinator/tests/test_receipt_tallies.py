"""Receipt tallies are a shortcut, never a second set of rules: whenever a tally says what a
session's receipts add up to, it is exactly what ``summarize_receipts`` computes from the rows;
the upsert keeps the same tally as the pure ``merge``; and the reconciliation service, reading
tallies where they can tell and rows where they cannot, gets the summaries the rows give."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select

from streamr_coordinator.context import AppContext
from streamr_coordinator.verification import receipt_tallies
from streamr_coordinator.verification.models import ReceiptTally
from streamr_coordinator.verification.receipt_tallies import (
    COUNTS,
    Tally,
    merge,
    summary_of,
    tally_batch,
)
from streamr_coordinator.verification.reconcile_service import _load_receipts, _Pair
from streamr_coordinator.verification.reconciliation import (
    EMPTY_TOTALS,
    ReceiptFact,
    SegmentFact,
    summarize_receipts,
)

from .test_reconcile_summaries import PARAMS, bare_db, expected, scenario, with_ctx, write

__all__ = ["bare_db"]  # the fixture, shared with the SQL-summary test

SIZE = 1_000_000
T0 = datetime(2026, 5, 1, tzinfo=UTC)


def _segments(n: int) -> dict[int, SegmentFact]:
    return {s: SegmentFact(s, SIZE + s % 3, T0 + timedelta(seconds=2 * s), 2.0) for s in range(n)}


def _batches(rng: random.Random, sequences: list[int], segments: dict[int, SegmentFact]):
    """The receipts of one session, in batches of 1-3 as the watch page sends them (every
    receipt of a batch arrives at the batch's time)."""
    out, i = [], 0
    while i < len(sequences):
        k = rng.randint(1, 3)
        part = sequences[i : i + k]
        at = T0 + timedelta(seconds=2 * max(part) + rng.uniform(1, 5) + 2 * k)
        batch = [
            ReceiptFact(
                "s1",
                seq,
                rng.choice([SIZE, SIZE, SIZE, SIZE - 7]) if seq in segments else SIZE,
                rng.choice(["ok"] * 8 + ["error", "mismatch"]),
                at,
                download_ms=rng.choice([None, 400, 1]),
            )
            for seq in part
        ]
        out.append(batch)
        i += k
    return out


def _fold(batches, segments) -> Tally:
    tally = Tally()
    for batch in batches:
        tally = merge(tally, tally_batch(batch, segments, PARAMS))
    return tally


def test_an_in_order_session_is_told_by_its_tally_alone():
    """The common case: a viewer fetching live segments in order, each once."""
    rng = random.Random(3)
    segments = _segments(200)
    for prior in (-1, 9):
        batches = _batches(rng, list(range(10, 130)), segments)
        tally = _fold(batches, segments)
        receipts = [r for b in batches for r in b]
        want = summarize_receipts(receipts, segments, {"s1": _prior(prior)}, PARAMS)["s1"]
        assert summary_of(tally, prior) == want
        assert want.ok_segments > 30 and want.too_fast > 0 and want.failures > 0


def tally_from_row(row: Any) -> Tally:
    """A stored tally (an ORM object or a row) as the pure ``Tally``."""
    return Tally(
        counted_bytes=row.counted_bytes,
        min_sequence=row.min_sequence,
        max_sequence=row.max_sequence,
        first_at=row.first_at,
        last_at=row.last_at,
        **{name: getattr(row, name) for name in COUNTS},
    )


async def add_each_alone(
    session: Any, receipts: list[tuple[str, str, ReceiptFact]], params=PARAMS
) -> None:
    """Each (node, stream, receipt) added to its tally as a batch of its own, in order, as the
    receipts route would (60 s intervals)."""
    for node, stream, r in receipts:
        await receipt_tallies.add(
            session,
            stream_id=stream,
            session_id=r.session_id,
            bucket_s=60,
            received_at=r.received_at,
            by_node={node: [r]},
            params=params,
        )


def _prior(max_sequence: int):
    from dataclasses import replace

    return replace(EMPTY_TOTALS, max_sequence=max_sequence)


@pytest.mark.parametrize("seed", range(40))
def test_a_tally_that_tells_agrees_with_the_rows(seed):
    """Random sessions with repeats, reorderings, unknown segments and earlier counted
    sequences: the tally either declines or gives exactly the rows' summary."""
    rng = random.Random(seed)
    segments = _segments(60)
    del segments[rng.randrange(60)]  # one never attested
    sequences = sorted(rng.sample(range(62), rng.randint(1, 30)))
    if rng.random() < 0.4:  # a segment fetched again, or a batch out of order
        sequences.insert(rng.randrange(len(sequences) + 1), rng.choice(sequences))
    prior = rng.choice([-1, -1, rng.randint(0, 40)])
    batches = _batches(rng, sequences, segments)
    if rng.random() < 0.2:
        rng.shuffle(batches)
    tally = _fold(batches, segments)
    receipts = [r for b in batches for r in b]
    want = summarize_receipts(receipts, segments, {"s1": _prior(prior)}, PARAMS)["s1"]
    told = summary_of(tally, prior)
    assert told is None or told == want
    distinct_in_order = [r.sequence for r in receipts] == sorted({r.sequence for r in receipts})
    all_known = all(r.sequence in segments for r in receipts)
    if distinct_in_order and all_known and min(sequences) > prior:
        assert told == want  # the shortcut is taken whenever it safely can be


@pytest.mark.parametrize("intervals", [1, 2])
@pytest.mark.parametrize("seed", range(6))
def test_the_upsert_keeps_the_pure_tally_and_the_service_reads_the_rows_summaries(
    bare_db, seed, intervals
):
    """Over one interval, and over a window of two (a backlog), whose tallies add up."""
    rng = random.Random(100 + seed)
    start = datetime(2026, 4, intervals, tzinfo=UTC) + timedelta(hours=seed)
    end = start + timedelta(seconds=60 * intervals)
    sc = scenario(rng, start)
    stream_of = dict(sc["nodes"])

    async def run(ctx: AppContext) -> tuple[dict, dict, dict, dict]:
        await write(ctx, sc, start)
        # Each receipt arrives alone, in the scenario's order, as write() stored it.
        pure: dict[tuple[str, str, datetime], Tally] = defaultdict(Tally)
        async with ctx.sessions() as session:
            await add_each_alone(session, sc["receipts"], PARAMS)
            for node, stream, r in sc["receipts"]:
                key = (node, r.session_id, receipt_tallies.bucket_start(r.received_at, 60))
                added = tally_batch([r], sc["segments"][stream], PARAMS)
                pure[key] = merge(pure[key], added)
            await session.commit()
            stored = {
                (row.node_id, row.session_id, row.interval_start): tally_from_row(row)
                for row in await session.execute(
                    select(ReceiptTally.__table__).where(ReceiptTally.node_id.in_(stream_of))
                )
            }
            mixed: dict[tuple[str, str], _Pair] = defaultdict(_Pair)
            ways = await _load_receipts(session, mixed, start, end, PARAMS, 60)
            # Without one tally, the interval is no longer covered: every summary from rows.
            await session.execute(
                delete(ReceiptTally).where(ReceiptTally.node_id == sc["nodes"][0][0])
            )
            rows_only: dict[tuple[str, str], _Pair] = defaultdict(_Pair)
            fallback = await _load_receipts(session, rows_only, start, end, PARAMS, 60)
            await session.rollback()
        return pure, stored, {"mixed": mixed, "rows": rows_only}, {"mixed": ways, "rows": fallback}

    pure, stored, loaded, ways = with_ctx(bare_db, run)
    assert stored == pure
    want, _claimed = expected(sc, start, end)
    for name in ("mixed", "rows"):
        found = {
            (node, stream, sid): s
            for (node, stream), pair in loaded[name].items()
            if node in stream_of
            for sid, s in pair.receipts.items()
        }
        assert found == want, name
    assert ways["mixed"]["tallied"] + ways["mixed"]["from_rows"] == len(want)
    if any(n == sc["nodes"][0][0] for n, _s, _i in pure):
        assert ways["rows"]["tallied"] == 0


def test_the_upsert_and_merge_agree_on_reordering_across_batches(bare_db):
    """A batch below what is stored marks the tally, in the database as in ``merge``."""
    segments = _segments(30)
    stream = "st-tally-order"

    async def run(ctx: AppContext) -> Any:
        sc = {
            "tag": "tallyorder",
            "streams": [stream],
            "nodes": [("nd-tally-order", stream)],
            "sessions": [("s1", stream)],
            "segments": {stream: segments},
            "receipts": [],
            "before": {},
            "claims": [],
        }
        await write(ctx, sc, T0)
        at = T0 + timedelta(seconds=70)
        first = [ReceiptFact("s1", s, SIZE + s % 3, "ok", at) for s in (5, 6)]
        second = [ReceiptFact("s1", 4, SIZE + 1, "ok", at)]
        async with ctx.sessions() as session:
            for batch in (first, second):
                await receipt_tallies.add(
                    session,
                    stream_id=stream,
                    session_id="s1",
                    bucket_s=60,
                    received_at=at,
                    by_node={"nd-tally-order": batch},
                    params=PARAMS,
                )
            await session.commit()
            row = (await session.execute(select(ReceiptTally))).scalars().all()
            return [tally_from_row(r) for r in row if r.node_id == "nd-tally-order"]

    (stored,) = with_ctx(bare_db, run)
    at = T0 + timedelta(seconds=70)
    pure = merge(
        tally_batch([ReceiptFact("s1", s, SIZE + s % 3, "ok", at) for s in (5, 6)], segments),
        tally_batch([ReceiptFact("s1", 4, SIZE + 1, "ok", at)], segments),
    )
    assert stored == pure
    assert stored.reordered == 1 and summary_of(stored, -1) is None
