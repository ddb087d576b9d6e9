"""Money on the dashboards: budgets, earnings, statements lines, economics and the platform's
books, read through the payouts domain. Every amount is formatted here, on the server, from
integer micro-USD (``money.format_usd``); the pages' scripts only show the text."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..payouts import terms
from ..payouts.budgets import BudgetState, budget_state
from ..payouts.economics import Economics, period_bounds
from ..payouts.ledger import AccountKind
from ..payouts.models import EconomicsVersion, LedgerAccount, Payout
from ..payouts.statements import (
    Scope,
    accrual_lines,
    friend_scope,
    node_balances,
    payout_lines,
    spend_by_node,
)
from ..settings import Settings
from .formatting import format_duration, format_when
from .money import bps_percent, format_usd, plain_usd
from .schemas import (
    AccrualRow,
    BudgetView,
    EconomicsView,
    FriendEarnings,
    NodeMoney,
    PayoutRow,
    PlatformMoney,
    SpendRow,
)

LINES_SHOWN = 20
EVIDENCE_CHARS = 240

# For the streamer, on their own page (payouts' message is written for the friends).
LOW_ADVICE = (
    "Less than a tenth of what you funded is left. Once it runs out, friends' nodes are no "
    "longer paid for carrying your stream. Record your next payment below once the operator "
    "has received it."
)
EXHAUSTED_ADVICE = (
    "The budget is used up (or was never funded): friends' nodes are not paid for what they "
    "deliver now, and they are told so. Record funds below once the operator has received "
    "your payment; pay resumes from the next reconciled interval."
)


async def economics_now(session: AsyncSession, settings: Settings) -> Economics:
    economics, _version = await terms.current_economics(session, settings)
    return economics


def budget_view(state: BudgetState) -> BudgetView:
    level = state.state.value
    return BudgetView(
        state=level,  # type: ignore[arg-type]
        message=state.message,
        advice={"low": LOW_ADVICE, "exhausted": EXHAUSTED_ADVICE}.get(level, ""),
        needs_funds=level != "ok",
        balance_micro_usd=state.balance_micro_usd,
        balance=format_usd(state.balance_micro_usd),
        funded_micro_usd=state.funded_micro_usd,
        funded=format_usd(state.funded_micro_usd),
        spent_micro_usd=state.spent_micro_usd,
        spent=format_usd(state.spent_micro_usd),
        unfunded_bytes=state.unfunded_bytes,
        unfunded=format_usd(state.unfunded_micro_usd),
    )


async def stream_budget(session: AsyncSession, stream_id: str) -> BudgetView:
    return budget_view(await budget_state(session, stream_id))


async def stream_spend(session: AsyncSession, stream_id: str) -> list[SpendRow]:
    rows = await spend_by_node(session, Scope("streamer", stream_ids=(stream_id,)))
    return [
        SpendRow(
            node_id=r.node_id,
            node_name=r.node_name,
            paid_bytes=r.paid_bytes,
            gross=format_usd(r.gross_micro_usd),
            fee=format_usd(r.fee_micro_usd),
            net=format_usd(r.net_micro_usd),
            unfunded_bytes=r.unfunded_bytes,
        )
        for r in sorted(rows, key=lambda r: (-r.gross_micro_usd, r.node_name or "", r.node_id))
    ]


async def carried_over(session: AsyncSession, node_ids: Sequence[str]) -> dict[str, int]:
    """Per node, the balance its latest payout cycle carried over (0 if it sent it)."""
    if not node_ids:
        return {}
    latest = (
        select(Payout.node_id, func.max(Payout.period_start).label("start"))
        .where(Payout.node_id.in_(list(node_ids)))
        .group_by(Payout.node_id)
        .subquery()
    )
    rows = await session.execute(
        select(Payout.node_id, Payout.status, Payout.balance_micro_usd).join(
            latest,
            (latest.c.node_id == Payout.node_id) & (latest.c.start == Payout.period_start),
        )
    )
    return {
        node_id: int(balance) if status == "carried_over" else 0
        for node_id, status, balance in rows
    }


def next_payout_text(balance: int, minimum: int, when: datetime) -> str:
    at = format_when(when)
    if balance <= 0:
        return f"Nothing to pay yet. The next payout cycle runs after {at}."
    if balance >= minimum:
        return f"{format_usd(balance)} will be paid out after {at}."
    return (
        f"{format_usd(balance)} is below the minimum payout of {format_usd(minimum)}: it "
        f"carries over (nothing is lost) and is paid once it reaches the minimum. Next cycle "
        f"after {at}."
    )


async def friend_earnings(
    session: AsyncSession,
    account_id: str,
    node_ids: Sequence[str],
    economics: Economics,
    now: datetime,
) -> tuple[FriendEarnings, dict[str, NodeMoney]]:
    """The friend's money, all their nodes (left ones too) together, and per shown node."""
    scope = await friend_scope(session, account_id)
    ids = list(scope.node_ids or ())
    minimum = economics.minimum_payout_micro_usd
    balances = {b.node_id: b for b in await node_balances(session, ids, minimum)}
    carried = await carried_over(session, ids)
    per_node = {}
    for node_id in node_ids:
        b = balances.get(node_id)
        per_node[node_id] = NodeMoney(
            balance_micro_usd=b.balance_micro_usd if b else 0,
            balance=format_usd(b.balance_micro_usd if b else 0),
            earned=format_usd(b.earned_micro_usd if b else 0),
            paid_out=format_usd(b.paid_out_micro_usd if b else 0),
            carried_over=format_usd(carried.get(node_id, 0)),
            below_minimum=b.below_minimum if b else False,
        )
    balance = sum(b.balance_micro_usd for b in balances.values())
    _, period_end = period_bounds(now, economics.payout_period_s)
    next_at = period_end + timedelta(seconds=economics.payout_period_s)
    accruals = await accrual_lines(session, scope, None, None, LINES_SHOWN, newest=True)
    payouts = await payout_lines(session, ids, None, None, LINES_SHOWN, newest=True)
    earnings = FriendEarnings(
        balance_micro_usd=balance,
        balance=format_usd(balance),
        earned=format_usd(sum(b.earned_micro_usd for b in balances.values())),
        paid_out=format_usd(sum(b.paid_out_micro_usd for b in balances.values())),
        carried_over=format_usd(sum(carried.values())),
        minimum_payout=format_usd(minimum),
        rate_per_gb=format_usd(economics.rate_micro_usd_per_gb),
        next_payout_at=next_at,
        next_payout=next_payout_text(balance, minimum, next_at),
        accruals=[
            AccrualRow(
                interval_start=a.interval_start,
                interval_end=a.interval_end,
                node_name=a.node_name,
                stream=a.stream,
                paid_bytes=a.paid_bytes,
                pay_percent=bps_percent(a.pay_bps),
                gross=format_usd(a.gross_micro_usd),
                fee=format_usd(a.fee_micro_usd),
                net=format_usd(a.net_micro_usd),
            )
            for a in reversed(accruals)
        ],
        payouts=[
            PayoutRow(
                period_start=p.period_start,
                period_end=p.period_end,
                node_name=p.node_name,
                status=p.status,
                amount=format_usd(p.amount_micro_usd),
                balance=format_usd(p.balance_micro_usd),
            )
            for p in reversed(payouts)
        ],
    )
    return earnings, per_node


