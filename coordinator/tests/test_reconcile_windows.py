"""A backlog reconciled as one window pays what interval-by-interval reconciliation pays: the
same five minutes of an honest node and an inflating one, reconciled once per minute in one
database and as one window in another, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from streamr_coordinator.context import AppContext
from streamr_coordinator.migrations import runner as migrations
from streamr_coordinator.verification.models import Reconciliation, ReconciliationSession
from streamr_coordinator.verification.reconcile_service import reconcile_due
from streamr_coordinator.verification.reconciliation import (
    DEFAULT,
    ClaimFact,
    ReceiptFact,
    SegmentFact,
)

from .conftest import make_settings
from .test_receipt_tallies import add_each_alone
from .test_reconcile_summaries import write

START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MINUTES = 5
SIZE = 500_000


def scenario() -> dict[str, Any]:
    rng = random.Random(7)
    stream = "st-windows"
    segments = {
        seq: SegmentFact(
            seq, SIZE + rng.randint(-999, 999), START + timedelta(seconds=2 * seq - 60), 2.0
        )
        for seq in range(30 + MINUTES * 30)
    }
    nodes = [("nd-honest", stream), ("nd-inflates", stream)]
    # (session, node, first second, last second): one watching throughout, two for a while.
    spans = [
        ("vs-a", "nd-honest", 0, 300),
        ("vs-b", "nd-honest", 20, 130),
        ("vs-c", "nd-honest", 190, 300),
        ("vs-d", "nd-inflates", 0, 300),
        ("vs-e", "nd-inflates", 70, 250),
    ]
    receipts, claims = [], []
    for sid, node, first, last in spans:
        served: dict[int, int] = {}  # report number -> bytes
        batch: list[tuple[int, int]] = []
        for seq, seg in segments.items():
            fetched = (seg.attested_at - START).total_seconds() + rng.uniform(0.5, 1.5)
            if not first <= fetched < last:
                continue
            batch.append((seq, seg.size))
            report = int(fetched // 10) + 1
            served[report] = served.get(report, 0) + seg.size
            sent = (int(fetched // 5) + 1) * 5
            at = START + timedelta(seconds=sent)
            receipts.append((node, stream, ReceiptFact(sid, seq, seg.size, "ok", at, 40, 300)))
        for report, nbytes in served.items():
            claimed = nbytes * (2 if node == "nd-inflates" else 1)
            at = START + timedelta(seconds=report * 10, milliseconds=300)
            claims.append((node, stream, ClaimFact(sid, claimed, 1, at)))
    return {
        "tag": "windows",
        "streams": [stream],
        "nodes": nodes,
        "sessions": [(sid, stream) for sid, *_ in spans],
        "segments": {stream: segments},
        "receipts": receipts,
        "before": {},
        "claims": claims,
    }


async def _reconcile(ctx: AppContext, sc: dict[str, Any]) -> dict[str, Any]:
    await write(ctx, sc, START)
    async with ctx.sessions() as session:
        await add_each_alone(session, sc["receipts"], DEFAULT)
        await session.commit()
    now = START + timedelta(seconds=MINUTES * 60 + ctx.settings.reconcile_grace_s + 1)
    result = await reconcile_due(ctx, now=now)
    async with ctx.sessions() as session:
        verdicts = list(
            await session.execute(
                select(
                    Reconciliation.node_id,
                    Reconciliation.interval_start,
                    Reconciliation.interval_end,
                    Reconciliation.outcome,
                    Reconciliation.paid_bytes,
                    Reconciliation.plausible_bytes,
                    Reconciliation.receipted_bytes,
                ).order_by(Reconciliation.node_id, Reconciliation.interval_start)
            )
        )
        totals = {
            (t.node_id, t.session_id): (t.claimed, t.receipted, t.paid, t.excluded_reason)
            for t in await session.scalars(select(ReconciliationSession))
        }
    return {"result": result, "verdicts": verdicts, "totals": totals}


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_db(request: pytest.FixtureRequest, tmp_path_factory: Any):
    """A new, migrated database per call (the reconciliation watermark is database-wide)."""

    def make(**overrides: Any) -> AppContext:
        data_dir = tmp_path_factory.mktemp("windows")
        url = None
        if request.param == "postgresql":
            url = request.getfixturevalue("postgres_server").create_database()
        settings = make_settings(
            data_dir, url, reconcile_interval_s=60, reconcile_grace_s=30, **overrides
        )
        migrations.upgrade(settings.sqlalchemy_url)
        return AppContext.from_settings(settings)

    return make


def test_a_backlog_window_pays_what_the_intervals_pay(fresh_db):
    sc = scenario()

    async def run(ctx: AppContext) -> dict[str, Any]:
        try:
            return await _reconcile(ctx, sc)
        finally:
            await ctx.close()

    # The scenario starts on the hour: the watermark begins at its first interval.
    per_minute = asyncio.run(run(fresh_db(reconcile_catchup_window_s=0)))
    windowed = asyncio.run(run(fresh_db(reconcile_catchup_window_s=3600)))

    assert per_minute["result"]["windows"] == per_minute["result"]["intervals"] >= MINUTES
    assert windowed["result"]["windows"] == 1
    assert windowed["result"]["intervals"] == per_minute["result"]["intervals"]
    # Paid, claimed and receipted per session: the same to the byte.
    assert windowed["totals"] == per_minute["totals"]

    def by_node(verdicts: list[Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for v in verdicts:
            out.setdefault(v.node_id, []).append(v)
        return out

    minutes, window = by_node(per_minute["verdicts"]), by_node(windowed["verdicts"])
    for node in ("nd-honest", "nd-inflates"):
        (one,) = window[node]
        assert one.paid_bytes == sum(v.paid_bytes for v in minutes[node]) > 0
        assert one.receipted_bytes == sum(v.receipted_bytes for v in minutes[node])
        # The cap follows each session's own activity: no looser than the minutes' together.
        assert (
            one.paid_bytes <= one.plausible_bytes <= sum(v.plausible_bytes for v in minutes[node])
        )
    assert {v.outcome for v in minutes["nd-honest"]} == {"agree"}
    assert window["nd-honest"][0].outcome == "agree"
    assert {v.outcome for v in minutes["nd-inflates"]} == {"disagree"}
    assert window["nd-inflates"][0].outcome == "disagree"
