"""A node's standing (trust score, level, pay factor, routing weight, message) as payouts,
routing and the node itself read it. The rules live in the pure ``trust`` module; this module
only loads the state."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..nodes.models import Node
from ..settings import Settings
from . import trust
from .models import TrustState as TrustStateRow

# What a vetting node is paid (basis points of the full rate) when the caller does not pass the
# operator's economics: the design's default.
DEFAULT_VETTING_PAY_BPS = 5_000


def trust_params(settings: Settings) -> trust.TrustParams:
    """The trust parameters, with the ones an operator (or the demo) may change from settings."""
    return trust.TrustParams(
        half_life_s=settings.trust_half_life_s,
        warning_grace_s=settings.trust_warning_grace_s,
        vetting_min_probes=settings.trust_vetting_min_probes,
        vetting_min_s=settings.trust_vetting_min_s,
    )


# The columns a standing needs, read as plain rows: routing reads every node of a stream each
# second per replica, and ORM objects for thousands of rows cost several times as much.
STATE_COLUMNS = (
    TrustStateRow.node_id,
    TrustStateRow.alpha,
    TrustStateRow.beta,
    TrustStateRow.updated_at,
    TrustStateRow.first_seen_at,
    TrustStateRow.probes_passed,
    TrustStateRow.warned_at,
    TrustStateRow.penalised_at,
)


def state_of(row: Any) -> trust.TrustState:
    """The trust state in a row that has ``STATE_COLUMNS`` (a model object or a plain row)."""
    return trust.TrustState(
        alpha=row.alpha,
        beta=row.beta,
        updated_at=row.updated_at,
        first_seen_at=row.first_seen_at,
        probes_passed=row.probes_passed,
        warned_at=row.warned_at,
        penalised_at=row.penalised_at,
    )


async def node_standing(
    session: AsyncSession,
    node_id: str,
    now: datetime,
    *,
    params: trust.TrustParams | None = None,
    vetting_pay_bps: int = DEFAULT_VETTING_PAY_BPS,
) -> trust.Standing:
    """The node's standing now. A node nothing was observed about yet is vetting, counted from
    its registration. Pass ``params=trust_params(settings)`` to honour the configured vetting."""
    found = await standings(session, [node_id], now, params=params, vetting_pay_bps=vetting_pay_bps)
    return found[node_id]


async def standings(
    session: AsyncSession,
    node_ids: Iterable[str],
    now: datetime,
    *,
    params: trust.TrustParams | None = None,
    vetting_pay_bps: int = DEFAULT_VETTING_PAY_BPS,
) -> dict[str, trust.Standing]:
    """Standings of many nodes in two indexed queries (routing asks on every sources poll)."""
    params = params or trust.TrustParams()
    ids = list(dict.fromkeys(node_ids))
    if not ids:
        return {}
    rows = {
        row.node_id: row
        for row in await session.execute(
            select(*STATE_COLUMNS).where(TrustStateRow.node_id.in_(ids))
        )
    }
    missing = [node_id for node_id in ids if node_id not in rows]
    registered: dict[str, datetime] = {}
    if missing:
        query = select(Node.id, Node.registered_at).where(Node.id.in_(missing))
        registered = dict((await session.execute(query)).all())  # Rows are pairs
    out: dict[str, trust.Standing] = {}
    for node_id in ids:
        row = rows.get(node_id)
        state = (
            state_of(row)
            if row is not None
            else trust.initial(min(registered.get(node_id, now), now), params)
        )
        out[node_id] = trust.standing(state, now, params, vetting_pay_bps)
    return out


async def stream_standings(
    session: AsyncSession, stream_id: str, now: datetime, params: trust.TrustParams
) -> dict[str, trust.Standing]:
    """Standings of the nodes of one stream that have a trust state (the others are new: full
    routing weight is the pure module's call, through ``initial``)."""
    rows = await session.execute(
        select(*STATE_COLUMNS)
        .join(Node, Node.id == TrustStateRow.node_id)
        .where(Node.stream_id == stream_id, Node.deregistered_at.is_(None))
    )
    return {
        row.node_id: trust.standing(state_of(row), now, params, DEFAULT_VETTING_PAY_BPS)
        for row in rows
    }
