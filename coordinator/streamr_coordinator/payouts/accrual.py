"""Accrual: every reconciled interval not yet accrued is priced and posted to the ledger.

Per (node, stream), money follows the cumulative paid bytes (``economics.earned_micro_usd``),
scaled by the node's pay factor from trust (vetting pays less; a penalised node nothing) and
capped by the stream's budget; what the budget cannot cover is recorded as unfunded, not owed.

A run accrues every pending interval in one database transaction and a handful of bulk
statements (on PostgreSQL the accruals rows and ledger entries go in by COPY: a run is tens of
thousands of rows, and an executemany would be a statement per row). Each interval gets its own
``accruals`` row (the statement line: bytes, rate, pay factor, gross, fee, net, unfunded); the
money moves in one ledger transaction per (node, stream) and run, keyed
``accrue:<node>:<stream>:<first>-<last reconciliation id>``, which the accruals rows it pays
point at. The accruals rows are unique per reconciliation and per (node, stream, seq), and are
inserted in the same database transaction as the ledger's: two workers on the same intervals
write them once (the second fails on the first's rows, rolls everything back and finds nothing
pending on its next run).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..bulk import insert_rows
from ..database import utcnow
from ..nodes.models import Node
from ..settings import Settings
from ..streams.models import Stream
from ..verification.models import Reconciliation
from . import books, ledger, terms
from .economics import FULL_BPS, Economics, apply_bps, earned_micro_usd, quote_accrual
from .ledger import AccountKind, TransactionKind
from .models import Accrual

log = logging.getLogger("streamr.payouts")

# Pay factors (basis points of full pay) of these nodes now.
PayFactors = Callable[[AsyncSession, Sequence[str], datetime, Economics], Awaitable[dict[str, int]]]


async def full_pay(
    _session: AsyncSession, node_ids: Sequence[str], _now: datetime, _economics: Economics
) -> dict[str, int]:
    return dict.fromkeys(node_ids, FULL_BPS)


def trust_pay(settings: Settings) -> PayFactors:
    """Pay factors from the nodes' standing (verification's trust), with the operator's
    vetting pay and the configured vetting rules."""
    from ..verification.service import standings, trust_params

    async def factors(
        session: AsyncSession, node_ids: Sequence[str], now: datetime, economics: Economics
    ) -> dict[str, int]:
        found = await standings(
            session,
            node_ids,
            now,
            params=trust_params(settings),
            vetting_pay_bps=economics.vetting_pay_bps,
        )
        return {node_id: standing.pay_bps for node_id, standing in found.items()}

    return factors


@dataclass
class AccrualRun:
    intervals: int = 0  # accrued now
    paid_bytes: int = 0
    gross_micro_usd: int = 0
    friend_micro_usd: int = 0
    fee_micro_usd: int = 0
    unfunded_micro_usd: int = 0
    unfunded_bytes: int = 0
    skipped: int = 0  # accrued by another worker meanwhile, or to be redone next run
    exhausted_streams: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


async def pending(session: AsyncSession, limit: int) -> list[Row[Any]]:
    """Reconciliations without an accrual, oldest interval first (the unique index on
    ``accruals.reconciliation_id`` answers the NOT EXISTS)."""
    # The tables' Core columns, not the mapped attributes: tuples back, no ORM loading per row.
    recs, accruals = Reconciliation.__table__.c, Accrual.__table__.c
    rows = await session.execute(
        select(
            recs.id,
            recs.node_id,
            recs.stream_id,
            recs.interval_start,
            recs.interval_end,
            recs.paid_bytes,
        )
        .where(~exists().where(accruals.reconciliation_id == recs.id))
        .order_by(recs.interval_start, recs.id)
        .limit(limit)
    )
    return list(rows.all())


async def _last_totals(
    session: AsyncSession, node_ids: Sequence[str]
) -> dict[tuple[str, str], tuple[int, int]]:
    """(last seq, cumulative paid bytes) per (node, stream) of these nodes, in one query."""
    if not node_ids:
        return {}
    last = (
        select(Accrual.node_id, Accrual.stream_id, func.max(Accrual.seq).label("seq"))
        .where(Accrual.node_id.in_(node_ids))
        .group_by(Accrual.node_id, Accrual.stream_id)
        .subquery()
    )
    rows = await session.execute(
        select(
            Accrual.node_id,
            Accrual.stream_id,
            Accrual.seq,
            Accrual.cum_bytes_before + Accrual.paid_bytes,
        ).join(
            last,
            and_(
                Accrual.node_id == last.c.node_id,
                Accrual.stream_id == last.c.stream_id,
                Accrual.seq == last.c.seq,
            ),
        )
    )
    return {(node, stream): (seq, int(cum)) for node, stream, seq, cum in rows.all()}


def accrual_key(node_id: str, stream_id: str, first_id: int, last_id: int) -> str:
    """The ledger transaction of one (node, stream)'s intervals accrued in one run."""
    return f"accrue:{node_id}:{stream_id}:{first_id}-{last_id}"


