"""One hour of 1,000 nodes' usage reports and viewer receipts, reconciled, trusted, accrued and
paid out on PostgreSQL: wall time per step, peak memory and database work.

    .venv/bin/python bench/reconcile_payout/run.py [--nodes 1000] [--viewers-per-node 3]
        [--segment-s 2] [--seed 1] [--interval-s 60] [--catchup-window-s 3600] [--profile]

(every option: --help). docs/benchmarks.md has the figures and what they mean.

1. A throwaway PostgreSQL (tests/servers.py, as the other benchmarks start it), a database
   upgraded with the project's Alembic migrations, and one hour of generated activity loaded
   with COPY: 20 streams of ``nodes / 20`` nodes, the streams' attested segments (``--segment-s``
   long, 4 Mbit/s, so about 1 MB per 2 s), viewer sessions with churn (on average
   ``--viewers-per-node`` watching each node at any moment, sessions of 10 minutes on average),
   a usage report from every node every 10 s with one line per session it served, the viewers'
   receipt batches every 5 s (the watch page's rhythm) with one receipt per segment fetched, a
   few lost batches, a few viewers on their friend's own network, and 12 scheduled probes per
   node (probe sessions, their receipts and claims, and the probes table). The receipt tallies
   the receipts route keeps as batches arrive are kept with the same functions
   (``receipt_tallies.tally_batch`` and ``merge``, batch by batch), and the tables a coordinator
   fills in time order are clustered in time order, as they would lie. That database is the
   template of the measured ones.
2. A child process on a fresh copy measures, in order and as the worker runs them:
   ``reconcile_due`` until nothing is due (the hour's 60 one-minute intervals, or its intervals
   of ``--interval-s``; ``now`` = the end of the hour + the grace), ``update_trust`` until
   nothing is new, ``accrue_pending`` until nothing is pending, and one ``run_cycle``. An hour
   due at once is a backlog: with the default ``reconcile_catchup_window_s`` (3600) it is
   reconciled as one window per node; ``--catchup-window-s 0`` measures it interval by
   interval, which is the work a worker keeping up does over the hour, a minute at a time.
   For each step: wall time, SQL statements and their rows and
   server time (pg_stat_statements), rows read and written (pg_stat_user_tables). Peak memory is
   the child's peak RSS (``resource.getrusage``), besides its RSS before the steps.
3. A second child on another copy runs the same steps under ``tracemalloc`` (which slows Python
   down, so its times are not the measurement) for the Python heap's peak per step.

The verdict compares the total of step 2 with the issue's target (5 s). The exit status is
non-zero only when something fails (the server, the load, a step, a sanity check of the
results), never because of the figures.
"""

# The generator's helpers close over the current node on purpose (called in its iteration only).
# ruff: noqa: B023

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "coordinator"))

from tests.servers import PostgresServer, run_postgres  # noqa: E402

TARGET_S = 5.0
HOUR_S = 3600
STREAMS = 20
BITRATE_BPS = 4_000_000
REPORT_EVERY_S = 10  # usage_report_interval_s's default
BATCH_EVERY_S = 5  # viewers/static/receipts.js SEND_EVERY_MS
SESSION_MEAN_S = 600.0
GAP_MEAN_S = 60.0
PROBES_PER_NODE = 12  # one every five minutes
LOST_BATCH_SHARE = 0.005
SAME_NETWORK_SHARE = 0.01
RECONCILE_GRACE_S = 30  # the setting's default; the benchmark sets it explicitly
STEPS = ("reconciliation", "trust update", "accrual", "payout cycle")


class BenchError(Exception):
    """Something the benchmark needs did not work (not a slow result)."""


def hexid(*parts: object) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


