"""Payout cycles: once per period (aligned to the Unix epoch), each node's earnings go out if
they reach the minimum; smaller balances get a ``carried_over`` row and stay, never vanish.

Safe with any number of workers, and after a worker dies mid-cycle: each node is settled in
its own database transaction, which locks the node's earnings, inserts the payout row (unique
per node and period) and posts the ledger transaction ``payout:<node>:<period start>``
together. A second worker, or a re-run, finds the row and does nothing for that node.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..database import utcnow
from ..settings import Settings
from . import books, ledger, terms
from .economics import Economics, payout_amount, period_bounds
from .ledger import AccountKind, TransactionKind
from .models import LedgerAccount, Payout

log = logging.getLogger("streamr.payouts")


class PayoutStatus:
    SENT = "sent"
    CARRIED_OVER = "carried_over"


@dataclass
class CycleRun:
    period_start: datetime
    period_end: datetime
    sent: int = 0
    carried_over: int = 0
    sent_micro_usd: int = 0
    carried_micro_usd: int = 0
    already_settled: int = 0  # by another worker, or by an earlier run of this period

    def as_dict(self) -> dict[str, object]:
        return {
            **self.__dict__,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
        }


def payout_key(node_id: str, period_start: datetime) -> str:
    return f"payout:{node_id}:{int(period_start.timestamp())}"


async def settle_node(
    session: AsyncSession,
    account: LedgerAccount,
    economics: Economics,
    period_start: datetime,
    period_end: datetime,
) -> tuple[str, int, int]:
    """Settle one node for one period and commit: (status, amount sent, balance before);
    status ``settled`` when it had been settled before (nothing is written then)."""
    assert account.node_id is not None
    sent_spec = books.platform_account(AccountKind.PAYOUTS_SENT)
    await books.ensure_accounts(session, [sent_spec])
    # The earnings first: a concurrent accrual or payout of this node waits here.
    balance = (await books.lock_balances(session, [account.id]))[account.id]
    amount = payout_amount(balance, economics.minimum_payout_micro_usd)
    status = PayoutStatus.SENT if amount else PayoutStatus.CARRIED_OVER
    payout_id = await session.scalar(
        books.insert_ignoring_duplicates(session, Payout)
        .values(
            node_id=account.node_id,
            owner_id=account.owner_id,
            period_start=period_start,
            period_end=period_end,
            status=status,
            amount_micro_usd=amount,
            balance_micro_usd=balance,
            minimum_micro_usd=economics.minimum_payout_micro_usd,
            created_at=utcnow(),
        )
        .returning(Payout.id)
    )
    if payout_id is None:
        await session.rollback()
        return "settled", 0, balance
    if amount:
        key = payout_key(account.node_id, period_start)
        node_id = account.node_id
        posted = await books.post(
            session,
            key=key,
            kind=TransactionKind.PAYOUT,
            accounts=[books.AccountSpec(account.key, node_id=node_id), sent_spec],
            build=lambda _balances: ledger.payout(key, node_id, amount),
            actor="job:payout_cycle",
            memo=f"period {period_start.isoformat()}",
            payout_id=payout_id,
            node_id=node_id,
        )
        if not posted.created:  # the key without its payout row: never written by this code
            await session.rollback()
            raise ledger.LedgerError(f"{key} was posted without its payout row")
    await session.commit()
    return status, amount, balance


async def run_cycle(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    now: datetime | None = None,
) -> CycleRun:
    """Settle every node with earnings for the latest period that has ended by ``now``."""
    now = now or utcnow()
    async with sessions() as session:
        economics, _version = await terms.current_economics(session, settings)
        accounts = list(
            await session.scalars(
                select(LedgerAccount)
                .where(
                    LedgerAccount.kind == AccountKind.NODE_EARNINGS.value,
                    LedgerAccount.balance > 0,
                )
                .order_by(LedgerAccount.id)
            )
        )
    start, end = period_bounds(now, economics.payout_period_s)
    run = CycleRun(start, end)
    async with sessions() as session:
        settled = set(
            await session.scalars(select(Payout.node_id).where(Payout.period_start == start))
        )
    for account in accounts:
        if account.node_id in settled:
            run.already_settled += 1
            continue
        async with sessions() as session:
            status, amount, balance = await settle_node(session, account, economics, start, end)
        if status == PayoutStatus.SENT:
            run.sent += 1
            run.sent_micro_usd += amount
        elif status == PayoutStatus.CARRIED_OVER:
            run.carried_over += 1
            run.carried_micro_usd += balance
        else:
            run.already_settled += 1
    if run.sent or run.carried_over:
        log.info("payout cycle", extra=run.as_dict())
    return run
