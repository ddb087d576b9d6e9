"""Statements for friends (their nodes), streamers (their streams) and operators (everything,
with the platform's fees), as JSON or CSV. Every line comes from the ledger's own rows."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from ..database import utcnow
from ..nodes.models import Node
from ..streams.models import Stream
from .budgets import BudgetState, budget_state, fundings
from .economics import format_usd
from .ledger import AccountKind
from .models import Accrual, LedgerAccount, LedgerTransaction, Payout
from .schemas import (
    AccrualLine,
    BudgetOut,
    FundingLine,
    NodeBalance,
    NodeSpend,
    PayoutLine,
    Statement,
)


@dataclass(frozen=True)
class Scope:
    """Whose statement: a friend's nodes, a streamer's streams, or (both None) everything."""

    kind: str
    node_ids: tuple[str, ...] | None = None
    stream_ids: tuple[str, ...] | None = None


async def friend_scope(session: AsyncSession, account_id: str) -> Scope:
    """The friend's nodes, deregistered ones included, and any the books still name as theirs."""
    ids = set(await session.scalars(select(Node.id).where(Node.owner_id == account_id)))
    ids.update(
        await session.scalars(
            select(LedgerAccount.node_id).where(
                LedgerAccount.owner_id == account_id,
                LedgerAccount.kind == AccountKind.NODE_EARNINGS.value,
            )
        )
    )
    return Scope("friend", node_ids=tuple(sorted(i for i in ids if i)))


async def streamer_scope(session: AsyncSession, account_id: str) -> Scope:
    ids = set(await session.scalars(select(Stream.id).where(Stream.owner_id == account_id)))
    return Scope("streamer", stream_ids=tuple(sorted(ids)))


def _within(column: ColumnElement[datetime], since: datetime | None, until: datetime | None):
    condition: ColumnElement[bool] = true()
    if since is not None:
        condition = condition & (column >= since)
    if until is not None:
        condition = condition & (column < until)
    return condition


def _scoped(query: Select, scope: Scope, node_col, stream_col) -> Select:  # type: ignore[type-arg]
    if scope.node_ids is not None:
        query = query.where(node_col.in_(scope.node_ids))
    if scope.stream_ids is not None:
        query = query.where(stream_col.in_(scope.stream_ids))
    return query


def budget_out(stream_name: str, state: BudgetState) -> BudgetOut:
    return BudgetOut(
        stream=stream_name,
        state=state.state.value,
        message=state.message,
        balance_micro_usd=state.balance_micro_usd,
        balance_usd=format_usd(state.balance_micro_usd),
        funded_micro_usd=state.funded_micro_usd,
        spent_micro_usd=state.spent_micro_usd,
        unfunded_bytes=state.unfunded_bytes,
        unfunded_micro_usd=state.unfunded_micro_usd,
    )


async def accrual_lines(
    session: AsyncSession,
    scope: Scope,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    *,
    newest: bool = False,
) -> list[AccrualLine]:
    """Accrual lines that paid bytes, oldest first (``newest``: the latest ``limit``)."""
    query = (
        select(Accrual, Node.name, Stream.name, LedgerTransaction.key)
        .outerjoin(Node, Node.id == Accrual.node_id)
        .outerjoin(Stream, Stream.id == Accrual.stream_id)
        .outerjoin(LedgerTransaction, LedgerTransaction.id == Accrual.transaction_id)
        .where(Accrual.paid_bytes > 0, _within(Accrual.interval_start, since, until))
        .order_by(
            *(
                (Accrual.interval_start.desc(), Accrual.id.desc())
                if newest
                else (Accrual.interval_start, Accrual.id)
            )
        )
        .limit(limit)
    )
    rows = (await session.execute(_scoped(query, scope, Accrual.node_id, Accrual.stream_id))).all()
    if newest:
        rows = rows[::-1]
    return [
        AccrualLine(
            reconciliation_id=a.reconciliation_id,
            node_id=a.node_id,
            node_name=node_name,
            stream=stream_name,
            interval_start=a.interval_start,
            interval_end=a.interval_end,
            paid_bytes=a.paid_bytes,
            rate_micro_usd_per_gb=a.rate_micro_usd_per_gb,
            economics_version=a.economics_version,
            pay_bps=a.pay_bps,
            gross_micro_usd=a.gross_micro_usd,
            fee_micro_usd=a.fee_micro_usd,
            net_micro_usd=a.friend_micro_usd,
            net_usd=format_usd(a.friend_micro_usd),
            unfunded_bytes=a.unfunded_bytes,
            unfunded_micro_usd=a.unfunded_micro_usd,
            transaction_key=key,
            accrued_at=a.accrued_at,
        )
        for a, node_name, stream_name, key in rows
    ]