def uuid_of(*parts: object) -> str:
    h = hexid(*parts)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def dsn_of(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


# ---------------------------------------------------------------- generation


class Loader:
    """Rows buffered per table and written with COPY, parents before children."""

    ORDER = (
        "viewer_sessions",
        "usage_reports",
        "usage_lines",
        "viewer_receipt_batches",
        "viewer_receipts",
        "receipt_tallies",
        "probes",
    )

    def __init__(self, conn: Any, columns: dict[str, tuple[str, ...]]) -> None:
        self.conn = conn
        self.columns = columns
        self.rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        self.counts: dict[str, int] = defaultdict(int)
        self.next_id: dict[str, int] = defaultdict(lambda: 1)

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        self.rows[table].append(row)

    def new_id(self, table: str) -> int:
        value = self.next_id[table]
        self.next_id[table] = value + 1
        return value

    async def flush(self, force: bool = False) -> None:
        if not force and sum(len(v) for v in self.rows.values()) < 300_000:
            return
        for table in self.ORDER:
            rows = self.rows.pop(table, [])
            if rows:
                await self.conn.copy_records_to_table(
                    table, records=rows, columns=list(self.columns[table])
                )
                self.counts[table] += len(rows)


COLUMNS = {
    "viewer_sessions": (
        "id",
        "stream_id",
        "created_at",
        "expires_at",
        "node_id",
        "client_network",
        "sources_polls",
        "is_probe",
    ),
    "usage_reports": (
        "id",
        "node_id",
        "report_id",
        "stream_id",
        "received_at",
        "period_start",
        "period_end",
        "counted_bytes",
        "counted_sessions",
        "unknown_sessions",
        "unattributed_bytes",
        "unattributed_requests",
    ),
    "usage_lines": ("id", "report_pk", "session_id", "bytes", "segments", "requests", "known"),
    "viewer_receipt_batches": ("id", "session_id", "batch_id", "received_at", "receipts"),
    "viewer_receipts": (
        "id",
        "batch_pk",
        "session_id",
        "stream_id",
        "node_id",
        "source_kind",
        "segment",
        "sequence",
        "bytes",
        "ttfb_ms",
        "download_ms",
        "outcome",
        "received_at",
    ),
    "probes": (
        "node_id",
        "stream_id",
        "session_id",
        "reason",
        "segment",
        "sequence",
        "started_at",
        "ttfb_ms",
        "duration_ms",
        "bytes",
        "throughput_bps",
        "outcome",
        "detail",
        "recorded_at",
    ),
}


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


async def generate(url: str, args: argparse.Namespace, h0: int) -> dict[str, int]:
    """Load the hour [h0, h0 + 3600) into the (migrated, empty) database at ``url``."""
    import asyncpg

    rng = random.Random(args.seed)
    seg_s = args.segment_s
    seg_bytes = BITRATE_BPS * seg_s // 8
    first_seg_at = h0 - 900  # the streams were live a quarter of an hour before the hour
    n_segments = int((HOUR_S + 900 + 60) / seg_s)
    conn = await asyncpg.connect(dsn_of(url))
    try:
        # The rows are consistent by construction; no trigger per row for the foreign keys.
        await conn.execute("SET session_replication_role = replica")
        columns = dict(COLUMNS)
        probe_columns = {
            row[0]
            for row in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'probes'"
            )
        }
        # Newer schemas count a probe's attempts; older ones do not have the column.
        extra: tuple[Any, ...] = (1,) if "attempts" in probe_columns else ()
        if extra:
            columns["probes"] = (*COLUMNS["probes"], "attempts")
        # The receipts route keeps receipt tallies (verification/receipt_tallies.py) as batches
        # arrive; the generator keeps them with the same functions. Older schemas have none.
        tallied = bool(await conn.fetchval("SELECT to_regclass('receipt_tallies') IS NOT NULL"))
        registered = at(h0 - 2 * 86_400)
        streamer = uuid_of("streamer")
        accounts = [(streamer, "streamer@bench.example", "Streamer", "streamer")]
        streams, nodes, networks = [], [], []
        segments: dict[str, list[tuple[int, int, float]]] = {}
        n_streams = min(STREAMS, args.nodes)
        for s in range(n_streams):
            sid = uuid_of("stream", s)
            streams.append(
                (sid, f"bench-{s}", f"Bench stream {s}", "", streamer, "LIVE", False,
                 hexid("key", s) * 2, registered, registered, registered)
            )  # fmt: skip
            segments[sid] = [
                (seq, int(seg_bytes * rng.uniform(0.85, 1.15)), first_seg_at + seq * seg_s)
                for seq in range(n_segments)
            ]
        for n in range(args.nodes):
            stream_id = streams[n % n_streams][0]
            owner = uuid_of("friend", n)
            accounts.append((owner, f"friend{n}@bench.example", f"Friend {n}", "friend"))
            nodes.append(
                (uuid_of("node", n), stream_id, owner, f"node-{n}", hexid("token", n) * 2,
                 f"http://198.51.{n // 250}.{n % 250}:8080", "0.1.0", registered, at(h0 + HOUR_S))
            )  # fmt: skip
            networks.append((nodes[-1][0], hexid("net", n), registered, at(h0 + HOUR_S)))
        await conn.copy_records_to_table(
            "accounts",
            records=[(*a, "x", registered) for a in accounts],
            columns=["id", "email", "display_name", "role", "password_hash", "created_at"],
        )
        await conn.copy_records_to_table(
            "streams",
            records=streams,
            columns=["id", "name", "title", "description", "owner_id", "status", "is_test",
                     "key_hash", "key_rotated_at", "created_at", "updated_at"],
        )  # fmt: skip
        await conn.copy_records_to_table(
            "nodes",
            records=nodes,
            columns=["id", "stream_id", "owner_id", "name", "token_hash", "public_url",
                     "version", "registered_at", "last_seen_at"],
        )  # fmt: skip
        await conn.copy_records_to_table(
            "node_networks",
            records=networks,
            columns=["node_id", "network", "first_seen_at", "last_seen_at"],
        )
        await conn.copy_records_to_table(
            "segments",
            records=[
                (stream_id, seq, f"seg{seq}.ts", seg_s * 1000, size, hexid("seg", stream_id,
                 seq) * 2, False, "sig", at(attested))
                for stream_id, segs in segments.items()
                for seq, size, attested in segs
            ],
            columns=["stream_id", "sequence", "name", "duration_ms", "size", "sha256",
                     "discontinuity", "signature", "created_at"],
        )  # fmt: skip

        loader = Loader(conn, columns)
        end = h0 + HOUR_S
        concurrency_s = 0.0
        if tallied:
            from streamr_coordinator.verification import receipt_tallies

            columns["receipt_tallies"] = (
                "node_id", "session_id", "bucket_s", "interval_start", "stream_id",
                "counted_bytes", "min_sequence", "max_sequence", *receipt_tallies.COUNTS,
                "first_at", "last_at",
            )  # fmt: skip
            from streamr_coordinator.verification.reconciliation import ReceiptFact, SegmentFact

            facts = {
                stream_id: {seq: SegmentFact(seq, size, at(t), seg_s) for seq, size, t in segs}
                for stream_id, segs in segments.items()
            }
        for n, node in enumerate(nodes):
            node_id, stream_id = node[0], node[1]
            segs = segments[stream_id]
            node_net = networks[n][1]
            # What the node served: (fetch time, session, bytes) for its reports.
            served: list[tuple[float, str, int]] = []

            def session_row(sid: str, opened: float, closes: float, net: str, probe: bool) -> None:
                polls = 1 if probe else max(1, int((closes - opened) / 2))
                loader.add(
                    "viewer_sessions",
                    (sid, stream_id, at(opened), at(closes + 3600), node_id, net, polls, probe),
                )

            def fetches(sid: str, times: list[tuple[float, int]], phase: float) -> None:
                """Receipts for (fetch time, sequence), in batches every 5 s from ``phase``."""
                batches: dict[float, list[tuple[float, int]]] = defaultdict(list)
                for fetched, seq in times:
                    _, size, _attested = segs[seq]
                    served.append((fetched, sid, size))
                    k = int((fetched - phase) // BATCH_EVERY_S) + 1
                    batches[phase + k * BATCH_EVERY_S].append((fetched, seq))
                tallies: dict[datetime, Any] = {}
                for sent, items in sorted(batches.items()):
                    if sent >= end + 60 or rng.random() < LOST_BATCH_SHARE:
                        continue  # a batch lost on the way (or after the measured hour)
                    batch_pk = loader.new_id("viewer_receipt_batches")
                    received = at(sent)
                    loader.add(
                        "viewer_receipt_batches",
                        (batch_pk, sid, hexid(sid, sent), received, len(items)),
                    )
                    receipts = []
                    for _fetched, seq in items:
                        size = segs[seq][1]
                        row = (loader.new_id("viewer_receipts"), batch_pk, sid, stream_id,
                               node_id, "node", f"seg{seq}.ts", seq, size, rng.randint(20, 150),
                               size * 8 // rng.randint(20_000, 60_000), "ok", received)  # fmt: skip
                        loader.add("viewer_receipts", row)
                        receipts.append(row)
                    if tallied:  # what receipt_tallies.add does, batch by batch
                        added = receipt_tallies.tally_batch(
                            [ReceiptFact(sid, r[7], r[8], "ok", received, r[9], r[10])
                             for r in receipts],
                            facts[stream_id],
                        )  # fmt: skip
                        bucket = receipt_tallies.bucket_start(received, args.interval_s)
                        before = tallies.get(bucket, receipt_tallies.Tally())
                        tallies[bucket] = receipt_tallies.merge(before, added)
                for bucket, t in sorted(tallies.items()):
                    loader.add(
                        "receipt_tallies",
                        (node_id, sid, args.interval_s, bucket, stream_id,
                         t.counted_bytes, t.min_sequence, t.max_sequence,
                         *(getattr(t, name) for name in receipt_tallies.COUNTS),
                         t.first_at, t.last_at),
                    )  # fmt: skip

            # Viewers: each of ``slots`` places at the node is a chain of sessions with gaps.
            slots = int(args.viewers_per_node * (SESSION_MEAN_S + GAP_MEAN_S) / SESSION_MEAN_S)
            slots += rng.random() < (
                args.viewers_per_node * (SESSION_MEAN_S + GAP_MEAN_S) / SESSION_MEAN_S - slots
            )
            for slot in range(slots):
                t = h0 - rng.uniform(0, SESSION_MEAN_S)
                k = 0
                while t < end:
                    length = rng.expovariate(1 / SESSION_MEAN_S)
                    opened, closes = t, min(t + length, end + 30)
                    sid = uuid_of("session", n, slot, k)
                    k += 1
                    t = closes + rng.expovariate(1 / GAP_MEAN_S)
                    if closes <= h0:
                        continue
                    net = node_net if rng.random() < SAME_NETWORK_SHARE else hexid("viewer", sid)
                    session_row(sid, opened, closes, net, False)
                    # The player starts two segments behind live and fetches one per segment.
                    live = int((opened - first_seg_at) // seg_s)
                    times = []
                    fetched = opened + rng.uniform(0.2, 1.0)
                    seq = live - 2
                    while fetched < closes:
                        if fetched >= h0 and seq < len(segs):
                            times.append((fetched, seq))
                        seq += 1
                        fetched += seg_s + rng.uniform(-0.05, 0.05)
                    concurrency_s += max(0.0, min(closes, end) - max(opened, h0))
                    fetches(sid, times, opened + rng.uniform(0, BATCH_EVERY_S))
            # Probes: sessions of the prober, one segment each, receipted like a viewer's.
            for p in range(PROBES_PER_NODE):
                started = h0 + (p + rng.random()) * HOUR_S / PROBES_PER_NODE
                sid = uuid_of("probe", n, p)
                session_row(sid, started, started + 2, hexid("prober"), True)
                seq = int((started - first_seg_at) // seg_s) - 1
                size = segs[seq][1]
                fetches(sid, [(started + 0.1, seq)], started)
                loader.add(
                    "probes",
                    (node_id, stream_id, sid, "scheduled", f"seg{seq}.ts", seq, at(started), 40,
                     300, size, size * 8000 // 300, "ok", "", at(started + 0.4), *extra),
                )  # fmt: skip
            # The node's reports: every 10 s, the bytes of each session since the last one.
            phase = rng.uniform(0, REPORT_EVERY_S)
            lines: dict[int, dict[str, list[int]]] = defaultdict(dict)
            for fetched, sid, size in served:
                j = int((fetched + 0.3 - h0 - phase) // REPORT_EVERY_S) + 1
                line = lines[j].setdefault(sid, [0, 0])
                line[0] += size
                line[1] += 1
            for j in range(1, int(HOUR_S / REPORT_EVERY_S) + 1):
                sent = h0 + phase + j * REPORT_EVERY_S
                report_pk = loader.new_id("usage_reports")
                mine = lines.get(j, {})
                loader.add(
                    "usage_reports",
                    (report_pk, node_id, f"r{j}", stream_id, at(sent),
                     at(sent - REPORT_EVERY_S), at(sent), sum(v[0] for v in mine.values()),
                     len(mine), 0, 0, 0),
                )  # fmt: skip
                for sid, (nbytes, count) in mine.items():
                    loader.add(
                        "usage_lines",
                        (loader.new_id("usage_lines"), report_pk, sid, nbytes, count,
                         count * 2, True),
                    )  # fmt: skip
            await loader.flush()
        await loader.flush(force=True)
        for table in ("usage_reports", "usage_lines", "viewer_receipt_batches", "viewer_receipts"):
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {loader.next_id[table]})"
            )
        await conn.execute("SET session_replication_role = DEFAULT")
        # Generated node by node, the rows would lie in node order; a coordinator appends them
        # in time order, which is what reconciliation's reads by time rely on.
        for table, index in (
            ("viewer_receipts", "ix_viewer_receipts_received_at"),
            ("usage_reports", "ix_usage_reports_received_at"),
            ("usage_lines", "ix_usage_lines_report_pk"),  # a report's lines come with it
        ):
            await conn.execute(f"CLUSTER {table} USING {index}")
        await conn.execute("VACUUM ANALYZE")
        counts = {
            "accounts": len(accounts),
            "streams": len(streams),
            "nodes": len(nodes),
            "node_networks": len(networks),
            "segments": sum(len(v) for v in segments.values()),
            **loader.counts,
        }
        counts["mean concurrent viewers per node (x1000)"] = int(
            concurrency_s / HOUR_S / max(1, args.nodes) * 1000
        )
        return counts
    finally:
        await conn.close()


async def fund_streams(url: str, data_dir: Path, h0: int) -> None:
    """Every stream's budget funded (100 USD, well above an hour's delivery)."""
    from sqlalchemy import select

    from streamr_coordinator.context import AppContext
    from streamr_coordinator.payouts.budgets import fund_stream
    from streamr_coordinator.settings import Settings
    from streamr_coordinator.streams.models import Stream

    ctx = AppContext.from_settings(Settings(database_url=url, data_dir=data_dir))
    try:
        async with ctx.sessions() as session:
            streams = list(await session.scalars(select(Stream).order_by(Stream.name)))
            for stream in streams:
                await fund_stream(
                    session, stream, 100_000_000, actor="bench", funding_id=f"bench-{h0}"
                )
    finally:
        await ctx.close()


# ---------------------------------------------------------------- measurement (child process)


STAT_SQL = """
SELECT coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0),
       coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0), coalesce(sum(n_tup_del), 0)
FROM pg_stat_user_tables
"""
STATEMENTS_SQL = """
SELECT coalesce(sum(calls), 0), coalesce(sum(rows), 0), coalesce(sum(total_exec_time), 0)
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND query NOT ILIKE '%pg_stat%'
"""


async def db_counters(conn: Any) -> dict[str, float]:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    read, ins, upd, dele = await conn.fetchrow(STAT_SQL)
    calls, rows, exec_ms = await conn.fetchrow(STATEMENTS_SQL)
    return {
        "rows read": int(read),
        "rows inserted": int(ins),
        "rows updated": int(upd),
        "rows deleted": int(dele),
        "statements": int(calls),
        "statement rows": int(rows),
        "server ms": float(exec_ms),
    }


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def measure(
    url: str, data_dir: str, h0: int, mode: str, interval_s: int, catchup_s: int
) -> dict[str, Any]:
    """Run the four steps against ``url``; ``mode`` is ``time``, ``tracemalloc`` or
    ``profile``."""
    import asyncpg

    from streamr_coordinator.context import AppContext
    from streamr_coordinator.payouts.accrual import accrue_pending
    from streamr_coordinator.payouts.cycle import run_cycle
    from streamr_coordinator.settings import Settings
    from streamr_coordinator.verification.reconcile_service import reconcile_due
    from streamr_coordinator.verification.trust_service import SETTLE_S, update_trust

    settings = Settings(
        database_url=url,
        data_dir=Path(data_dir),
        reconcile_interval_s=interval_s,
        reconcile_catchup_window_s=catchup_s,
        reconcile_grace_s=RECONCILE_GRACE_S,
        usage_report_interval_s=REPORT_EVERY_S,
    )
    ctx = AppContext.from_settings(settings)
    stats = await asyncpg.connect(dsn_of(url))
    hour_end = at(h0 + HOUR_S)
    reconcile_now = hour_end + timedelta(seconds=RECONCILE_GRACE_S)
    # Trust reads rows once they are SETTLE_S old by the wall clock they were written at, so
    # the later steps run "a little later", as the worker would.
    later_now = reconcile_now

    async def reconciliation() -> dict[str, Any]:
        total: dict[str, Any] = {
            "runs": 0,
            "intervals": 0,
            "windows": 0,
            "reconciliations": 0,
            "paid_bytes": 0,
        }
        while True:
            result = await reconcile_due(ctx, now=reconcile_now)
            total["runs"] += 1
            if not result["intervals"]:
                return total
            for key in ("intervals", "windows", "reconciliations", "paid_bytes"):
                total[key] += result.get(key, result["intervals"] if key == "windows" else 0)

    async def trust_update() -> dict[str, Any]:
        nonlocal later_now
        later_now = max(reconcile_now, datetime.now(UTC)) + timedelta(seconds=SETTLE_S + 1)
        total: dict[str, Any] = {"runs": 0, "probes": 0, "reconciliations": 0}
        levels: dict[str, int] = {}
        while True:
            result = await update_trust(ctx, now=later_now)
            total["runs"] += 1
            if "skipped" in result:
                raise BenchError(f"trust update skipped: {result}")
            if not result["probes"] and not result["reconciliations"]:
                total["levels"] = levels
                return total
            total["probes"] += result["probes"]
            total["reconciliations"] += result["reconciliations"]
            levels = result["levels"]

    async def accrual() -> dict[str, Any]:
        total: dict[str, Any] = {"runs": 0}
        while True:
            run = await accrue_pending(ctx.sessions, settings, now=later_now)
            total["runs"] += 1
            if not run.intervals:
                if run.skipped:
                    raise BenchError(f"accrual skipped {run.skipped} intervals")
                return total
            for key, value in run.as_dict().items():
                if isinstance(value, int):
                    total[key] = total.get(key, 0) + value

    async def payout_cycle() -> dict[str, Any]:
        run = await run_cycle(ctx.sessions, settings, now=later_now)
        return run.as_dict()

    steps = dict(zip(STEPS, (reconciliation, trust_update, accrual, payout_cycle), strict=True))
    out: dict[str, Any] = {"rss_before_kib": rss_kib(), "steps": {}}
    profiler = None
    if mode == "tracemalloc":
        import tracemalloc

        tracemalloc.start()
    elif mode == "profile":
        import cProfile

        profiler = cProfile.Profile()
    try:
        for name, step in steps.items():
            await asyncio.sleep(1.1)  # PostgreSQL publishes table statistics about once a second
            before = await db_counters(stats)
            if mode == "tracemalloc":
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
            if profiler:
                profiler.enable()
            started = time.perf_counter()
            result = await step()
            wall = time.perf_counter() - started
            if profiler:
                profiler.disable()
            entry: dict[str, Any] = {"wall_s": wall, "result": result}
            if mode == "tracemalloc":
                entry["python_peak_kib"] = (tracemalloc.get_traced_memory()[1] - base) // 1024
            await asyncio.sleep(1.1)
            after = await db_counters(stats)
            entry["db"] = {key: after[key] - before[key] for key in after}
            out["steps"][name] = entry
        out["max_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if mode == "tracemalloc":
            out["python_peak_kib"] = tracemalloc.get_traced_memory()[1] // 1024
        out["checks"] = await sanity(stats)
    finally:
        await stats.close()
        await ctx.close()
    if profiler:
        import io
        import pstats

        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(45)
        out["profile"] = text.getvalue()
    return out


async def sanity(conn: Any) -> dict[str, int]:
    """Figures that say the steps did the whole job (checked by the parent)."""
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM reconciliations) AS reconciliations,
                  (SELECT count(*) FROM reconciliations WHERE outcome = 'disagree') AS disagree,
                  (SELECT count(*) FROM discrepancies) AS discrepancies,
                  (SELECT coalesce(sum(paid_bytes), 0) FROM reconciliations) AS paid_bytes,
                  (SELECT coalesce(sum(claimed_bytes), 0) FROM reconciliations) AS claimed_bytes,
                  (SELECT count(*) FROM accruals) AS accruals,
                  (SELECT count(*) FROM reconciliations r WHERE NOT EXISTS
                      (SELECT 1 FROM accruals a WHERE a.reconciliation_id = r.id)) AS unaccrued,
                  (SELECT count(*) FROM trust_states) AS trust_states,
                  (SELECT count(*) FROM payouts) AS payouts,
                  (SELECT coalesce(sum(amount_micro_usd), 0) FROM payouts) AS paid_out_micro_usd,
                  (SELECT count(*) FROM ledger_entries) AS ledger_entries"""
    )
    return {key: int(value) for key, value in dict(row).items()}


def child_main(argv: list[str]) -> int:
    url, data_dir, h0, mode, interval_s, catchup_s = argv
    result = asyncio.run(measure(url, data_dir, int(h0), mode, int(interval_s), int(catchup_s)))
    print(json.dumps(result))
    return 0


# ---------------------------------------------------------------- the run


def copy_database(server: PostgresServer, template: str) -> str:
    url = server.create_database()
    name = url.rsplit("/", 1)[1]
    psql(server, "postgres", f'DROP DATABASE "{name}"')
    psql(server, "postgres", f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return url


def psql(server: PostgresServer, database: str, sql: str) -> str:
    result = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(server.port), "-U", server.user, "-d", database,
         "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise BenchError(f"psql failed: {result.stderr.strip()}")
    return result.stdout.strip()


def run_child(
    url: str, data_dir: Path, h0: int, mode: str, args: argparse.Namespace
) -> dict[str, Any]:
    data_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            url,
            str(data_dir),
            str(h0),
            mode,
            str(args.interval_s),
            str(args.catchup_window_s),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"the {mode} run failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def mib(kib: float) -> str:
    return f"{kib / 1024:,.0f} MiB"


def report(counts: dict[str, int], timed: dict[str, Any], traced: dict[str, Any] | None) -> None:
    print("\n| step | wall | SQL statements | server time | rows read | rows written |", end="")
    print(" Python heap peak |" if traced else "")
    print("|---|---:|---:|---:|---:|---:|" + ("---:|" if traced else ""))
    total = 0.0
    for name in STEPS:
        step = timed["steps"][name]
        db = step["db"]
        total += step["wall_s"]
        written = db["rows inserted"] + db["rows updated"] + db["rows deleted"]
        line = (
            f"| {name} | {step['wall_s']:.2f} s | {db['statements']:,} | "
            f"{db['server ms'] / 1000:.2f} s | {db['rows read']:,} | {written:,} |"
        )
        if traced:
            line += f" {mib(traced['steps'][name]['python_peak_kib'])} |"
        print(line)
    print(f"| **total** | **{total:.2f} s** | | | | |" + (" |" if traced else ""))
    print(
        f"\nPeak memory: RSS {mib(timed['max_rss_kib'])} (the measuring process; "
        f"{mib(timed['rss_before_kib'])} before the steps)"
        + (
            f"; Python heap peak {mib(traced['python_peak_kib'])} (tracemalloc, separate run)"
            if traced
            else ""
        )
    )
    for name in STEPS:
        print(f"  {name}: {json.dumps(timed['steps'][name]['result'])}")
    print(f"  after the steps: {json.dumps(timed['checks'])}")
    verdict = "met" if total < TARGET_S else "NOT met"
    print(f"\nTarget: reconciliation + trust + accrual + payout under {TARGET_S:.0f} s: "
          f"{verdict} ({total:.2f} s)")  # fmt: skip


def check(counts: dict[str, int], timed: dict[str, Any], nodes: int, interval_s: int) -> list[str]:
    problems = []
    checks = timed["checks"]
    rec = timed["steps"]["reconciliation"]["result"]
    intervals = HOUR_S // interval_s
    if rec["intervals"] < intervals:
        problems.append(f"only {rec['intervals']} intervals were reconciled ({intervals} expected)")
    if checks["unaccrued"]:
        problems.append(f"{checks['unaccrued']} reconciliations were not accrued")
    if checks["reconciliations"] < nodes * rec["windows"] * 0.9:
        problems.append(f"{checks['reconciliations']} reconciliations for {nodes} nodes")
    if checks["paid_bytes"] <= 0 or checks["paid_bytes"] > checks["claimed_bytes"]:
        problems.append(f"paid {checks['paid_bytes']} of {checks['claimed_bytes']} claimed bytes")
    if checks["payouts"] < nodes:
        problems.append(f"{checks['payouts']} payout rows for {nodes} nodes")
    return problems


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Reconciliation, trust, accrual and a payout cycle over one hour of usage."
    )
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--viewers-per-node", type=float, default=3.0, help="mean concurrent")
    parser.add_argument("--segment-s", type=int, default=2, choices=[2, 4, 6])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--interval-s",
        type=int,
        default=60,
        choices=[60, 120, 300, 600],
        help="reconcile_interval_s (the setting's default: 60)",
    )
    parser.add_argument(
        "--catchup-window-s",
        type=int,
        default=3600,
        help="reconcile_catchup_window_s (the setting's default: 3600; 0: interval by interval)",
    )
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the heap-peak run")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile run")
    args = parser.parse_args(argv)
    if not 20 <= args.nodes <= 20_000 or not 0 < args.viewers_per_node <= 50:
        parser.error("--nodes must be 20 to 20000 and --viewers-per-node above 0, at most 50")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # An hour that ended a minute ago: its reconciliation is due, as in production.
    h0 = (int(time.time()) // 60 - 61) * 60
    print(
        f"{args.nodes} nodes in {min(STREAMS, args.nodes)} streams, {args.viewers_per_node} "
        f"concurrent viewers per node on average, {args.segment_s} s segments at "
        f"{BITRATE_BPS / 1e6:.0f} Mbit/s, seed {args.seed}; hour from {at(h0).isoformat()}",
        flush=True,
    )
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="streamr-bench-")))
            server = stack.enter_context(
                run_postgres(
                    # No autovacuum: the template is analysed once, and nothing else should
                    # read tables during a measurement.
                    # random_page_cost 1.1: the usual setting for SSD storage (docs/operator.md).
                    settings={
                        "shared_preload_libraries": "pg_stat_statements",
                        "autovacuum": "off",
                        "random_page_cost": "1.1",
                    }
                )
            )
            from streamr_coordinator.migrations.runner import upgrade

            url = server.create_database()
            template = url.rsplit("/", 1)[1]
            started = time.perf_counter()
            upgrade(url)
            psql(server, template, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            counts = asyncio.run(generate(url, args, h0))
            asyncio.run(fund_streams(url, tmp / "fund", h0))
            size = psql(
                server, template, "SELECT pg_size_pretty(pg_database_size(current_database()))"
            )
            print(f"generated and loaded in {time.perf_counter() - started:.0f} s ({size}):")
            for table, count in counts.items():
                print(f"  {table}: {count:,}")
            sys.stdout.flush()

            timed = run_child(copy_database(server, template), tmp / "time", h0, "time", args)
            traced = None
            if not args.no_tracemalloc:
                traced = run_child(
                    copy_database(server, template),
                    tmp / "trace",
                    h0,
                    "tracemalloc",
                    args,
                )
            report(counts, timed, traced)
            if args.profile:
                profiled = run_child(
                    copy_database(server, template), tmp / "prof", h0, "profile", args
                )
                print("\ncProfile (a separate run; times inflated by the profiler):")
                for name in STEPS:
                    print(f"  {name}: {profiled['steps'][name]['wall_s']:.2f} s")
                print(profiled["profile"])
            problems = check(counts, timed, args.nodes, args.interval_s)
    except Exception as exc:  # any failure to run is reported the same way
        print(f"run.py: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"run.py: FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(child_main(sys.argv[2:]))
    sys.exit(main())