async def economics_view(session: AsyncSession, settings: Settings) -> EconomicsView:
    row: EconomicsVersion | None = await terms.latest_version(session)
    e = terms.from_row(row) if row else terms.from_settings(settings)
    return EconomicsView(
        version=row.id if row else None,
        rate_micro_usd_per_gb=e.rate_micro_usd_per_gb,
        rate_per_gb=format_usd(e.rate_micro_usd_per_gb),
        rate_usd=plain_usd(e.rate_micro_usd_per_gb),
        platform_fee_bps=e.platform_fee_bps,
        platform_fee_percent=bps_percent(e.platform_fee_bps),
        minimum_payout_micro_usd=e.minimum_payout_micro_usd,
        minimum_payout=format_usd(e.minimum_payout_micro_usd),
        minimum_payout_usd=plain_usd(e.minimum_payout_micro_usd),
        vetting_pay_bps=e.vetting_pay_bps,
        vetting_pay_percent=bps_percent(e.vetting_pay_bps),
        payout_period_s=e.payout_period_s,
        payout_period=format_duration(e.payout_period_s),
        set_by=row.set_by if row else None,
        set_at=row.set_at if row else None,
        note=row.note if row else "",
    )


async def platform_money(session: AsyncSession) -> PlatformMoney:
    rows = await session.execute(
        select(LedgerAccount.kind, func.sum(LedgerAccount.balance)).group_by(LedgerAccount.kind)
    )
    by_kind = {kind: int(total or 0) for kind, total in rows}  # PostgreSQL sums are Decimal

    def of(kind: AccountKind) -> int:
        return by_kind.get(kind.value, 0)

    return PlatformMoney(
        fees=format_usd(of(AccountKind.PLATFORM_FEES)),
        # The streamers' funding account goes negative by what they paid in.
        funded=format_usd(-of(AccountKind.STREAMER_FUNDING)),
        budgets_left=format_usd(of(AccountKind.STREAM_BUDGET)),
        earnings_owed=format_usd(of(AccountKind.NODE_EARNINGS)),
        payouts_sent=format_usd(of(AccountKind.PAYOUTS_SENT)),
        books_balance=format_usd(sum(by_kind.values())),
    )


def evidence_text(evidence: object) -> str:
    text = json.dumps(evidence, sort_keys=True, default=str)
    return text if len(text) <= EVIDENCE_CHARS else text[: EVIDENCE_CHARS - 1] + "…"
