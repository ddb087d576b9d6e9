"""Writing the ledger: accounts, idempotent transactions, balances kept in the same database
transaction as the entries.

Posting a transaction, in order:
1. its accounts exist (inserted if missing; ``ON CONFLICT DO NOTHING``, so concurrent
   writers never fail on them);
2. its key is claimed by inserting the transaction row (``ON CONFLICT DO NOTHING``): a second
   post of the same key, even one racing the first on PostgreSQL, waits for the first to commit
   and then finds it, and is answered with it instead of posting twice;
3. the accounts are locked (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite has one writer at a
   time, and the first write of step 1 or 2 already holds it) and their balances read;
4. the caller's rule turns those balances into postings (e.g. capped by a budget), which are
   checked by the pure rules (sum zero, no overdraft) before any entry is written;
5. entries are written and balances moved by ``balance = balance + delta``; the CHECK
   constraint on the table refuses an overdraft even if a bug got this far.
The caller commits: everything, or nothing, happens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Insert, bindparam, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ..bulk import insert_rows, is_postgresql
from ..database import utcnow
from . import ledger
from .ledger import MAY_GO_NEGATIVE, AccountKind, Draft, kind_of
from .models import LedgerAccount, LedgerEntry, LedgerTransaction


@dataclass(frozen=True)
class AccountSpec:
    """An account a transaction touches, with what to record if it is created now."""

    key: str
    stream_id: str | None = None
    node_id: str | None = None
    owner_id: str | None = None


@dataclass(frozen=True)
class Posted:
    transaction_id: int
    created: bool  # False: the key had been posted before; nothing was written now
    draft: Draft | None = None


def platform_account(kind: AccountKind) -> AccountSpec:
    return AccountSpec(ledger.account_key(kind))


def stream_budget(stream_id: str, owner_id: str | None = None) -> AccountSpec:
    key = ledger.account_key(AccountKind.STREAM_BUDGET, stream_id)
    return AccountSpec(key, stream_id=stream_id, owner_id=owner_id)


def node_earnings(node_id: str, stream_id: str | None, owner_id: str | None) -> AccountSpec:
    key = ledger.account_key(AccountKind.NODE_EARNINGS, node_id)
    return AccountSpec(key, stream_id=stream_id, node_id=node_id, owner_id=owner_id)


def insert_ignoring_duplicates(session: AsyncSession, model: Any) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` in the session's dialect: it never aborts the
    surrounding transaction, unlike catching an IntegrityError would. ``model``: a mapped
    class, or its ``__table__`` for plain Core executemany (no ORM bookkeeping per row)."""
    dialect = session.bind.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(model).on_conflict_do_nothing()


async def ensure_accounts(session: AsyncSession, specs: Iterable[AccountSpec]) -> dict[str, int]:
    """Account ids by key, creating the missing ones (in key order, so two writers creating
    the same accounts take their locks in one order)."""
    wanted = {spec.key: spec for spec in specs}
    ids = dict(
        (
            await session.execute(
                select(LedgerAccount.key, LedgerAccount.id).where(LedgerAccount.key.in_(wanted))
            )
        ).all()
    )
    missing = sorted(set(wanted) - set(ids))
    if missing:
        now = utcnow()
        # RETURNING makes SQLAlchemy send the rows in a few multi-row INSERTs
        # ("insertmanyvalues"), not one statement per row, and answers the new accounts' ids.
        table = LedgerAccount.__table__
        created = await session.execute(
            insert_ignoring_duplicates(session, table).returning(table.c.key, table.c.id),
            [
                {
                    "key": key,
                    "kind": kind_of(key).value,
                    "stream_id": wanted[key].stream_id,
                    "node_id": wanted[key].node_id,
                    "owner_id": wanted[key].owner_id,
                    "balance": 0,
                    "may_go_negative": kind_of(key) in MAY_GO_NEGATIVE,
                    "created_at": now,
                }
                for key in missing
            ],
        )
        ids.update(created.all())
        raced = [key for key in missing if key not in ids]  # created by a concurrent writer
        if raced:
            ids.update(
                (
                    await session.execute(
                        select(LedgerAccount.key, LedgerAccount.id).where(
                            LedgerAccount.key.in_(raced)
                        )
                    )
                ).all()
            )
    return ids


async def lock_balances(session: AsyncSession, ids: Iterable[int]) -> dict[int, int]:
    """Balances by account id, locked until the transaction ends (in id order: no deadlock
    between two writers that lock overlapping accounts)."""
    ordered = sorted(set(ids))
    query = (
        select(LedgerAccount.id, LedgerAccount.balance)
        .where(LedgerAccount.id.in_(ordered))
        .order_by(LedgerAccount.id)
    )
    if is_postgresql(session):
        query = query.with_for_update()
    else:
        # SQLite locks the whole database for a writer; a write that changes nothing takes
        # that lock now, so the balances read next cannot change before this commits.
        await session.execute(
            update(LedgerAccount)
            .where(LedgerAccount.id.in_(ordered))
            .values(balance=LedgerAccount.balance)
            .execution_options(synchronize_session=False)
        )
    return dict((await session.execute(query)).all())


