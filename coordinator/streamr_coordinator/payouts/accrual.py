"""Accrual: every reconciled interval not yet accrued is priced and posted to the ledger.

Per (node, stream), money follows the cumulative paid bytes (``economics.earned_micro_usd``),
scaled by the node's pay factor from trust (vetting pays less; a penalised node nothing) and
capped by the stream's budget; what the budget cannot cover is recorded as unfunded, not owed.

Work is done one stream at a time, in one database transaction per stream and a handful of
bulk statements, so an hour of a thousand nodes' intervals is a few queries per stream, not a
few per interval. Each interval's transaction has the key ``accrue:<reconciliation id>`` and
points at the reconciliation it pays; its accrual row is unique per reconciliation and per
(node, stream, seq). Two workers on the same intervals therefore write them once: the second
waits for the first's keys, finds them taken and writes nothing (a sequence clash rolls its
stream back, to be redone on the next run from the new totals).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

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


async def pending(session: AsyncSession, limit: int) -> list[Reconciliation]:
    """Reconciliations without an accrual, oldest interval first."""
    rows = await session.scalars(
        select(Reconciliation)
        .outerjoin(Accrual, Accrual.reconciliation_id == Reconciliation.id)
        .where(Accrual.id.is_(None))
        .order_by(Reconciliation.interval_start, Reconciliation.id)
        .limit(limit)
    )
    return list(rows)


async def _last_totals(
    session: AsyncSession, stream_id: str, node_ids: Sequence[str]
) -> dict[str, tuple[int, int]]:
    """(last seq, cumulative paid bytes) per node of the stream."""
    last = (
        select(Accrual.node_id, func.max(Accrual.seq).label("seq"))
        .where(Accrual.stream_id == stream_id, Accrual.node_id.in_(node_ids))
        .group_by(Accrual.node_id)
        .subquery()
    )
    rows = await session.execute(
        select(Accrual.node_id, Accrual.seq, Accrual.cum_bytes_before + Accrual.paid_bytes).where(
            Accrual.stream_id == stream_id,
            tuple_(Accrual.node_id, Accrual.seq).in_(select(last.c.node_id, last.c.seq)),
        )
    )
    return {node_id: (seq, int(cum)) for node_id, seq, cum in rows.all()}


async def accrue_stream(
    session: AsyncSession,
    settings: Settings,
    stream_id: str,
    recs: Sequence[Reconciliation],
    *,
    now: datetime,
    pay_factors: PayFactors,
    run: AccrualRun,
) -> None:
    """Accrue one stream's pending intervals in one database transaction, and commit it."""
    economics, version = await terms.current_economics(session, settings)
    node_ids = sorted({r.node_id for r in recs})
    totals = await _last_totals(session, stream_id, node_ids)
    factors = await pay_factors(session, node_ids, now, economics)
    owners = dict(
        (await session.execute(select(Node.id, Node.owner_id).where(Node.id.in_(node_ids)))).all()
    )
    stream_owner = await session.scalar(select(Stream.owner_id).where(Stream.id == stream_id))

    # Price at full budget first: what is owed does not depend on the budget.
    planned = []
    for rec in sorted(recs, key=lambda r: (r.interval_start, r.id)):
        seq, cum = totals.get(rec.node_id, (0, 0))
        paid = max(int(rec.paid_bytes), 0)
        pay_bps = factors.get(rec.node_id, FULL_BPS) if paid else FULL_BPS
        owed = apply_bps(
            earned_micro_usd(cum, cum + paid, economics.rate_micro_usd_per_gb), pay_bps
        )
        planned.append((rec, seq + 1, cum, paid, pay_bps, owed))
        totals[rec.node_id] = (seq + 1, cum + paid)

    key_of = {rec.id: f"accrue:{rec.id}" for rec, *_ in planned}
    owing = [p for p in planned if p[5] > 0]
    claimed: dict[str, int] = {}
    balances: dict[str, int] = {}
    ids: dict[str, int] = {}
    budget_key = ledger.account_key(AccountKind.STREAM_BUDGET, stream_id)
    if owing:
        ids = await books.ensure_accounts(
            session,
            [
                books.stream_budget(stream_id, stream_owner),
                books.platform_account(AccountKind.PLATFORM_FEES),
                *(
                    books.node_earnings(node_id, stream_id, owners.get(node_id))
                    for node_id in sorted({p[0].node_id for p in owing})
                ),
            ],
        )
        claimed = await books.claim_keys(
            session,
            [
                {
                    "key": key_of[rec.id],
                    "kind": TransactionKind.ACCRUAL.value,
                    "created_at": now,
                    "reconciliation_id": rec.id,
                    "payout_id": None,
                    "stream_id": stream_id,
                    "node_id": rec.node_id,
                    "actor": "job:accrual",
                    "memo": f"{paid} bytes, {rec.interval_start.isoformat()}",
                }
                for rec, _seq, _cum, paid, _bps, _owed in owing
            ],
        )
        if len(claimed) < len(owing):
            # Another worker is accruing some of these intervals: leave the whole stream to it
            # (totals priced here may be stale) and pick up whatever is left on the next run.
            await session.rollback()
            run.skipped += len(planned)
            return
        by_id = await books.lock_balances(session, ids.values())
        balances = {account: by_id[account_id] for account, account_id in ids.items()}

    budget = balances.get(budget_key, 0)
    drafts: list[tuple[int, ledger.Draft]] = []
    rows: list[Accrual] = []
    for rec, seq, cum, paid, pay_bps, _owed in planned:
        key = key_of[rec.id]
        quote = quote_accrual(
            paid_bytes=paid,
            cum_bytes_before=cum,
            rate_micro_usd_per_gb=economics.rate_micro_usd_per_gb,
            pay_bps=pay_bps,
            fee_bps=economics.platform_fee_bps,
            budget_micro_usd=budget,
        )
        budget -= quote.gross_micro_usd
        tx_id = claimed.get(key)
        if tx_id is not None:
            drafts.append(
                (
                    tx_id,
                    ledger.accrual(
                        key, stream_id, rec.node_id, quote.friend_micro_usd, quote.fee_micro_usd
                    ),
                )
            )
        rows.append(
            Accrual(
                reconciliation_id=rec.id,
                node_id=rec.node_id,
                stream_id=stream_id,
                seq=seq,
                interval_start=rec.interval_start,
                interval_end=rec.interval_end,
                paid_bytes=paid,
                cum_bytes_before=cum,
                economics_version=version,
                rate_micro_usd_per_gb=economics.rate_micro_usd_per_gb,
                platform_fee_bps=economics.platform_fee_bps,
                pay_bps=pay_bps,
                earned_micro_usd=quote.earned_micro_usd,
                owed_micro_usd=quote.owed_micro_usd,
                gross_micro_usd=quote.gross_micro_usd,
                friend_micro_usd=quote.friend_micro_usd,
                fee_micro_usd=quote.fee_micro_usd,
                unfunded_micro_usd=quote.unfunded_micro_usd,
                unfunded_bytes=quote.unfunded_bytes,
                transaction_id=tx_id,
                accrued_at=now,
            )
        )
    try:
        if drafts:
            await books.write_drafts(session, drafts, ids, balances)
        session.add_all(rows)
        await session.commit()
    except IntegrityError:
        # A concurrent worker accrued some of these (or extended a node's sequence) first.
        await session.rollback()
        run.skipped += len(rows)
        return
    run.intervals += len(rows)
    for row in rows:
        run.paid_bytes += row.paid_bytes
        run.gross_micro_usd += row.gross_micro_usd
        run.friend_micro_usd += row.friend_micro_usd
        run.fee_micro_usd += row.fee_micro_usd
        run.unfunded_micro_usd += row.unfunded_micro_usd
        run.unfunded_bytes += row.unfunded_bytes
    if any(row.unfunded_micro_usd for row in rows):
        run.exhausted_streams.append(stream_id)
        log.warning(
            "stream budget exhausted",
            extra={
                "stream_id": stream_id,
                "unfunded_micro_usd": sum(r.unfunded_micro_usd for r in rows),
                "unfunded_bytes": sum(r.unfunded_bytes for r in rows),
            },
        )


async def accrue_pending(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    now: datetime | None = None,
    pay_factors: PayFactors | None = None,
    limit: int = 20_000,
) -> AccrualRun:
    """Accrue up to ``limit`` pending reconciliations, stream by stream."""
    now = now or utcnow()
    pay_factors = pay_factors or trust_pay(settings)
    run = AccrualRun()
    async with sessions() as session:
        recs = await pending(session, limit)
    by_stream: dict[str, list[Reconciliation]] = {}
    for rec in recs:
        by_stream.setdefault(rec.stream_id, []).append(rec)
    for stream_id, stream_recs in by_stream.items():
        async with sessions() as session:
            await accrue_stream(
                session, settings, stream_id, stream_recs, now=now, pay_factors=pay_factors, run=run
            )
    return run
