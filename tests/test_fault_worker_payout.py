"""Fault: a worker is killed (SIGKILL) in the middle of a payout cycle (issue 7).

Two real ``streamr worker`` processes share one PostgreSQL (and Redis). The ledger is seeded
through the payouts code (a stream's funding and one accrual per node), with enough nodes that
the cycle, one database transaction per node, takes a while. The worker that holds the
``payout_cycle`` lease (``job_leases``) is killed once part of the nodes are paid; the other
worker must take the job over when the lease expires and finish it: every node settled exactly
once for the period, each node's earnings moved once and exactly, the ledger summing to zero.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from streamr_coordinator.cluster.services import (
    PostgresServer,
    RedisServer,
    ServerMissing,
    run_postgres,
    run_redis,
)
from streamr_coordinator.database import create_engine, session_factory, utcnow
from streamr_coordinator.payouts import books, ledger
from streamr_coordinator.payouts.economics import period_bounds
from streamr_coordinator.payouts.ledger import AccountKind

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parent.parent
STREAMR = str(ROOT / ".venv/bin/streamr")

NODES = 1500
MINIMUM = 1_000_000  # the default minimum payout
LEASE_S = 3  # how soon the surviving worker may take the cycle over
STREAM = str(uuid.UUID(int=7))


def earnings_of(index: int) -> int:
    """Each node's seeded earnings: distinct amounts; every tenth node under the minimum."""
    if index % 10 == 9:
        return MINIMUM // 2 + index
    return 2 * MINIMUM + 7 * index


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[tuple[PostgresServer, RedisServer]]:
    try:
        with run_postgres() as postgres, run_redis() as redis:
            yield postgres, redis
    except ServerMissing as exc:
        pytest.fail(str(exc))


def dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def seed(url: str) -> dict[str, int]:
    """Fund one stream and accrue each node's earnings (friend share + fee) through the
    ledger code, in one transaction; the node ids and their earnings."""
    nodes = {str(uuid.uuid4()): earnings_of(i) for i in range(NODES)}
    fees = {node: amount // 9 for node, amount in nodes.items()}
    drafts = [ledger.funding("fund:fault-seed", STREAM, sum(nodes.values()) + sum(fees.values()))]
    drafts += [
        ledger.accrual(f"accrue:fault-seed:{node}", STREAM, node, amount, fees[node])
        for node, amount in nodes.items()
    ]
    specs = [
        books.platform_account(AccountKind.STREAMER_FUNDING),
        books.platform_account(AccountKind.PLATFORM_FEES),
        books.stream_budget(STREAM),
        *(books.node_earnings(node, STREAM, None) for node in nodes),
    ]
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            ids = await books.ensure_accounts(session, specs)
            claimed = await books.claim_keys(
                session,
                [
                    {
                        "key": draft.key,
                        "kind": draft.kind.value,
                        "created_at": utcnow(),
                        "reconciliation_id": None,
                        "payout_id": None,
                        "stream_id": STREAM,
                        "node_id": None,
                        "actor": "test:seed",
                        "memo": "",
                    }
                    for draft in drafts
                ],
            )
            by_id = await books.lock_balances(session, ids.values())
            balances = {key: by_id[account_id] for key, account_id in ids.items()}
            await books.write_drafts(session, [(claimed[d.key], d) for d in drafts], ids, balances)
            await session.commit()
    finally:
        await engine.dispose()
    return nodes


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [STREAMR, "worker", "--jobs", "payout_cycle"], env=env, stdout=log, stderr=log
        )


