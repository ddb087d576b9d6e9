"""Writing many rows at once to PostgreSQL: ``bulk.insert_rows`` against COPY and executemany.

    .venv/bin/python bench/bulk_insert/run.py [--rows 1000,60000] [--rounds 5]

The worker writes rows by the thousand, through ``streamr_coordinator.bulk.insert_rows``:
reconciliations and running totals, trust events, accruals and ledger entries (an hour
reconciled minute by minute at 1,000 nodes accrues 60,000 intervals). Side by side, in one run,
on one throwaway PostgreSQL on 127.0.0.1, into a table shaped like ``accruals`` (21 columns:
integers, strings, timestamps), each inside a transaction that is rolled back:

* ``COPY``: asyncpg's ``copy_records_to_table`` with the raw values (the reference);
* ``insert_rows``: a plain insert, which is a COPY after each column's bind processing;
* ``unnest``: ``insert_rows`` returning the ids, which is how it upserts or returns: one
  ``INSERT ... SELECT FROM unnest(one array per column)``;
* ``executemany``: SQLAlchemy's ``insert(table)`` with the list of rows (what a plain ORM bulk
  insert does).

It prints the median time per batch and each against COPY. The exit status is non-zero only if
a way wrote the wrong number of rows, never because of the timings.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "coordinator"))

from sqlalchemy import (  # noqa: E402
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession  # noqa: E402

from streamr_coordinator.bulk import insert_rows  # noqa: E402
from streamr_coordinator.cluster.services import run_postgres  # noqa: E402
from streamr_coordinator.database import UTCDateTime, create_engine, session_factory  # noqa: E402

META = MetaData()
ROWS = Table(
    "bench_accruals",
    META,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("reconciliation_id", Integer, nullable=False),
    Column("node_id", String(36), nullable=False),
    Column("stream_id", String(36), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("interval_start", UTCDateTime, nullable=False),
    Column("interval_end", UTCDateTime, nullable=False),
    *(
        Column(name, BigInteger, nullable=False)
        for name in (
            "paid_bytes",
            "cum_bytes_before",
            "rate_micro_usd_per_gb",
            "platform_fee_bps",
            "pay_bps",
            "earned_micro_usd",
            "owed_micro_usd",
            "gross_micro_usd",
            "friend_micro_usd",
            "fee_micro_usd",
            "unfunded_micro_usd",
            "unfunded_bytes",
        )
    ),
    Column("transaction_id", Integer, nullable=False),
    Column("accrued_at", UTCDateTime, nullable=False),
)
T0 = datetime(2026, 11, 27, tzinfo=UTC)


def make_rows(n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        start = T0 + timedelta(minutes=i % 60)
        row: dict[str, Any] = {
            "reconciliation_id": i,
            "node_id": f"{i % 1000:08d}-0000-4000-8000-000000000000",  # uuid-shaped, 36
            "stream_id": f"{i % 20:08d}-0000-4000-8000-111111111111",
            "seq": i,
            "interval_start": start,
            "interval_end": start + timedelta(minutes=1),
        }
        for k, column in enumerate(ROWS.columns):
            if isinstance(column.type, BigInteger):
                row[column.name] = i * 1_000 + k
        row["transaction_id"] = i // 60
        row["accrued_at"] = T0
        rows.append(row)
    return rows


async def by_copy(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    names = list(rows[0])
    await session.execute(select(1))  # the transaction is open: COPY joins it
    connection = await (await session.connection()).get_raw_connection()
    records = [tuple(row[name] for name in names) for row in rows]
    await connection.driver_connection.copy_records_to_table(
        ROWS.name, records=records, columns=names
    )


async def by_insert_rows(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await insert_rows(session, ROWS, rows)  # COPY, after each column's bind processing


async def by_unnest(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await insert_rows(session, ROWS, rows, returning=("id",))  # as upserts go: unnest


async def by_executemany(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await session.execute(insert(ROWS), rows)


WAYS: dict[str, Callable[[AsyncSession, list[dict[str, Any]]], Awaitable[None]]] = {
    "COPY": by_copy,
    "insert_rows": by_insert_rows,
    "unnest": by_unnest,
    "executemany": by_executemany,
}


async def measure(url: str, sizes: list[int], rounds: int) -> bool:
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with engine.begin() as connection:
        await connection.run_sync(META.create_all)
    ok = True
    print(f"{'rows':>7}  {'way':<12} {'median':>10}  {'vs COPY':>8}")
    for size in sizes:
        rows = make_rows(size)
        medians = {}
        for way, write in WAYS.items():
            if way == "executemany" and size > 10_000:
                continue  # a statement per row: minutes, and the ratio is clear at 1,000
            times = []
            for _ in range(rounds):
                async with sessions() as session:
                    started = time.perf_counter()
                    await write(session, rows)
                    times.append(time.perf_counter() - started)
                    written = await session.scalar(select(func.count()).select_from(ROWS))
                    await session.rollback()
                if written != size:
                    print(f"{way} wrote {written} rows of {size}", file=sys.stderr)
                    ok = False
            medians[way] = statistics.median(times)
            ratio = medians[way] / medians["COPY"]
            print(f"{size:>7,}  {way:<12} {medians[way] * 1000:>8.1f} ms  {ratio:>7.2f}x")
    await engine.dispose()
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000,60000", help="batch sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=5, help="batches per way and size")
    args = parser.parse_args()
    sizes = [int(n) for n in args.rows.split(",")]
    with run_postgres() as server:
        url = server.create_database()
        ok = asyncio.run(measure(url, sizes, args.rounds))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
