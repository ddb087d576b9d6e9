"""bulk.insert_rows on SQLite and PostgreSQL: order, ids, constraints, types, upserts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    select,
)
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession

from streamr_coordinator.bulk import insert_rows
from streamr_coordinator.database import UTCDateTime, create_engine, session_factory

META = MetaData()
THINGS = Table(
    "bulk_things",
    META,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("share", Float),
    Column("at", UTCDateTime, nullable=False),
    Column("detail", JSON),
    UniqueConstraint("key"),
)
KEYS = Table(
    "bulk_keys",
    META,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(16), nullable=False),
)
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def thing(key: str, amount: int = 1, **overrides: Any) -> dict[str, Any]:
    row = {"key": key, "amount": amount, "share": 0.5, "at": T0, "detail": {"k": [key]}}
    return row | overrides


Run = Callable[[Callable[[AsyncSession], Awaitable[Any]]], Any]


@pytest.fixture(params=["sqlite", "postgresql"])
def run(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Run]:
    """Runs a function with a session of a fresh database holding ``THINGS``, committed."""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_server").create_database()
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'bulk.sqlite3'}"
    engine = create_engine(url)
    sessions = session_factory(engine)
    loop = asyncio.new_event_loop()

    async def create() -> None:
        async with engine.begin() as connection:
            await connection.run_sync(META.create_all)

    loop.run_until_complete(create())

    def go(work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
        async def inside() -> Any:
            async with sessions() as session:
                try:
                    answer = await work(session)
                except Exception:
                    await session.rollback()
                    raise
                await session.commit()
                return answer

        return loop.run_until_complete(inside())

    yield go
    loop.run_until_complete(engine.dispose())
    loop.close()


def stored(run: Run) -> list[Any]:
    async def read(session: AsyncSession) -> list[Any]:
        return list(await session.execute(select(THINGS).order_by(THINGS.c.id)))

    return run(read)


def test_rows_are_written_in_their_order_with_their_types(run: Run):
    rows = [thing(f"k{i}", 10**12 + i, at=T0 + timedelta(seconds=i)) for i in (3, 1, 2)]
    rows[1]["detail"] = None
    rows[2]["share"] = None
    assert run(lambda s: insert_rows(s, THINGS, [])) == []
    run(lambda s: insert_rows(s, THINGS, rows))
    got = stored(run)
    assert [r.key for r in got] == ["k3", "k1", "k2"]  # ids follow the rows' order
    assert [r.amount for r in got] == [10**12 + 3, 10**12 + 1, 10**12 + 2]
    assert [r.at for r in got] == [T0 + timedelta(seconds=i) for i in (3, 1, 2)]
    assert all(r.at.tzinfo is not None for r in got)
    assert [r.detail for r in got] == [{"k": ["k3"]}, None, {"k": ["k2"]}]
    assert [r.share for r in got] == [0.5, 0.5, None]


def test_many_rows_and_rows_of_one_column(run: Run):
    rows = [thing(f"n{i}", i) for i in range(5000)]
    run(lambda s: insert_rows(s, THINGS, rows))
    assert [r.amount for r in stored(run)] == list(range(5000))
    run(lambda s: insert_rows(s, KEYS, [{"key": "p"}, {"key": "q"}]))

    async def keys(session: AsyncSession) -> list[str]:
        return list(await session.scalars(select(KEYS.c.key).order_by(KEYS.c.id)))

    assert run(keys) == ["p", "q"]


def test_a_violated_constraint_writes_nothing_of_the_statement(run: Run):
    run(lambda s: insert_rows(s, THINGS, [thing("a")]))
    with pytest.raises(IntegrityError):
        run(lambda s: insert_rows(s, THINGS, [thing("b"), thing("a")]))
    assert [r.key for r in stored(run)] == ["a"]


@pytest.mark.parametrize("upsert", [(), ("key",)], ids=["insert", "upsert"])
def test_a_naive_datetime_is_refused_before_anything_is_written(run: Run, upsert):
    rows = [thing("a"), thing("b", at=T0.replace(tzinfo=None))]
    with pytest.raises((ValueError, StatementError), match="naive datetime"):
        run(lambda s: insert_rows(s, THINGS, rows, upsert=upsert))
    assert stored(run) == []


def test_the_rows_are_part_of_the_sessions_transaction(run: Run):
    async def then_fail(session: AsyncSession) -> None:
        await insert_rows(session, THINGS, [thing("a")])  # the transaction's first statement
        await insert_rows(session, THINGS, [thing("b")], upsert=("key",))
        raise RuntimeError("the caller fails after the inserts")

    with pytest.raises(RuntimeError):
        run(then_fail)
    assert stored(run) == []


def test_upsert_updates_the_other_columns_of_existing_keys(run: Run):
    run(lambda s: insert_rows(s, THINGS, [thing("a", 1), thing("b", 2)]))
    again = [thing("b", 20, detail={"v": 2}), thing("c", 30)]
    run(lambda s: insert_rows(s, THINGS, again, upsert=("key",)))
    got = {r.key: (r.amount, r.detail) for r in stored(run)}
    assert got == {"a": (1, {"k": ["a"]}), "b": (20, {"v": 2}), "c": (30, {"k": ["c"]})}


def test_upsert_may_update_only_the_columns_it_names(run: Run):
    run(lambda s: insert_rows(s, THINGS, [thing("a", 1, share=0.1)]))
    again = [thing("a", 99, share=0.9), thing("b", 2)]
    run(lambda s: insert_rows(s, THINGS, again, upsert=("key",), update=("share",)))
    got = {r.key: (r.amount, r.share) for r in stored(run)}
    assert got == {"a": (1, 0.9), "b": (2, 0.5)}


def test_returning_gives_each_written_row_on_postgresql(run: Run, request: pytest.FixtureRequest):
    returned = run(
        lambda s: insert_rows(s, THINGS, [thing("x"), thing("y")], returning=("id", "key"))
    )
    if "postgresql" in request.node.callspec.id:
        ids = {r.key: r.id for r in stored(run)}
        assert [(row.id, row.key) for row in returned] == [(ids["x"], "x"), (ids["y"], "y")]
    else:
        assert returned == []  # SQLite: read back what is needed


def test_only_the_tables_own_columns_reach_the_sql(run: Run):
    bad = [
        {"rows": [thing("a") | {"key) --": 1}]},
        {"rows": [thing("a")], "returning": ("id; drop",)},
        {"rows": [thing("a")], "upsert": ("key) do nothing --",)},
    ]
    for arguments in bad:
        with pytest.raises(ValueError, match="bulk_things has no column"):
            run(lambda s, a=arguments: insert_rows(s, THINGS, **a))
    assert stored(run) == []