async def wait_for(check, what: str, timeout_s: float, every_s: float = 0.02):
    """Until ``await check()`` is true; its value. A deadline that bounds a hang."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(every_s)


def test_killed_worker_mid_cycle_other_worker_completes_exactly_once(servers, tmp_path):
    postgres, redis = servers
    url = postgres.create_database()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}
    env |= {
        "STREAMR_DATABASE_URL": url,
        "STREAMR_REDIS_URL": redis.url,
        "STREAMR_DATA_DIR": str(tmp_path / "data"),
        "STREAMR_MINIMUM_PAYOUT_MICRO_USD": str(MINIMUM),
        "STREAMR_PAYOUT_CYCLE_INTERVAL_S": "1",
        "STREAMR_PAYOUT_CYCLE_LEASE_S": str(LEASE_S),
        "STREAMR_LOG_FORMAT": "json",
    }
    migrated = subprocess.run([STREAMR, "db", "upgrade"], env=env, capture_output=True, text=True)
    assert migrated.returncode == 0, migrated.stderr
    nodes = asyncio.run(seed(url))
    workers = [start_worker(env, tmp_path / f"worker-{i}.log") for i in range(2)]
    try:
        asyncio.run(scenario(url, nodes, workers, tmp_path))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


async def scenario(
    url: str, nodes: dict[str, int], workers: list[subprocess.Popen], tmp_path: Path
) -> None:
    period_start, _ = period_bounds(utcnow(), 86_400)  # the default period: UTC days
    db = await asyncpg.connect(dsn(url))
    try:

        async def paid() -> int:
            return await db.fetchval(
                "SELECT count(*) FROM payouts WHERE period_start = $1", period_start
            )

        async def lease() -> asyncpg.Record | None:
            return await db.fetchrow(
                "SELECT holder, fence FROM job_leases WHERE name = 'payout_cycle'"
            )

        # Part of the nodes are settled by whichever worker took the lease: kill it there.
        await wait_for(lambda: _at_least(paid, 50), "the cycle under way", timeout_s=60)
        held = await lease()
        assert held is not None and held["holder"] is not None
        pid = int(held["holder"].split(":")[1])
        by_pid = {worker.pid: worker for worker in workers}
        assert pid in by_pid, f"the lease holder {held['holder']} is not one of the workers"
        victim = by_pid[pid]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        survivor = next(w for w in workers if w is not victim)
        by_victim = {
            r["node_id"]
            for r in await db.fetch(
                "SELECT node_id FROM payouts WHERE period_start = $1", period_start
            )
        }
        settled_by_victim = len(by_victim)
        assert 0 < settled_by_victim < NODES, "the worker was not killed in the middle of its run"
        killed_run = await db.fetchrow(
            "SELECT id, outcome, fence FROM job_runs WHERE job = 'payout_cycle' AND holder = $1 "
            "ORDER BY id DESC LIMIT 1",
            held["holder"],
        )
        assert killed_run is not None and killed_run["outcome"] == "running"
        assert killed_run["fence"] == held["fence"]

        # The survivor takes over once the lease expired and settles every other node.
        await wait_for(lambda: _at_least(paid, NODES), "every node settled", timeout_s=60)

        async def takeover() -> asyncpg.Record | None:
            return await db.fetchrow(
                "SELECT holder, fence, outcome, details FROM job_runs "
                "WHERE job = 'payout_cycle' AND fence > $1 AND outcome = 'ok' "
                "ORDER BY fence LIMIT 1",
                held["fence"],
            )

        finished = await wait_for(takeover, "the survivor's run recorded", timeout_s=30)
        assert int(finished["holder"].split(":")[1]) == survivor.pid
        details = json.loads(finished["details"])
        # Paid nodes have nothing left to settle; the victim's carried-over ones are skipped.
        assert details["already_settled"] == sum(nodes[n] < MINIMUM for n in by_victim)
        assert details["sent"] + details["carried_over"] == NODES - settled_by_victim
        assert survivor.poll() is None, "the surviving worker died"

        # Exactly one payout per node and period; the right amounts.
        rows = await db.fetch(
            "SELECT node_id, status, amount_micro_usd, balance_micro_usd FROM payouts "
            "WHERE period_start = $1",
            period_start,
        )
        assert sorted(r["node_id"] for r in rows) == sorted(nodes), "a node missed or paid twice"
        for row in rows:
            earned = nodes[row["node_id"]]
            assert row["balance_micro_usd"] == earned
            if earned >= MINIMUM:
                assert (row["status"], row["amount_micro_usd"]) == ("sent", earned)
            else:
                assert (row["status"], row["amount_micro_usd"]) == ("carried_over", 0)

        # Each node's earnings moved once: paid nodes at 0, carried-over ones untouched.
        balances = dict(
            await db.fetch(
                "SELECT node_id, balance FROM ledger_accounts WHERE kind = 'node_earnings'"
            )
        )
        assert balances == {n: (0 if e >= MINIMUM else e) for n, e in nodes.items()}
        transactions = await db.fetch(
            "SELECT node_id, count(*) AS n FROM ledger_transactions WHERE kind = 'payout' "
            "GROUP BY node_id"
        )
        assert {r["node_id"]: r["n"] for r in transactions} == {
            n: 1 for n, e in nodes.items() if e >= MINIMUM
        }
        sent_total = sum(e for e in nodes.values() if e >= MINIMUM)
        sent_account = await db.fetchval(
            "SELECT balance FROM ledger_accounts WHERE key = $1",
            ledger.account_key(AccountKind.PAYOUTS_SENT),
        )
        assert sent_account == sent_total
        assert await db.fetchval("SELECT sum(balance) FROM ledger_accounts") == 0
        assert await db.fetchval("SELECT sum(amount) FROM ledger_entries") == 0
        per_transaction = await db.fetchval(
            "SELECT count(*) FROM (SELECT transaction_id FROM ledger_entries "
            "GROUP BY transaction_id HAVING sum(amount) <> 0) AS unbalanced"
        )
        assert per_transaction == 0
    finally:
        await db.close()


async def _at_least(count, wanted: int) -> bool:
    return await count() >= wanted
