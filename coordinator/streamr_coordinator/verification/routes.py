"""Verification's API: a node's standing for the node itself; trust, probes and reconciliations
for those who may see the node; every node's trust, discrepancies and probes for admins."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from ..accounts.auth import Context, Session, require_admin
from ..accounts.models import Account
from ..database import utcnow
from ..nodes.auth import NodeIdentity
from ..nodes.models import Node
from ..nodes.routes import CallingNode, NodeIdPath, account_unless_node, own_node
from ..nodes.service import visible_node
from ..payouts.budgets import budget_state
from ..routing import DocumentedRoute
from . import trust
from .models import Discrepancy, Probe, Reconciliation, TrustEvent, TrustState
from .schemas import (
    BudgetOut,
    DiscrepancyList,
    DiscrepancyOut,
    NodeStanding,
    NodeTrust,
    NodeTrustSummary,
    ProbeList,
    ProbeOut,
    ReconciliationList,
    ReconciliationOut,
    StandingOut,
    TrustEventOut,
    TrustOverview,
)
from .service import standings, trust_params

router = APIRouter(route_class=DocumentedRoute, prefix="/api/v1", tags=["verification"])

Limit = Annotated[int, Query(ge=1, le=500, description="How many, newest first")]
ProbeOutcome = Literal["ok", "mismatch", "error", "timeout", "missing"]


async def _visible_node(
    session: Session, node_id: str, node: NodeIdentity | None, account: Account | None
) -> Node:
    """The node, if the caller is the node itself, its owner, the stream's owner or an admin."""
    target, _ = await visible_node(session, node_id, node, account, "a node's verification")
    return target


async def _standing(session: Session, ctx: Context, node_id: str) -> StandingOut:
    now = utcnow()
    found = (await standings(session, [node_id], now, params=trust_params(ctx.settings)))[node_id]
    row = await session.get(TrustState, node_id)
    return StandingOut(
        level=found.level,
        score=round(found.score, 4),
        pay_bps=found.pay_bps,
        routing_weight=round(found.routing_weight, 4),
        message=found.message,
        probes_passed=row.probes_passed if row else 0,
        first_seen_at=row.first_seen_at if row else None,
        warned_at=row.warned_at if row else None,
        penalised_at=row.penalised_at if row else None,
    )


@router.get("/nodes/{node_id}/standing", response_model=NodeStanding)
async def standing_route(
    node: Annotated[NodeIdentity, own_node("read a node's standing")],
    ctx: Context,
    session: Session,
) -> NodeStanding:
    """The node's trust and what it means: pay factor, viewers, and any warning in plain words,
    with the stream budget's state. ``streamr-node status`` shows it. Only the node itself."""
    standing = await _standing(session, ctx, node.node_id)
    budget = await budget_state(session, node.stream_id)
    return NodeStanding(
        node_id=node.node_id,
        budget=BudgetOut(state=str(budget.state), message=budget.message),
        **standing.model_dump(),
    )


@router.get("/nodes/{node_id}/trust", response_model=NodeTrust)
async def trust_route(
    node_id: NodeIdPath,
    node: CallingNode,
    account: Annotated[Account | None, Depends(account_unless_node)],
    ctx: Context,
    session: Session,
    limit: Limit = 100,
) -> NodeTrust:
    """A node's trust now and its history (one event per source and update). For the node,
    its owner, the stream's owner and admins."""
    target = await _visible_node(session, node_id, node, account)
    events = await session.scalars(
        select(TrustEvent)
        .where(TrustEvent.node_id == target.id)
        .order_by(TrustEvent.at.desc(), TrustEvent.id.desc())
        .limit(limit)
    )
    return NodeTrust(
        node_id=target.id,
        standing=await _standing(session, ctx, target.id),
        history=[TrustEventOut.model_validate(e, from_attributes=True) for e in events],
    )


@router.get("/nodes/{node_id}/probes", response_model=ProbeList)
async def node_probes_route(
    node_id: NodeIdPath,
    node: CallingNode,
    account: Annotated[Account | None, Depends(account_unless_node)],
    session: Session,
    limit: Limit = 100,
) -> ProbeList:
    """The prober's checks of a node: segment, time to first byte, throughput, outcome. For the
    node, its owner, the stream's owner and admins (after the fact: a probe is never announced)."""
    target = await _visible_node(session, node_id, node, account)
    rows = await session.scalars(
        select(Probe)
        .where(Probe.node_id == target.id)
        .order_by(Probe.started_at.desc(), Probe.id.desc())
        .limit(limit)
    )
    return ProbeList(probes=[ProbeOut.model_validate(p, from_attributes=True) for p in rows])