async def payout_lines(
    session: AsyncSession,
    node_ids: Sequence[str] | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    *,
    newest: bool = False,
) -> list[PayoutLine]:
    order = (
        (Payout.period_start.desc(), Payout.id.desc())
        if newest
        else (
            Payout.period_start,
            Payout.id,
        )
    )
    query = (
        select(Payout, Node.name)
        .outerjoin(Node, Node.id == Payout.node_id)
        .where(_within(Payout.period_start, since, until))
        .order_by(*order)
        .limit(limit)
    )
    if node_ids is not None:
        query = query.where(Payout.node_id.in_(node_ids))
    rows = (await session.execute(query)).all()
    if newest:
        rows = rows[::-1]
    return [
        PayoutLine(
            payout_id=p.id,
            node_id=p.node_id,
            node_name=name,
            period_start=p.period_start,
            period_end=p.period_end,
            status=p.status,
            amount_micro_usd=p.amount_micro_usd,
            amount_usd=format_usd(p.amount_micro_usd),
            balance_micro_usd=p.balance_micro_usd,
            minimum_micro_usd=p.minimum_micro_usd,
        )
        for p, name in rows
    ]


async def spend_by_node(session: AsyncSession, scope: Scope) -> list[NodeSpend]:
    query = (
        select(
            Accrual.stream_id,
            Accrual.node_id,
            func.sum(Accrual.paid_bytes),
            func.sum(Accrual.gross_micro_usd),
            func.sum(Accrual.fee_micro_usd),
            func.sum(Accrual.friend_micro_usd),
            func.sum(Accrual.unfunded_bytes),
            func.sum(Accrual.unfunded_micro_usd),
        )
        .group_by(Accrual.stream_id, Accrual.node_id)
        .order_by(Accrual.stream_id, Accrual.node_id)
    )
    rows = (await session.execute(_scoped(query, scope, Accrual.node_id, Accrual.stream_id))).all()
    names = await _names(session, {r[1] for r in rows}, {r[0] for r in rows})
    return [
        NodeSpend(
            stream=names[1].get(stream_id),
            node_id=node_id,
            node_name=names[0].get(node_id),
            paid_bytes=int(paid),
            gross_micro_usd=int(gross),
            fee_micro_usd=int(fee),
            net_micro_usd=int(net),
            unfunded_bytes=int(ub),
            unfunded_micro_usd=int(um),
        )
        for stream_id, node_id, paid, gross, fee, net, ub, um in rows
    ]


async def _names(
    session: AsyncSession, node_ids: set[str], stream_ids: set[str]
) -> tuple[dict[str, str], dict[str, str]]:
    nodes = dict(
        (await session.execute(select(Node.id, Node.name).where(Node.id.in_(node_ids)))).all()
    )
    streams = dict(
        (
            await session.execute(select(Stream.id, Stream.name).where(Stream.id.in_(stream_ids)))
        ).all()
    )
    return nodes, streams


