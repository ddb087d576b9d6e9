"""Payout cycles: once per period (aligned to the Unix epoch), each node's earnings go out if
they reach the minimum; smaller balances get a ``carried_over`` row and stay, never vanish.

Safe with any number of workers, and after a worker dies mid-cycle: nodes are settled in
batches of ``BATCH`` per database transaction, which locks the batch's earnings accounts (in id
order, as every ledger writer does) and the ``payouts_sent`` account, inserts each node's payout
row (unique per node and period) and posts each paid node's own ledger transaction
``payout:<node>:<period start>``, all together. A second worker waits for the locks, then finds
the rows and does nothing for those nodes; a worker that dies loses its open batch only, which
the next run settles.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
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


BATCH = 200  # nodes per database transaction
PAYOUTS = Payout.__table__


@dataclass(frozen=True)
class Settled:
    node_id: str
    status: str  # sent | carried_over | settled (before, by this or another worker)
    amount: int
    balance: int


async def settle_nodes(
    session: AsyncSession,
    accounts: Sequence[LedgerAccount],
    economics: Economics,
    period_start: datetime,
    period_end: datetime,
) -> list[Settled]:
    """Settle these nodes (their earnings accounts) for one period in one database
    transaction, and commit it. A node settled before is answered ``settled`` and not touched."""
    sent_spec = books.platform_account(AccountKind.PAYOUTS_SENT)
    ids = await books.ensure_accounts(session, [sent_spec])
    sent_id = ids[sent_spec.key]
    # The earnings first: a concurrent accrual or payout of these nodes waits here.
    balances = await books.lock_balances(session, [a.id for a in accounts] + [sent_id])
    minimum = economics.minimum_payout_micro_usd
    now = utcnow()
    rows = []
    for account in accounts:
        assert account.node_id is not None
        balance = balances[account.id]
        amount = payout_amount(balance, minimum)
        rows.append(
            {
                "node_id": account.node_id,
                "owner_id": account.owner_id,
                "period_start": period_start,
                "period_end": period_end,
                "status": PayoutStatus.SENT if amount else PayoutStatus.CARRIED_OVER,
                "amount_micro_usd": amount,
                "balance_micro_usd": balance,
                "minimum_micro_usd": minimum,
                "created_at": now,
            }
        )
    inserted = dict(
        (
            await session.execute(
                books.insert_ignoring_duplicates(session, PAYOUTS).returning(
                    PAYOUTS.c.node_id, PAYOUTS.c.id
                ),
                rows,
            )
        ).all()
    )
    paid = [(a, r) for a, r in zip(accounts, rows, strict=True) if r["node_id"] in inserted]
    paid = [(a, r) for a, r in paid if r["amount_micro_usd"]]
    if paid:
        keys = {r["node_id"]: payout_key(r["node_id"], period_start) for _a, r in paid}
        claimed = await books.claim_keys(
            session,
            [
                {
                    "key": keys[r["node_id"]],
                    "kind": TransactionKind.PAYOUT.value,
                    "created_at": now,
                    "reconciliation_id": None,
                    "payout_id": inserted[r["node_id"]],
                    "stream_id": None,
                    "node_id": r["node_id"],
                    "actor": "job:payout_cycle",
                    "memo": f"period {period_start.isoformat()}",
                }
                for _a, r in paid
            ],
        )
        if len(claimed) < len(paid):  # a key without its payout row: never written by this code
            await session.rollback()
            missing = sorted(set(keys.values()) - set(claimed))
            raise ledger.LedgerError(f"{missing[0]} was posted without its payout row")
        accounts_by_key = {a.key: a.id for a, _r in paid} | {sent_spec.key: sent_id}
        before = {key: balances[account_id] for key, account_id in accounts_by_key.items()}
        drafts = [
            (
                claimed[keys[r["node_id"]]],
                ledger.payout(keys[r["node_id"]], r["node_id"], r["amount_micro_usd"]),
            )
            for _a, r in paid
        ]
        await books.write_drafts(session, drafts, accounts_by_key, before)
    await session.commit()
    return [
        Settled(r["node_id"], r["status"], r["amount_micro_usd"], r["balance_micro_usd"])
        if r["node_id"] in inserted
        else Settled(r["node_id"], "settled", 0, r["balance_micro_usd"])
        for r in rows
    ]


async def settle_node(
    session: AsyncSession,
    account: LedgerAccount,
    economics: Economics,
    period_start: datetime,
    period_end: datetime,
) -> tuple[str, int, int]:
    """Settle one node for one period and commit: (status, amount sent, balance before);
    status ``settled`` when it had been settled before (nothing is written then)."""
    (done,) = await settle_nodes(session, [account], economics, period_start, period_end)
    return done.status, done.amount, done.balance


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
    todo = []
    for account in accounts:
        if account.node_id in settled:
            run.already_settled += 1
        else:
            todo.append(account)
    for first in range(0, len(todo), BATCH):
        async with sessions() as session:
            done = await settle_nodes(session, todo[first : first + BATCH], economics, start, end)
        for one in done:
            if one.status == PayoutStatus.SENT:
                run.sent += 1
                run.sent_micro_usd += one.amount
            elif one.status == PayoutStatus.CARRIED_OVER:
                run.carried_over += 1
                run.carried_micro_usd += one.balance
            else:
                run.already_settled += 1
    if run.sent or run.carried_over:
        log.info("payout cycle", extra=run.as_dict())
    return run