async def claim_keys(session: AsyncSession, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert transaction rows (dicts of LedgerTransaction columns); the ids of those whose key
    was new. Keys posted before (or being posted by a concurrent writer, which this waits for)
    are left out: the caller must write nothing for them."""
    if not rows:
        return {}
    # One statement with the rows as parameters: SQLAlchemy sends them in a few multi-row
    # INSERTs ("insertmanyvalues") without compiling a statement per chunk.
    table = LedgerTransaction.__table__
    result = await session.execute(
        insert_ignoring_duplicates(session, table).returning(table.c.key, table.c.id), rows
    )
    return dict(result.all())


async def move_balances(session: AsyncSession, deltas: Mapping[int, int]) -> None:
    """``balance = balance + delta`` per account id (locked by the caller), one statement for
    all; the CHECK constraint still refuses an overdraft."""
    params = [{"account": a, "delta": d} for a, d in sorted(deltas.items()) if d]
    if not params:
        return
    table = LedgerAccount.__table__
    if is_postgresql(session):
        # One statement over two arrays (an executemany is a statement per account there).
        await session.execute(
            text(
                f"UPDATE {table.name} SET balance = balance + d.delta "  # noqa: S608
                "FROM unnest(CAST(:accounts AS INTEGER[]), CAST(:deltas AS BIGINT[])) "
                "AS d(account, delta) WHERE id = d.account"
            ),
            {"accounts": [p["account"] for p in params], "deltas": [p["delta"] for p in params]},
        )
        return
    # The Core table, not the ORM class: executemany with bound parameters, not the ORM's
    # bulk update by primary key.
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("account"))
        .values(balance=table.c.balance + bindparam("delta")),
        params,
    )


async def write_drafts(
    session: AsyncSession,
    drafts: list[tuple[int, Draft]],
    ids: Mapping[str, int],
    balances: Mapping[str, int],
) -> dict[str, int]:
    """Write claimed transactions' entries and move the locked balances; the balances after.

    Each draft is checked against the balances its predecessors left (sum zero, no overdraft)
    before anything is written."""

    def declared(draft: Draft) -> Draft:
        unknown = {p.account for p in draft.postings} - ids.keys()
        if unknown:
            raise ledger.LedgerError(f"{draft.key}: undeclared accounts {sorted(unknown)}")
        return draft

    after = ledger.apply_all(balances, (declared(draft) for _tx_id, draft in drafts))
    entries = [
        {"transaction_id": tx_id, "account_id": ids[p.account], "amount": p.amount}
        for tx_id, draft in drafts
        for p in draft.postings
    ]
    await insert_rows(session, LedgerEntry.__table__, entries)
    await move_balances(
        session,
        {ids[account]: balance - balances.get(account, 0) for account, balance in after.items()},
    )
    return after


async def post(
    session: AsyncSession,
    *,
    key: str,
    kind: ledger.TransactionKind,
    accounts: Iterable[AccountSpec],
    build: Callable[[Mapping[str, int]], Draft],
    actor: str,
    memo: str = "",
    reconciliation_id: int | None = None,
    payout_id: int | None = None,
    stream_id: str | None = None,
    node_id: str | None = None,
) -> Posted:
    """Post the draft ``build`` makes from the locked balances (by account key), once per key.

    Not committed: the caller commits, together with its own rows (an accrual, a payout).
    """
    ids = await ensure_accounts(session, accounts)
    claimed = await claim_keys(
        session,
        [
            {
                "key": key,
                "kind": kind.value,
                "created_at": utcnow(),
                "reconciliation_id": reconciliation_id,
                "payout_id": payout_id,
                "stream_id": stream_id,
                "node_id": node_id,
                "actor": actor,
                "memo": memo[:200],
            }
        ],
    )
    if key not in claimed:
        existing = await session.scalar(
            select(LedgerTransaction.id).where(LedgerTransaction.key == key)
        )
        assert existing is not None  # the conflict was on the key, the only unique column
        return Posted(existing, created=False)

    by_id = await lock_balances(session, ids.values())
    balances = {account: by_id[account_id] for account, account_id in ids.items()}
    draft = build(balances)
    if draft.key != key or draft.kind != kind:
        raise ledger.LedgerError(f"{key}: the rule built a draft for {draft.key} ({draft.kind})")
    await write_drafts(session, [(claimed[key], draft)], ids, balances)
    return Posted(claimed[key], created=True, draft=draft)


async def balance_of(session: AsyncSession, key: str) -> int:
    return await session.scalar(select(LedgerAccount.balance).where(LedgerAccount.key == key)) or 0