async def node_balances(
    session: AsyncSession, node_ids: Sequence[str] | None, minimum: int
) -> list[NodeBalance]:
    query = select(LedgerAccount).where(LedgerAccount.kind == AccountKind.NODE_EARNINGS.value)
    if node_ids is not None:
        query = query.where(LedgerAccount.node_id.in_(node_ids))
    accounts = {a.node_id: a for a in await session.scalars(query) if a.node_id}
    ids = sorted(set(accounts) | set(node_ids or ()))
    earned = dict(
        (
            await session.execute(
                select(Accrual.node_id, func.sum(Accrual.friend_micro_usd))
                .where(Accrual.node_id.in_(ids))
                .group_by(Accrual.node_id)
            )
        ).all()
    )
    paid = dict(
        (
            await session.execute(
                select(Payout.node_id, func.sum(Payout.amount_micro_usd))
                .where(Payout.node_id.in_(ids))
                .group_by(Payout.node_id)
            )
        ).all()
    )
    nodes = {n.id: n for n in await session.scalars(select(Node).where(Node.id.in_(ids)))}
    streams = await _names(session, set(), {n.stream_id for n in nodes.values()})
    out = []
    for node_id in ids:
        balance = accounts[node_id].balance if node_id in accounts else 0
        node = nodes.get(node_id)
        out.append(
            NodeBalance(
                node_id=node_id,
                node_name=node.name if node else None,
                stream=streams[1].get(node.stream_id) if node else None,
                balance_micro_usd=balance,
                balance_usd=format_usd(balance),
                earned_micro_usd=int(earned.get(node_id) or 0),
                paid_out_micro_usd=int(paid.get(node_id) or 0),
                below_minimum=0 < balance < minimum,
            )
        )
    return out


async def _platform_totals(session: AsyncSession) -> dict[str, int]:
    rows = (
        await session.execute(
            select(LedgerAccount.kind, func.sum(LedgerAccount.balance)).group_by(LedgerAccount.kind)
        )
    ).all()
    by_kind = {kind: int(total or 0) for kind, total in rows}
    return {
        "platform_fees_micro_usd": by_kind.get(AccountKind.PLATFORM_FEES.value, 0),
        "funded_micro_usd": -by_kind.get(AccountKind.STREAMER_FUNDING.value, 0),
        "budgets_left_micro_usd": by_kind.get(AccountKind.STREAM_BUDGET.value, 0),
        "earnings_owed_micro_usd": by_kind.get(AccountKind.NODE_EARNINGS.value, 0),
        "payouts_sent_micro_usd": by_kind.get(AccountKind.PAYOUTS_SENT.value, 0),
        # The books balance: every transaction adds up to zero, so this is always 0.
        "ledger_sum_micro_usd": sum(by_kind.values()),
    }