@dataclass
class _Batch:
    """One (node, stream)'s intervals of this run: one ledger transaction."""

    node_id: str
    stream_id: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # accruals rows, interval order
    owing: list[dict[str, Any]] = field(default_factory=list)  # those with money owed

    @property
    def key(self) -> str:
        ids = [row["reconciliation_id"] for row in self.owing]
        return accrual_key(self.node_id, self.stream_id, min(ids), max(ids))


async def accrue(
    session: AsyncSession,
    settings: Settings,
    recs: Sequence[Row[Any]],
    *,
    now: datetime,
    pay_factors: PayFactors,
    run: AccrualRun,
) -> None:
    """Accrue these pending intervals (``pending``'s rows) in one database transaction, and
    commit it."""
    economics, version = await terms.current_economics(session, settings)
    node_ids = sorted({r.node_id for r in recs})
    stream_ids = sorted({r.stream_id for r in recs})
    totals = await _last_totals(session, node_ids)
    factors = await pay_factors(session, node_ids, now, economics)
    owners = dict(
        (await session.execute(select(Node.id, Node.owner_id).where(Node.id.in_(node_ids)))).all()
    )
    stream_owners = dict(
        (
            await session.execute(
                select(Stream.id, Stream.owner_id).where(Stream.id.in_(stream_ids))
            )
        ).all()
    )

    # Price at full budget first: what is owed does not depend on the budget.
    rate, fee_bps = economics.rate_micro_usd_per_gb, economics.platform_fee_bps
    batches: dict[tuple[str, str], _Batch] = {}
    priced: list[dict[str, Any]] = []  # the accruals rows, in time order
    # ``pending``'s columns, unpacked: reading a row's fields by name costs more than pricing.
    for rec_id, node_id, stream_id, start, end, paid_bytes in sorted(
        recs, key=lambda r: (r.interval_start, r.id)
    ):
        pair = (node_id, stream_id)
        seq, cum = totals.get(pair, (0, 0))
        paid = max(int(paid_bytes), 0)
        pay_bps = factors.get(node_id, FULL_BPS) if paid else FULL_BPS
        owed = apply_bps(earned_micro_usd(cum, cum + paid, rate), pay_bps)
        batch = batches.get(pair)
        if batch is None:
            batch = batches[pair] = _Batch(node_id, stream_id)
        row = {
            "reconciliation_id": rec_id,
            "node_id": node_id,
            "stream_id": stream_id,
            "seq": seq + 1,
            "interval_start": start,
            "interval_end": end,
            "paid_bytes": paid,
            "cum_bytes_before": cum,
            "economics_version": version,
            "rate_micro_usd_per_gb": rate,
            "platform_fee_bps": fee_bps,
            "pay_bps": pay_bps,
            "transaction_id": None,
            "accrued_at": now,
        }
        priced.append(row)
        batch.rows.append(row)
        if owed > 0:
            batch.owing.append(row)
        totals[pair] = (seq + 1, cum + paid)

    owing = [b for b in batches.values() if b.owing]
    ids: dict[str, int] = {}
    balances: dict[str, int] = {}
    claimed: dict[str, int] = {}
    if owing:
        ids = await books.ensure_accounts(
            session,
            [
                books.platform_account(AccountKind.PLATFORM_FEES),
                *(
                    books.stream_budget(stream_id, stream_owners.get(stream_id))
                    for stream_id in sorted({b.stream_id for b in owing})
                ),
                *(
                    books.node_earnings(b.node_id, b.stream_id, owners.get(b.node_id))
                    for b in owing
                ),
            ],
        )
        claimed = await books.claim_keys(
            session,
            [
                {
                    "key": b.key,
                    "kind": TransactionKind.ACCRUAL.value,
                    "created_at": now,
                    # The first interval it pays; its accruals rows name every one.
                    "reconciliation_id": b.owing[0]["reconciliation_id"],
                    "payout_id": None,
                    "stream_id": b.stream_id,
                    "node_id": b.node_id,
                    "actor": "job:accrual",
                    "memo": _memo(b),
                }
                for b in owing
            ],
        )
        if len(claimed) < len(owing):
            # Another worker is accruing some of these intervals: leave them to it (totals
            # priced here may be stale) and pick up whatever is left on the next run.
            await session.rollback()
            run.skipped += len(recs)
            return
        by_id = await books.lock_balances(session, ids.values())
        balances = {account: by_id[account_id] for account, account_id in ids.items()}

    # Then cap by each stream's budget, interval by interval in time order.
    budgets = {
        stream_id: balances.get(ledger.account_key(AccountKind.STREAM_BUDGET, stream_id), 0)
        for stream_id in stream_ids
    }
    for row in priced:
        stream_id = row["stream_id"]
        quote = quote_accrual(
            paid_bytes=row["paid_bytes"],
            cum_bytes_before=row["cum_bytes_before"],
            rate_micro_usd_per_gb=rate,
            pay_bps=row["pay_bps"],
            fee_bps=fee_bps,
            budget_micro_usd=budgets[stream_id],
        )
        budgets[stream_id] -= quote.gross_micro_usd
        row.update(
            earned_micro_usd=quote.earned_micro_usd,
            owed_micro_usd=quote.owed_micro_usd,
            gross_micro_usd=quote.gross_micro_usd,
            friend_micro_usd=quote.friend_micro_usd,
            fee_micro_usd=quote.fee_micro_usd,
            unfunded_micro_usd=quote.unfunded_micro_usd,
            unfunded_bytes=quote.unfunded_bytes,
        )
    drafts: list[tuple[int, ledger.Draft]] = []
    for b in owing:
        tx_id = claimed[b.key]
        for row in b.owing:
            row["transaction_id"] = tx_id
        drafts.append(
            (
                tx_id,
                ledger.accrual(
                    b.key,
                    b.stream_id,
                    b.node_id,
                    sum(r["friend_micro_usd"] for r in b.owing),
                    sum(r["fee_micro_usd"] for r in b.owing),
                ),
            )
        )
    rows = [row for b in batches.values() for row in b.rows]
    try:
        if drafts:
            await books.write_drafts(session, drafts, ids, balances)
        await insert_rows(session, Accrual.__table__, rows)
        await session.commit()
    except IntegrityError:
        # A concurrent worker accrued some of these (or extended a node's sequence) first.
        await session.rollback()
        run.skipped += len(rows)
        return
    run.intervals += len(rows)
    unfunded: dict[str, list[int]] = {}
    for row in rows:
        run.paid_bytes += row["paid_bytes"]
        run.gross_micro_usd += row["gross_micro_usd"]
        run.friend_micro_usd += row["friend_micro_usd"]
        run.fee_micro_usd += row["fee_micro_usd"]
        run.unfunded_micro_usd += row["unfunded_micro_usd"]
        run.unfunded_bytes += row["unfunded_bytes"]
        if row["unfunded_micro_usd"]:
            totals_of = unfunded.setdefault(row["stream_id"], [0, 0])
            totals_of[0] += row["unfunded_micro_usd"]
            totals_of[1] += row["unfunded_bytes"]
    for stream_id in stream_ids:
        if stream_id in unfunded:
            run.exhausted_streams.append(stream_id)
            log.warning(
                "stream budget exhausted",
                extra={
                    "stream_id": stream_id,
                    "unfunded_micro_usd": unfunded[stream_id][0],
                    "unfunded_bytes": unfunded[stream_id][1],
                },
            )


def _memo(batch: _Batch) -> str:
    first, last = batch.owing[0], batch.owing[-1]
    paid = sum(r["paid_bytes"] for r in batch.owing)
    return (
        f"{len(batch.owing)} interval(s), {paid} bytes, "
        f"{first['interval_start'].isoformat()} to {last['interval_end'].isoformat()}"
    )


async def accrue_pending(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    now: datetime | None = None,
    pay_factors: PayFactors | None = None,
    limit: int = 20_000,
) -> AccrualRun:
    """Accrue up to ``limit`` pending reconciliations, all streams in one transaction."""
    now = now or utcnow()
    pay_factors = pay_factors or trust_pay(settings)
    run = AccrualRun()
    async with sessions() as session:
        recs = await pending(session, limit)
        if recs:
            await accrue(session, settings, recs, now=now, pay_factors=pay_factors, run=run)
    return run
