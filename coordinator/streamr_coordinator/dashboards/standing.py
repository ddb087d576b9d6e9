"""Trust on the dashboards: each node's standing now (verification's own rules), its history,
its probes and its reconciled intervals. Read only; a few indexed queries per page."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..settings import Settings
from ..verification.models import Discrepancy, Probe, Reconciliation, TrustEvent, TrustState
from ..verification.service import standings, trust_params
from .money import bps_percent
from .schemas import Notice, ProbeRow, ReconciliationRow, TrustNow, TrustPoint

ALERT_LEVELS = ("warned", "penalised")
# Worst first: the friend's summary names the worst standing among their nodes.
SEVERITY = {"penalised": 0, "warned": 1, "vetting": 2, "good": 3}
HISTORY_SHOWN = 200
PROBES_SHOWN = 15
RECONCILIATIONS_SHOWN = 15


def percent(score: float) -> str:
    """A trust score as whole percent, rounded down so 0.799 never reads as 80%."""
    return f"{int(score * 100)}%"


async def trust_now(
    session: AsyncSession,
    settings: Settings,
    node_ids: Sequence[str],
    now: datetime,
    vetting_pay_bps: int,
) -> dict[str, TrustNow]:
    """Each node's standing now, with the operator's vetting pay."""
    if not node_ids:
        return {}
    found = await standings(
        session, node_ids, now, params=trust_params(settings), vetting_pay_bps=vetting_pay_bps
    )
    rows = {
        row.node_id: row
        for row in await session.scalars(
            select(TrustState).where(TrustState.node_id.in_(list(node_ids)))
        )
    }
    out = {}
    for node_id, standing in found.items():
        row = rows.get(node_id)
        out[node_id] = TrustNow(
            level=standing.level,
            score=round(standing.score, 4),
            score_percent=percent(standing.score),
            pay_bps=standing.pay_bps,
            pay_percent=bps_percent(standing.pay_bps),
            message=standing.message,
            alert=standing.level in ALERT_LEVELS,
            probes_passed=row.probes_passed if row else 0,
            warned_at=row.warned_at if row else None,
            penalised_at=row.penalised_at if row else None,
        )
    return out


def summary(trust: dict[str, TrustNow]) -> Notice:
    """The worst standing among a friend's nodes, said plainly."""
    if not trust:
        return Notice(state="none", message="No nodes yet: trust starts when a node joins.")
    worst = min(trust.values(), key=lambda t: SEVERITY[t.level]).level
    count = sum(1 for t in trust.values() if t.level == worst)
    total = len(trust)
    of = f"{count} of your {total} nodes" if total > 1 else "Your node"
    verb = "is" if count == 1 else "are"
    messages = {
        "penalised": f"{of} {verb} paused: no viewers and no pay until checks show delivery. "
        "See the node below for what to do.",
        "warned": f"{of} {verb} warned: some of what it reported could not be confirmed. "
        "See the node below for what to do before a penalty.",
        "vetting": f"{of} {verb} new and being checked: reduced pay until enough checks "
        "passed. Nothing to do but keep it running.",
        "good": "All good: viewers and our checks confirm what your nodes report."
        if total > 1
        else "All good: viewers and our checks confirm what your node reports.",
    }
    return Notice(state=worst, message=messages[worst])


async def penalised_nodes(session: AsyncSession, settings: Settings, now: datetime) -> set[str]:
    """Nodes penalised right now (their state may have recovered since it was stored)."""
    candidates = list(
        await session.scalars(
            select(TrustState.node_id).where(TrustState.penalised_at.is_not(None))
        )
    )
    if not candidates:
        return set()
    found = await standings(session, candidates, now, params=trust_params(settings))
    return {node_id for node_id, s in found.items() if s.level == "penalised"}


async def history(
    session: AsyncSession, node_id: str, limit: int = HISTORY_SHOWN
) -> list[TrustPoint]:
    rows = list(
        await session.scalars(
            select(TrustEvent)
            .where(TrustEvent.node_id == node_id)
            .order_by(TrustEvent.at.desc(), TrustEvent.id.desc())
            .limit(limit)
        )
    )
    return [
        TrustPoint(
            at=e.at, score=round(e.score, 4), level=e.level, source=e.source, detail=e.detail
        )
        for e in reversed(rows)
    ]


async def probes(session: AsyncSession, node_id: str, limit: int = PROBES_SHOWN) -> list[ProbeRow]:
    rows = await session.scalars(
        select(Probe)
        .where(Probe.node_id == node_id)
        .order_by(Probe.started_at.desc(), Probe.id.desc())
        .limit(limit)
    )
    return [
        ProbeRow(
            started_at=p.started_at,
            outcome=p.outcome,
            reason=p.reason,
            segment=p.segment,
            bytes=p.bytes,
            ttfb_ms=p.ttfb_ms,
            throughput_bps=p.throughput_bps,
            detail=p.detail,
        )
        for p in rows
    ]


async def reconciliations(
    session: AsyncSession, node_id: str, limit: int = RECONCILIATIONS_SHOWN
) -> list[ReconciliationRow]:
    rows = list(
        await session.scalars(
            select(Reconciliation)
            .where(Reconciliation.node_id == node_id)
            .order_by(Reconciliation.interval_start.desc(), Reconciliation.id.desc())
            .limit(limit)
        )
    )
    kinds: dict[int, dict[str, int]] = {row.id: {} for row in rows}
    if rows:
        found = await session.execute(
            select(Discrepancy.reconciliation_id, Discrepancy.kind, func.count())
            .where(Discrepancy.reconciliation_id.in_(list(kinds)))
            .group_by(Discrepancy.reconciliation_id, Discrepancy.kind)
        )
        for rec_id, kind, count in found:
            kinds[rec_id][kind] = int(count)
    return [
        ReconciliationRow(
            interval_start=r.interval_start,
            interval_end=r.interval_end,
            claimed_bytes=r.claimed_bytes,
            receipted_bytes=r.receipted_bytes,
            plausible_bytes=r.plausible_bytes,
            paid_bytes=r.paid_bytes,
            outcome=r.outcome,
            excluded_sessions=r.excluded_sessions,
            discrepancies=sum(kinds[r.id].values()),
            discrepancy_kinds=", ".join(
                f"{kind.replace('_', ' ')} ({n})" if n > 1 else kind.replace("_", " ")
                for kind, n in sorted(kinds[r.id].items())
            ),
        )
        for r in rows
    ]
