"""Many rows in one go: the worker's writes of thousands of rows at a time.

The worker writes rows by the thousand (reconciliations and running totals, discrepancies, trust
events, accruals, ledger entries). On PostgreSQL a plain insert goes as one ``COPY`` on the
session's connection, the fastest way in; an insert that must upsert or return columns goes as
one array per column, ``unnest``-ed back into rows by the server (a statement of a handful of
parameters however many rows). ``bench/bulk_insert`` has the figures: at 60,000 rows ``unnest``
takes four to five times as long as COPY, and at 1,000 rows an executemany about twice as long.
SQLite runs in-process, where an executemany costs nothing extra, so it gets one.

Either way every value passes its column's bind processing first (``UTCDateTime`` still refuses
a naive datetime, JSON is serialised), rows keep their order (serial ids come out in the order
of the rows), and the rows are written in the session's transaction, with everything else in it
or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import asyncpg
from sqlalchemy import (
    JSON,
    BindParameter,
    Column,
    Row,
    Table,
    Text,
    bindparam,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

_PG = postgresql.dialect()


def is_postgresql(session: AsyncSession) -> bool:
    return session.bind.dialect.name == "postgresql"


def unnest_rows(table: Table, names: Sequence[str]) -> tuple[str, list[BindParameter[Any]]]:
    """``unnest(one array per column) WITH ORDINALITY AS r(names..., n)``, for the FROM of a
    PostgreSQL statement, and its parameters (fill them with ``column_arrays``)."""
    arrays = []
    params = []
    for name, column in zip(names, _columns_of(table, names), strict=True):
        if isinstance(column.type, JSON):
            arrays.append(f"CAST(:{name} AS json[])")
            params.append(bindparam(name, type_=postgresql.ARRAY(Text)))
        else:
            arrays.append(f"CAST(:{name} AS {column.type.compile(dialect=_PG)}[])")
            params.append(bindparam(name, type_=postgresql.ARRAY(column.type)))
    return f"unnest({', '.join(arrays)}) WITH ORDINALITY AS r({', '.join(names)}, n)", params


def column_arrays(
    table: Table, rows: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> dict[str, list[Any]]:
    """The rows' values column by column, for ``unnest_rows``'s parameters."""
    if len(names) == 1:  # itemgetter of one name gives values, not tuples
        by_column = [[row[names[0]] for row in rows]]
    else:
        by_column = [list(values) for values in zip(*map(itemgetter(*names), rows), strict=True)]
    arrays = {}
    for name, values in zip(names, by_column, strict=True):
        if isinstance(table.c[name].type, JSON):
            values = [None if value is None else json.dumps(value) for value in values]
        arrays[name] = values
    return arrays


async def insert_rows(
    session: AsyncSession,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    upsert: Sequence[str] = (),
    update: Sequence[str] | None = None,
    returning: Sequence[str] = (),
) -> list[Row[Any]]:
    """Insert ``rows`` (mappings with the same keys, all columns of ``table``) in their order,
    in the session's transaction.

    ``upsert`` names a unique key: a row whose key exists updates that row instead, the
    columns ``update`` names (by default all but the key). ``returning`` columns come back, a
    row per row written, on PostgreSQL only (SQLite returns nothing from an executemany: read
    back what you need there). A violated constraint is the IntegrityError any insert raises,
    and nothing of the statement is written.
    """
    if not rows:
        return []
    names = list(rows[0])
    updated = [n for n in names if n not in upsert] if update is None else list(update)
    _columns_of(table, [*names, *upsert, *updated, *returning])
    if not is_postgresql(session):
        statement: Any = sqlite.insert(table) if upsert else insert(table)
        if upsert:
            statement = statement.on_conflict_do_update(
                index_elements=list(upsert),
                set_={n: statement.excluded[n] for n in updated},
            )
        await session.execute(statement, list(rows))
        return []
    if not upsert and not returning:
        await _copy(session, table, rows, names)
        return []
    source, params = unnest_rows(table, names)
    columns = ", ".join(names)
    # Names are the table's own columns (``_columns_of`` refused any other); values are bound.
    sql = f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {source} ORDER BY n"  # noqa: S608
    if upsert:
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in updated)
        sql += f" ON CONFLICT ({', '.join(upsert)}) DO UPDATE SET {updates}"
    if returning:
        sql += f" RETURNING {', '.join(returning)}"
    result = await session.execute(text(sql).bindparams(*params), column_arrays(table, rows, names))
    return list(result) if returning else []


async def _copy(
    session: AsyncSession, table: Table, rows: Sequence[Mapping[str, Any]], names: list[str]
) -> None:
    dialect = session.bind.dialect
    processors = [
        (i, process)
        for i, column in enumerate(_columns_of(table, names))
        if (process := column.type.dialect_impl(dialect).bind_processor(dialect))
    ]
    if len(names) == 1:  # itemgetter of one name gives values, not tuples
        records = [(row[names[0]],) for row in rows]
    else:
        records = list(map(itemgetter(*names), rows))
    if processors:
        records = [_processed(record, processors) for record in records]
    connection = await (await session.connection()).get_raw_connection()
    driver = connection.driver_connection
    if not driver.is_in_transaction():
        # The driver opens the transaction at the first statement, and a COPY outside one
        # would commit on its own: these rows belong to the session's transaction.
        await session.execute(select(1))
    try:
        await driver.copy_records_to_table(table.name, records=records, columns=names)
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityError(f"COPY {table.name}", None, exc) from exc


def _processed(
    record: tuple[Any, ...], processors: list[tuple[int, Callable[[Any], Any]]]
) -> tuple[Any, ...]:
    values = list(record)
    for i, process in processors:
        values[i] = process(values[i])
    return tuple(values)


def _columns_of(table: Table, names: Sequence[str]) -> list[Column[Any]]:
    """The named columns: these names go into SQL text, so only the table's own are taken."""
    unknown = [name for name in names if name not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no column {', '.join(map(repr, unknown))}")
    return [table.c[name] for name in names]