@router.get("/nodes/{node_id}/reconciliations", response_model=ReconciliationList)
async def node_reconciliations_route(
    node_id: NodeIdPath,
    node: CallingNode,
    account: Annotated[Account | None, Depends(account_unless_node)],
    session: Session,
    limit: Limit = 60,
) -> ReconciliationList:
    """Claimed, receipted, plausible and paid bytes per interval, with every discrepancy and its
    evidence. For the node, its owner, the stream's owner and admins."""
    target = await _visible_node(session, node_id, node, account)
    rows = list(
        await session.scalars(
            select(Reconciliation)
            .where(Reconciliation.node_id == target.id)
            .order_by(Reconciliation.interval_start.desc(), Reconciliation.id.desc())
            .limit(limit)
        )
    )
    found: dict[int, list[DiscrepancyOut]] = {row.id: [] for row in rows}
    if rows:
        for d in await session.scalars(
            select(Discrepancy)
            .where(Discrepancy.reconciliation_id.in_(list(found)))
            .order_by(Discrepancy.id)
        ):
            found[d.reconciliation_id].append(
                DiscrepancyOut.model_validate(d, from_attributes=True)
            )
    return ReconciliationList(
        reconciliations=[
            ReconciliationOut(
                **{k: getattr(row, k) for k in _RECONCILIATION_FIELDS},
                discrepancies=found[row.id],
            )
            for row in rows
        ]
    )


_RECONCILIATION_FIELDS = [k for k in ReconciliationOut.model_fields if k != "discrepancies"]
Admin = Annotated[Account, Depends(require_admin)]


@router.get("/admin/verification/trust", response_model=TrustOverview)
async def trust_overview_route(
    _admin: Admin, ctx: Context, session: Session, limit: Limit = 500
) -> TrustOverview:
    """Every registered node's standing, lowest trust first. Admins only."""
    nodes = list(
        await session.scalars(
            select(Node).where(Node.deregistered_at.is_(None)).order_by(Node.registered_at)
        )
    )
    params = trust_params(ctx.settings)
    found = await standings(session, [n.id for n in nodes], utcnow(), params=params)
    states = {
        row.node_id: row
        for row in await session.scalars(
            select(TrustState).where(TrustState.node_id.in_([n.id for n in nodes]))
        )
    }
    out = []
    for n in nodes:
        s: trust.Standing = found[n.id]
        row = states.get(n.id)
        out.append(
            NodeTrustSummary(
                node_id=n.id,
                node_name=n.name,
                stream_id=n.stream_id,
                owner_id=n.owner_id,
                level=s.level,
                score=round(s.score, 4),
                pay_bps=s.pay_bps,
                routing_weight=round(s.routing_weight, 4),
                message=s.message,
                probes_passed=row.probes_passed if row else 0,
                first_seen_at=row.first_seen_at if row else None,
                warned_at=row.warned_at if row else None,
                penalised_at=row.penalised_at if row else None,
            )
        )
    out.sort(key=lambda x: (x.score, x.node_id))
    return TrustOverview(nodes=out[:limit])


@router.get("/admin/verification/discrepancies", response_model=DiscrepancyList)
async def discrepancies_route(
    _admin: Admin,
    session: Session,
    limit: Limit = 100,
    kind: Annotated[str | None, Query(max_length=32, description="Only this kind")] = None,
) -> DiscrepancyList:
    """Recent discrepancies of every node, with their evidence. Admins only."""
    query = select(Discrepancy).order_by(Discrepancy.created_at.desc(), Discrepancy.id.desc())
    if kind is not None:
        query = query.where(Discrepancy.kind == kind)
    rows = await session.scalars(query.limit(limit))
    return DiscrepancyList(
        discrepancies=[DiscrepancyOut.model_validate(d, from_attributes=True) for d in rows]
    )


@router.get("/admin/verification/probes", response_model=ProbeList)
async def probes_route(
    _admin: Admin,
    session: Session,
    limit: Limit = 100,
    outcome: Annotated[ProbeOutcome | None, Query(description="Only this outcome")] = None,
) -> ProbeList:
    """Recent probes of every node. Admins only."""
    query = select(Probe).order_by(Probe.started_at.desc(), Probe.id.desc())
    if outcome is not None:
        query = query.where(Probe.outcome == outcome)
    rows = await session.scalars(query.limit(limit))
    return ProbeList(probes=[ProbeOut.model_validate(p, from_attributes=True) for p in rows])