async def build_statement(
    session: AsyncSession,
    scope: Scope,
    *,
    minimum_payout: int,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
) -> Statement:
    accruals = await accrual_lines(session, scope, since, until, limit + 1)
    payouts: list[PayoutLine] = []
    nodes: list[NodeBalance] = []
    if scope.kind in ("friend", "operator"):
        payouts = await payout_lines(session, scope.node_ids, since, until, limit + 1)
        nodes = await node_balances(session, scope.node_ids, minimum_payout)
    budgets: list[BudgetOut] = []
    funding_lines: list[FundingLine] = []
    if scope.kind in ("streamer", "operator"):
        if scope.stream_ids is None:
            stream_ids = set(
                await session.scalars(
                    select(LedgerAccount.stream_id).where(
                        LedgerAccount.kind == AccountKind.STREAM_BUDGET.value
                    )
                )
            )
        else:
            stream_ids = set(scope.stream_ids)
        _, names = await _names(session, set(), stream_ids)
        for stream_id in sorted(stream_ids, key=lambda s: names.get(s, s)):
            state = await budget_state(session, stream_id)
            budgets.append(budget_out(names.get(stream_id, stream_id), state))
        for tx, amount in await fundings(session, sorted(stream_ids)):
            if (since and tx.created_at < since) or (until and tx.created_at >= until):
                continue
            funding_lines.append(
                FundingLine(
                    stream=names.get(tx.stream_id or ""),
                    at=tx.created_at,
                    amount_micro_usd=amount,
                    amount_usd=format_usd(amount),
                    actor=tx.actor,
                    note=tx.memo,
                    transaction_key=tx.key,
                )
            )
    spend = await spend_by_node(session, scope)
    totals = {
        "paid_bytes": sum(s.paid_bytes for s in spend),
        "gross_micro_usd": sum(s.gross_micro_usd for s in spend),
        "fee_micro_usd": sum(s.fee_micro_usd for s in spend),
        "net_micro_usd": sum(s.net_micro_usd for s in spend),
        "unfunded_bytes": sum(s.unfunded_bytes for s in spend),
        "unfunded_micro_usd": sum(s.unfunded_micro_usd for s in spend),
    }
    if nodes:
        totals["balance_micro_usd"] = sum(n.balance_micro_usd for n in nodes)
        totals["paid_out_micro_usd"] = sum(n.paid_out_micro_usd for n in nodes)
    if budgets:
        totals["funded_micro_usd"] = sum(b.funded_micro_usd for b in budgets)
        totals["budget_left_micro_usd"] = sum(b.balance_micro_usd for b in budgets)
    if scope.kind == "operator":
        totals.update(await _platform_totals(session))
    truncated = len(accruals) > limit or len(payouts) > limit
    return Statement(
        kind=scope.kind,  # type: ignore[arg-type]
        generated_at=utcnow(),
        since=since,
        until=until,
        totals=totals,
        nodes=nodes,
        budgets=budgets,
        accruals=accruals[:limit],
        payouts=payouts[:limit],
        fundings=funding_lines,
        spend=spend,
        truncated=truncated,
    )


CSV_COLUMNS = (
    "line",
    "at",
    "stream",
    "node_id",
    "node_name",
    "interval_start",
    "interval_end",
    "period_start",
    "paid_bytes",
    "rate_micro_usd_per_gb",
    "pay_bps",
    "gross_micro_usd",
    "fee_micro_usd",
    "amount_micro_usd",
    "amount_usd",
    "unfunded_bytes",
    "unfunded_micro_usd",
    "status",
    "balance_micro_usd",
    "reference",
)


def _text(value: str | None) -> str:
    """A name as a spreadsheet should show it: never a formula (names are user input)."""
    if value and value[0] in "=+-@\t\r":
        return "'" + value
    return value or ""


def _when(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def to_csv(statement: Statement) -> str:
    """One row per line: accruals (amount = the friend's net), payouts and carry-overs,
    fundings (streamers, operators), and for operators the fee of each accrual in its column."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for f in statement.fundings:
        writer.writerow(
            ["funding", _when(f.at), _text(f.stream), "", "", "", "", "", "", "", "", "", "",
             f.amount_micro_usd, f.amount_usd, "", "", "", "", f.transaction_key]
        )  # fmt: skip
    for a in statement.accruals:
        writer.writerow(
            ["accrual", _when(a.accrued_at), _text(a.stream), a.node_id, _text(a.node_name),
             _when(a.interval_start), _when(a.interval_end), "", a.paid_bytes,
             a.rate_micro_usd_per_gb, a.pay_bps, a.gross_micro_usd, a.fee_micro_usd,
             a.net_micro_usd, a.net_usd, a.unfunded_bytes, a.unfunded_micro_usd, "", "",
             a.transaction_key or f"reconciliation:{a.reconciliation_id}"]
        )  # fmt: skip
    for p in statement.payouts:
        writer.writerow(
            [p.status, _when(p.period_end), "", p.node_id, _text(p.node_name), "", "",
             _when(p.period_start), "", "", "", "", "", p.amount_micro_usd, p.amount_usd, "",
             "", p.status, p.balance_micro_usd, f"payout:{p.payout_id}"]
        )  # fmt: skip
    return out.getvalue()
