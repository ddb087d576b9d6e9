"""The service's SQL summaries equal the pure ones: random receipts and claims written to SQLite
and PostgreSQL, summarized by ``receipt_summary_query`` / ``claim_summary_query`` and by
``summarize_receipts`` / ``summarize_claims``, must give the same numbers, so the rules the
property tests check are the rules the coordinator pays by."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from streamr_coordinator.accounts.models import Account
from streamr_coordinator.attestation.models import Segment
from streamr_coordinator.context import AppContext
from streamr_coordinator.migrations import runner as migrations
from streamr_coordinator.nodes.models import Node
from streamr_coordinator.streams.models import Stream
from streamr_coordinator.usage.models import UsageLine, UsageReport
from streamr_coordinator.verification.models import ReconciliationSession
from streamr_coordinator.verification.reconcile_service import (
    claim_summary_query,
    receipt_summary_query,
)
from streamr_coordinator.verification.reconciliation import (
    ClaimFact,
    ReceiptFact,
    ReconcileParams,
    SegmentFact,
    SessionReceipts,
    SessionTotals,
    summarize_claims,
    summarize_receipts,
)
from streamr_coordinator.viewers.models import Receipt, ReceiptBatch, ViewerSession

from .conftest import make_settings

SIZE = 100_000
PARAMS = ReconcileParams(max_receipt_age_s=600, max_receipt_bps=2e8)
SUMMARY_FIELDS = tuple(SessionReceipts.__dataclass_fields__)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def bare_db(request: pytest.FixtureRequest, tmp_path_factory: Any) -> tuple[Path, str | None]:
    data_dir = tmp_path_factory.mktemp("summaries")
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_server").create_database()
    migrations.upgrade(make_settings(data_dir, url).sqlalchemy_url)
    return data_dir, url


def with_ctx(bare_db: tuple[Path, str | None], fn: Callable[[AppContext], Awaitable[Any]]) -> Any:
    data_dir, url = bare_db

    async def run() -> Any:
        ctx = AppContext.from_settings(make_settings(data_dir, url))
        try:
            return await fn(ctx)
        finally:
            await ctx.close()

    return asyncio.run(run())


def scenario(rng: random.Random, start: datetime) -> dict[str, Any]:
    """Two streams, three nodes, a few sessions; receipts of every kind in and around the
    interval [start, start + 60 s); some (node, session) pairs with earlier counted sequences."""
    tag = uuid.uuid4().hex[:8]
    streams = [f"st-{tag}-{i}" for i in range(2)]
    nodes = [(f"nd-{tag}-{i}", streams[i % 2]) for i in range(3)]
    sessions = [(f"vs-{tag}-{i}", streams[i % 2]) for i in range(5)]
    segments: dict[str, dict[int, SegmentFact]] = {}
    for stream in streams:
        segs = {}
        for seq in range(40):
            if rng.random() < 0.1:
                continue  # never attested: receipts for it name an unknown segment
            kind = rng.random()
            if kind < 0.15:
                age = rng.uniform(700, 900)  # stale by the time of any receipt
            elif kind < 0.25:
                age = -rng.uniform(61, 90)  # attested after the interval ended
            else:
                age = rng.uniform(1, 120)
            attested = start - timedelta(seconds=age, microseconds=rng.randint(0, 999_999))
            size = SIZE + rng.choice([0, 0, 0, rng.randint(-500, 500)])
            segs[seq] = SegmentFact(seq, size, attested, 2.0)
        segments[stream] = segs
    receipts: list[tuple[str, str, ReceiptFact]] = []  # (node, stream, fact)
    for _ in range(rng.randint(20, 80)):
        node, stream = rng.choice(nodes)
        sid = rng.choice([s for s, st in sessions if st == stream])
        seq = rng.randint(0, 39)
        seg = segments[stream].get(seq)
        size = seg.size if seg else SIZE
        nbytes = rng.choice([size, size, size, rng.randint(0, 2 * size)])
        download = rng.choice([None, 0, rng.randint(1, 5), rng.randint(50, 500)])
        outcome = rng.choice(["ok"] * 6 + ["mismatch", "error", "stall"])
        at = start + timedelta(seconds=rng.uniform(-20, 80))  # some outside the interval
        receipts.append((node, stream, ReceiptFact(sid, seq, nbytes, outcome, at, 10, download)))
        if rng.random() < 0.2:  # the same fetch receipted again (maybe with other bytes)
            again = ReceiptFact(sid, seq, rng.choice([nbytes, size]), outcome, at, 10, download)
            receipts.append((node, stream, again))
    before: dict[str, dict[str, SessionTotals]] = defaultdict(dict)
    for node, stream in nodes:
        for sid, st in sessions:
            if st == stream and rng.random() < 0.3:
                before[node][sid] = SessionTotals(1, 1, 1, max_sequence=rng.randint(-1, 25))
    claims = [
        (node, stream, ClaimFact(sid, rng.randint(0, 5 * SIZE), 1, start + timedelta(seconds=t)))
        for node, stream in nodes
        for sid, st in sessions
        if st == stream
        for t in rng.sample(range(-15, 75, 5), rng.randint(0, 3))
    ]
    return {
        "streams": streams,
        "nodes": nodes,
        "sessions": sessions,
        "segments": segments,
        "receipts": receipts,
        "before": before,
        "claims": claims,
        "tag": tag,
    }


async def write(ctx: AppContext, sc: dict[str, Any], start: datetime) -> None:
    owner = f"ac-{sc['tag']}"
    opened = start - timedelta(minutes=5)
    async with ctx.sessions() as session:
        await session.execute(
            insert(Account),
            [
                {
                    "id": owner,
                    "email": f"{owner}@t.example",
                    "display_name": "o",
                    "role": "streamer",
                    "password_hash": "x",
                    "created_at": opened,
                }
            ],
        )
        await session.execute(
            insert(Stream),
            [
                {
                    "id": s,
                    "name": s,
                    "title": s,
                    "description": "",
                    "owner_id": owner,
                    "status": "LIVE",
                    "is_test": False,
                    "key_hash": "k" + s,
                    "key_rotated_at": opened,
                    "created_at": opened,
                    "updated_at": opened,
                }
                for s in sc["streams"]
            ],
        )
        await session.execute(
            insert(Node),
            [
                {
                    "id": n,
                    "stream_id": s,
                    "owner_id": owner,
                    "name": n,
                    "token_hash": "t" + n,
                    "public_url": "http://198.51.100.1:8080",
                    "version": "0",
                    "registered_at": opened,
                    "last_seen_at": opened,
                }
                for n, s in sc["nodes"]
            ],
        )
        await session.execute(
            insert(Segment),
            [
                {
                    "stream_id": stream,
                    "sequence": seg.sequence,
                    "name": f"{seg.sequence}.ts",
                    "duration_ms": 2000,
                    "size": seg.size,
                    "sha256": "0" * 64,
                    "discontinuity": False,
                    "signature": "sig",
                    "created_at": seg.attested_at,
                }
                for stream, segs in sc["segments"].items()
                for seg in segs.values()
            ],
        )
        await session.execute(
            insert(ViewerSession),
            [
                {
                    "id": sid,
                    "stream_id": stream,
                    "created_at": opened,
                    "expires_at": opened + timedelta(hours=2),
                    "sources_polls": 1,
                }
                for sid, stream in sc["sessions"]
            ],
        )
        totals = [
            {
                "node_id": node,
                "session_id": sid,
                "stream_id": "x",
                "claimed": t.claimed,
                "receipted": t.receipted,
                "paid": t.paid,
                "max_sequence": t.max_sequence,
                "ok_segments": 1,
                "updated_at": opened,
            }
            for node, by in sc["before"].items()
            for sid, t in by.items()
        ]
        if totals:
            await session.execute(insert(ReconciliationSession), totals)
        for i, (node, stream, r) in enumerate(sc["receipts"]):
            batch = (
                await session.execute(
                    insert(ReceiptBatch).returning(ReceiptBatch.id),
                    [
                        {
                            "session_id": r.session_id,
                            "batch_id": f"{sc['tag']}-{i}",
                            "received_at": r.received_at,
                            "receipts": 1,
                        }
                    ],
                )
            ).scalar_one()
            await session.execute(
                insert(Receipt),
                [
                    {
                        "batch_pk": batch,
                        "session_id": r.session_id,
                        "stream_id": stream,
                        "node_id": node,
                        "source_kind": "node",
                        "segment": f"{r.sequence}.ts",
                        "sequence": r.sequence,
                        "bytes": r.bytes,
                        "ttfb_ms": r.ttfb_ms,
                        "download_ms": r.download_ms,
                        "outcome": r.outcome,
                        "received_at": r.received_at,
                    }
                ],
            )
        for i, (node, stream, c) in enumerate(sc["claims"]):
            report = (
                await session.execute(
                    insert(UsageReport).returning(UsageReport.id),
                    [
                        {
                            "node_id": node,
                            "report_id": f"r{i}",
                            "stream_id": stream,
                            "received_at": c.received_at,
                            "period_start": c.received_at,
                            "period_end": c.received_at,
                            "counted_bytes": c.bytes,
                            "counted_sessions": 1,
                            "unknown_sessions": 0,
                            "unattributed_bytes": 0,
                            "unattributed_requests": 0,
                        }
                    ],
                )
            ).scalar_one()
            await session.execute(
                insert(UsageLine),
                [
                    {
                        "report_pk": report,
                        "session_id": c.session_id,
                        "bytes": c.bytes,
                        "segments": 1,
                        "requests": 1,
                        "known": True,
                    }
                ],
            )
        await session.commit()


def expected(sc: dict[str, Any], start: datetime, end: datetime) -> tuple[dict, dict]:
    receipts: dict[tuple[str, str], list[ReceiptFact]] = defaultdict(list)
    for node, stream, r in sc["receipts"]:
        if start <= r.received_at < end:
            receipts[(node, stream)].append(r)
    summaries = {}
    for (node, stream), facts in receipts.items():
        pure = summarize_receipts(facts, sc["segments"][stream], sc["before"][node], PARAMS)
        summaries.update({(node, stream, sid): s for sid, s in pure.items()})
    claims: dict[tuple[str, str], list[ClaimFact]] = defaultdict(list)
    for node, stream, c in sc["claims"]:
        if start <= c.received_at < end:
            claims[(node, stream)].append(c)
    claimed = {
        (node, stream, sid): n
        for (node, stream), facts in claims.items()
        for sid, n in summarize_claims(facts).items()
    }
    return summaries, claimed


@pytest.mark.parametrize("seed", range(12))
def test_the_sql_summaries_equal_the_pure_ones(bare_db, seed):
    rng = random.Random(seed)
    start = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(hours=seed)
    end = start + timedelta(seconds=60)
    sc = scenario(rng, start)

    async def run(ctx: AppContext) -> tuple[dict, dict]:
        await write(ctx, sc, start)
        async with ctx.sessions() as session:
            dialect = session.get_bind().dialect.name
            found = {}
            for row in await session.execute(receipt_summary_query(dialect, start, end, PARAMS)):
                if row.node_id.startswith(f"nd-{sc['tag']}"):
                    values = {k: getattr(row, k) for k in SUMMARY_FIELDS}
                    counts = {k: int(v) for k, v in values.items() if not k.endswith("_at")}
                    found[(row.node_id, row.stream_id, row.session_id)] = SessionReceipts(
                        **counts, first_at=row.first_at, last_at=row.last_at
                    )
            claimed = {
                (row.node_id, row.stream_id, row.session_id): int(row.claimed)
                for row in await session.execute(claim_summary_query(start, end))
                if row.node_id.startswith(f"nd-{sc['tag']}")
            }
        return found, claimed

    found, claimed = with_ctx(bare_db, run)
    want, want_claimed = expected(sc, start, end)
    assert found == want
    assert claimed == want_claimed


def test_the_scenarios_reach_every_bucket():
    """The comparison above means something only if the random receipts hit every rule."""
    totals: dict[str, int] = defaultdict(int)
    for seed in range(12):
        start = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(hours=seed)
        want, claimed = expected(
            scenario(random.Random(seed), start), start, start + timedelta(seconds=60)
        )
        assert want and claimed
        for summary in want.values():
            for name in SUMMARY_FIELDS:
                if not name.endswith("_at"):
                    totals[name] += getattr(summary, name) > 0
    assert all(totals[name] for name in SUMMARY_FIELDS if not name.endswith("_at")), totals
