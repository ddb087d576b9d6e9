"""Stream budgets: what a streamer funded, what was spent, and whether any is left.

There is no payment rail: funding a budget records money the operator has received from the
streamer by other means. Once the budget is used up, accruals pay what is left and record the
rest as unfunded (not owed); the state says so to the streamer, the friends and node status.
"""

from __future__ import annotations

import enum
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..streams.models import Stream
from . import books, ledger
from .ledger import AccountKind, TransactionKind
from .models import Accrual, LedgerAccount, LedgerEntry, LedgerTransaction

log = logging.getLogger("streamr.payouts")


class BudgetLevel(enum.StrEnum):
    OK = "ok"
    LOW = "low"  # under a tenth of everything funded is left
    EXHAUSTED = "exhausted"  # nothing left (or never funded): nothing more is owed


@dataclass(frozen=True)
class BudgetState:
    stream_id: str
    state: BudgetLevel
    balance_micro_usd: int
    funded_micro_usd: int
    spent_micro_usd: int
    unfunded_bytes: int
    unfunded_micro_usd: int
    message: str


def level_of(balance: int, funded: int) -> BudgetLevel:
    if balance <= 0:
        return BudgetLevel.EXHAUSTED
    if balance * 10 < funded:
        return BudgetLevel.LOW
    return BudgetLevel.OK


def _message(level: BudgetLevel, funded: int, unfunded_bytes: int) -> str:
    if level is BudgetLevel.OK:
        return "The budget covers delivery."
    if level is BudgetLevel.LOW:
        return "Less than a tenth of the budget is left; the streamer should add funds soon."
    if funded == 0:
        return "This stream has no budget yet: delivery is not paid until its streamer funds it."
    told = f" ({unfunded_bytes} bytes delivered so far were not paid)" if unfunded_bytes else ""
    return f"The budget is used up: delivery is not paid until the streamer adds funds{told}."


async def budget_state(session: AsyncSession, stream_id: str) -> BudgetState:
    """The budget of a stream, for its page, the dashboards and node status."""
    key = ledger.account_key(AccountKind.STREAM_BUDGET, stream_id)
    row = (
        await session.execute(
            select(
                func.coalesce(func.max(LedgerAccount.balance), 0),
                func.coalesce(func.sum(case((LedgerEntry.amount > 0, LedgerEntry.amount))), 0),
                func.coalesce(func.sum(case((LedgerEntry.amount < 0, -LedgerEntry.amount))), 0),
            )
            .select_from(LedgerAccount)
            .outerjoin(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
            .where(LedgerAccount.key == key)
        )
    ).one()
    balance, funded, spent = (int(v) for v in row)  # PostgreSQL sums are Decimal
    unfunded = (
        await session.execute(
            select(
                func.coalesce(func.sum(Accrual.unfunded_bytes), 0),
                func.coalesce(func.sum(Accrual.unfunded_micro_usd), 0),
            ).where(Accrual.stream_id == stream_id)
        )
    ).one()
    unfunded_bytes, unfunded_micro_usd = (int(v) for v in unfunded)
    level = level_of(balance, funded)
    return BudgetState(
        stream_id=stream_id,
        state=level,
        balance_micro_usd=balance,
        funded_micro_usd=funded,
        spent_micro_usd=spent,
        unfunded_bytes=unfunded_bytes,
        unfunded_micro_usd=unfunded_micro_usd,
        message=_message(level, funded, unfunded_bytes),
    )


@dataclass(frozen=True)
class Funding:
    transaction_id: int
    key: str
    duplicate: bool
    amount_micro_usd: int


async def fund_stream(
    session: AsyncSession,
    stream: Stream,
    amount_micro_usd: int,
    *,
    actor: str,
    funding_id: str | None = None,
    note: str = "",
) -> Funding:
    """Record money received for ``stream``'s budget. ``funding_id`` makes a retry safe: the
    same id posts once (its first amount stands)."""
    key = f"fund:{stream.id}:{funding_id or uuid.uuid4().hex}"
    posted = await books.post(
        session,
        key=key,
        kind=TransactionKind.FUNDING,
        accounts=[
            books.platform_account(AccountKind.STREAMER_FUNDING),
            books.stream_budget(stream.id, stream.owner_id),
        ],
        build=lambda _balances: ledger.funding(key, stream.id, amount_micro_usd),
        actor=actor,
        memo=note,
        stream_id=stream.id,
    )
    if posted.created:
        await session.commit()
        log.info(
            "stream budget funded",
            extra={"stream": stream.name, "amount_micro_usd": amount_micro_usd, "actor": actor},
        )
        return Funding(posted.transaction_id, key, False, amount_micro_usd)
    await session.commit()  # only the accounts, if this retry created them
    first = await session.scalar(
        select(LedgerEntry.amount)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(LedgerEntry.transaction_id == posted.transaction_id)
        .where(LedgerAccount.kind == AccountKind.STREAM_BUDGET.value)
    )
    return Funding(posted.transaction_id, key, True, int(first or 0))


async def fundings(
    session: AsyncSession, stream_ids: list[str]
) -> list[tuple[LedgerTransaction, int]]:
    """Every funding of these streams, oldest first, with its amount."""
    if not stream_ids:
        return []
    rows = await session.execute(
        select(LedgerTransaction, LedgerEntry.amount)
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(
            LedgerTransaction.kind == TransactionKind.FUNDING.value,
            LedgerTransaction.stream_id.in_(stream_ids),
            LedgerAccount.kind == AccountKind.STREAM_BUDGET.value,
        )
        .order_by(LedgerTransaction.created_at, LedgerTransaction.id)
    )
    return [(tx, int(amount)) for tx, amount in rows.all()]
