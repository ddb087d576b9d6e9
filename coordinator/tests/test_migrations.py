"""Schema only through Alembic: upgrade from empty, match the models, downgrade, upgrade."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from streamr_coordinator.database import create_engine
from streamr_coordinator.migrations import runner
from streamr_coordinator.models import Base

TABLES = {
    "accounts",
    "refresh_tokens",
    "streams",
    "stream_transitions",
    "invites",
    "nodes",
    "segments",
    "viewer_sessions",
    "usage_reports",
    "usage_lines",
    "integrity_failures",
    "viewer_receipt_batches",
    "viewer_receipts",
    "job_leases",
    "job_runs",
    "node_stats",
    "usage_hourly",
    "probes",
    "reconciliations",
    "reconciliation_sessions",
    "receipt_tallies",
    "discrepancies",
    "trust_states",
    "trust_events",
    "node_networks",
    "verification_watermarks",
    "economics",
    "ledger_accounts",
    "ledger_transactions",
    "ledger_entries",
    "accruals",
    "payouts",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'm.sqlite3'}"
    return request.getfixturevalue("postgres_server").create_database()


def _inspect(url: str):
    async def run():
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:

                def look(sync_conn):
                    tables = set(inspect(sync_conn).get_table_names()) - {"alembic_version"}
                    context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                    return tables, compare_metadata(context, Base.metadata)

                return await conn.run_sync(look)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_upgrade_downgrade_upgrade(empty_database):
    runner.upgrade(empty_database)
    tables, diff = _inspect(empty_database)
    assert tables == TABLES
    assert diff == [], f"models and migrations disagree: {diff}"

    runner.downgrade(empty_database, "base")
    tables, _ = _inspect(empty_database)
    assert tables == set()

    runner.upgrade(empty_database)
    tables, diff = _inspect(empty_database)
    assert tables == TABLES and diff == []
