"""Trust updates against the database: new probes and reconciled intervals become observations
(verification/trust.py), folded into each node's state, with one history event per node and
source per run. A probe session (its rows share ``session_id``) is one observation, judged by
``trust.probe_session_observation`` exactly as the simulation judges its probes.

Two watermarks (the last probe id and the last reconciliation id read) move in the same
transaction as the states, by a conditional update: a second worker doing the same run fails
to move them and writes nothing, so no evidence is counted twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..bulk import column_arrays, insert_rows, unnest_rows
from ..context import AppContext
from ..database import utcnow
from ..nodes.models import Node
from . import trust
from .models import Probe, Reconciliation, TrustEvent, TrustState, Watermark
from .service import state_of, trust_params
from .watermarks import WatermarkMoved, advance

log = logging.getLogger("streamr.verification")

PROBES_WATERMARK = "trust.probes"
RECONCILIATIONS_WATERMARK = "trust.reconciliations"
BATCH = 5_000  # rows of each kind per run; a backlog is read over several runs
# Rows are read once this old: ids are handed out at insert, so a row with a smaller id than
# one read could still be uncommitted only if its transaction lasted longer than this.
SETTLE_S = 30.0

Guard = Callable[[AsyncSession], Awaitable[None]]

# Core columns of the tables, not the mapped attributes: rows come back as plain tuples, with
# no ORM loading per row (a backlog is thousands of rows per run).
_PROBES, _RECONCILIATIONS = Probe.__table__.c, Reconciliation.__table__.c
PROBE_COLUMNS = (
    _PROBES.id,
    _PROBES.node_id,
    _PROBES.session_id,
    _PROBES.sequence,
    _PROBES.outcome,
    _PROBES.attempts,
    _PROBES.started_at,
)
# In the order ``interval_observations`` takes them, after the id and the node.
RECONCILIATION_COLUMNS = (
    _RECONCILIATIONS.id,
    _RECONCILIATIONS.node_id,
    _RECONCILIATIONS.interval_end,
    _RECONCILIATIONS.outcome,
    _RECONCILIATIONS.ratio,
    _RECONCILIATIONS.viewer_ok,
    _RECONCILIATIONS.viewer_failed,
    _RECONCILIATIONS.viewer_mismatch_sessions,
)
STATE_VALUES = (
    "alpha",
    "beta",
    "updated_at",
    "first_seen_at",
    "probes_passed",
    "warned_at",
    "penalised_at",
)
_STATES = TrustState.__table__.c
STATE_COLUMNS = (_STATES.node_id, *(_STATES[name] for name in STATE_VALUES))


def interval_observations(
    at: datetime,
    outcome: str,
    ratio: float | None,
    viewer_ok: int,
    viewer_failed: int,
    viewer_mismatch_sessions: int,
    params: trust.TrustParams,
) -> list[trust.Observation]:
    """A reconciled interval's verdict, and what uncontrolled viewers' receipts said about the
    node, from the row's fields, which the trust update unpacks (tens of thousands of rows an
    hour; reading a row's fields by name costs more than this).

    Mismatches count only when viewers of at least two sessions reported them: one viewer's
    word is checked by a targeted probe instead (whose result is a probe observation)."""
    found = []
    verdict = trust.interval_observation(at, outcome, ratio, params)
    if verdict is not None:
        found.append(verdict)
    mismatched = viewer_mismatch_sessions if viewer_mismatch_sessions >= 2 else 0
    viewers = trust.viewer_observation(at, viewer_ok, viewer_failed, mismatched, params)
    if viewers is not None:
        found.append(viewers)
    return found


def whole_sessions(probes: list[Any], limit: int) -> list[Any]:
    """A batch cut at ``limit`` rows may end inside a probe session: leave that session's rows
    (and the rows after its first) for the next run, so each session is judged once, whole.
    The prober writes a session's rows in one transaction with one ``recorded_at``."""
    if len(probes) < limit:
        return probes
    last = probes[-1].session_id
    cut = next(i for i, p in enumerate(probes) if p.session_id == last)
    return probes[:cut] or probes  # one session larger than a batch: judge what there is


def probe_observations(
    probes: list[Any], params: trust.TrustParams
) -> list[tuple[str, trust.Observation]]:
    """One observation per (node, probe session), by ``trust.probe_session_observation`` (the
    rule the simulation uses too), at the session's first fetch."""
    sessions: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for probe in probes:
        sessions[(probe.node_id, probe.session_id)].append(probe)
    found = []
    for (node_id, session_id), rows in sessions.items():
        rows.sort(key=lambda p: p.id)
        retried = sum(p.attempts > 1 for p in rows)
        outcomes = ", ".join(f"{p.sequence}: {p.outcome}" for p in rows)
        detail = f"probe {session_id[:8]} ({outcomes})" + (
            f", {retried} after a retry" if retried else ""
        )
        obs = trust.probe_session_observation(
            [p.outcome for p in rows], min(p.started_at for p in rows), params, detail
        )
        if obs is not None:
            found.append((node_id, obs))
    return found


async def _update_states(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Write these nodes' states (dicts of ``node_id`` and ``STATE_VALUES``): one UPDATE from
    ``unnest`` on PostgreSQL, one executemany elsewhere."""
    if not rows:
        return
    table = TrustState.__table__
    if session.bind.dialect.name != "postgresql":
        await session.execute(
            update(table)
            .where(table.c.node_id == bindparam("node"))
            .values({name: bindparam(name) for name in STATE_VALUES}),
            [{"node": row["node_id"], **row} for row in rows],
        )
        return
    names = ["node_id", *STATE_VALUES]
    source, params = unnest_rows(table, names)
    sets = ", ".join(f"{n} = r.{n}" for n in STATE_VALUES)
    sql = f"UPDATE {table.name} SET {sets} FROM {source} WHERE {table.name}.node_id = r.node_id"  # noqa: S608
    await session.execute(text(sql).bindparams(*params), column_arrays(table, rows, names))


async def _watermark(session: AsyncSession, name: str) -> int:
    row = await session.get(Watermark, name)
    if row is None:
        session.add(Watermark(name=name, position=0, updated_at=utcnow()))
        await session.flush()
        return 0
    return row.position


async def update_trust(
    ctx: AppContext, now: datetime | None = None, *, guard: Guard | None = None
) -> dict[str, Any]:
    """Fold new probes and reconciliations into the nodes' trust; one transaction."""
    now = now or utcnow()
    settled = now - timedelta(seconds=SETTLE_S)
    params = trust_params(ctx.settings)
    async with ctx.sessions() as session:
        try:
            probe_mark = await _watermark(session, PROBES_WATERMARK)
            rec_mark = await _watermark(session, RECONCILIATIONS_WATERMARK)
            await session.commit()
        except IntegrityError:  # created by another worker at the same moment
            await session.rollback()
            probe_mark = await _watermark(session, PROBES_WATERMARK)
            rec_mark = await _watermark(session, RECONCILIATIONS_WATERMARK)

        # Columns, not ORM objects: a backlog is thousands of rows per run.
        probes = list(
            (
                await session.execute(
                    select(*PROBE_COLUMNS)
                    .where(_PROBES.id > probe_mark, _PROBES.recorded_at <= settled)
                    .order_by(_PROBES.id)
                    .limit(BATCH)
                )
            ).all()
        )
        recs = list(
            (
                await session.execute(
                    select(*RECONCILIATION_COLUMNS)
                    .where(_RECONCILIATIONS.id > rec_mark, _RECONCILIATIONS.created_at <= settled)
                    .order_by(_RECONCILIATIONS.id)
                    .limit(BATCH)
                )
            ).all()
        )
        probes = whole_sessions(probes, BATCH)
        observations: dict[str, list[trust.Observation]] = defaultdict(list)
        for node_id, obs in probe_observations(probes, params):
            observations[node_id].append(obs)
        for _id, node_id, *fields in recs:
            observations[node_id] += interval_observations(*fields, params)

        # Idle intervals say nothing; reconciliations outlive their nodes, trust does not.
        observations = {node_id: obs for node_id, obs in observations.items() if obs}
        # The nodes that still exist, with their states (if any), in one query.
        nodes = Node.__table__.c
        found = (
            await session.execute(
                select(nodes.id, nodes.registered_at, *STATE_COLUMNS)
                .select_from(Node.__table__.outerjoin(TrustState.__table__))
                .where(nodes.id.in_(list(observations)))
            )
        ).all()
        registered = {row.id: row.registered_at for row in found}
        live = set(registered)
        states = {row.id: row for row in found if row.node_id is not None}
        levels: dict[str, int] = defaultdict(int)
        updates: list[dict[str, Any]] = []
        inserts: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for node_id in sorted(live):
            obs = observations[node_id]
            row = states.get(node_id)
            before = (
                state_of(row)
                if row is not None
                else trust.initial(min(registered[node_id], min(o.at for o in obs)), params)
            )
            after = trust.observe(before, obs, params)
            values = {
                "alpha": after.alpha,
                "beta": after.beta,
                "updated_at": after.updated_at,
                "first_seen_at": after.first_seen_at,
                "probes_passed": after.probes_passed,
                "warned_at": after.warned_at,
                "penalised_at": after.penalised_at,
            }
            if row is None:
                inserts.append({"node_id": node_id, **values})
            else:
                updates.append({"node_id": node_id, **values})
            standing = trust.standing(after, max(now, after.updated_at), params)
            levels[standing.level] += 1
            score = trust.score(after)
            by_source: dict[str, list[trust.Observation]] = {}
            for o in obs:
                by_source.setdefault(o.source, []).append(o)
            for source in ("probe", "reconciliation", "viewers"):
                mine = by_source.get(source)
                if not mine:
                    continue
                details = "; ".join(dict.fromkeys(o.detail for o in mine if o.detail))
                events.append(
                    {
                        "node_id": node_id,
                        "at": max(o.at for o in mine),
                        "source": source,
                        "success": sum(o.success for o in mine),
                        "failure": sum(o.failure for o in mine),
                        "score": score,
                        "level": standing.level,
                        "detail": f"{len(mine)} observation(s): {details}"[:300],
                    }
                )
            if standing.level in ("warned", "penalised") and (
                after.warned_at != before.warned_at or after.penalised_at != before.penalised_at
            ):
                log.warning(
                    "node trust fell",
                    extra={"node_id": node_id, "level": standing.level, "score": standing.score},
                )
        try:
            await _update_states(session, updates)
            await insert_rows(session, TrustState.__table__, inserts)
            await insert_rows(session, TrustEvent.__table__, events)
        except IntegrityError:  # another worker created a state first
            await session.rollback()
            return {"skipped": "another worker updated trust meanwhile"}
        try:
            if probes:
                await advance(session, PROBES_WATERMARK, probe_mark, probes[-1].id)
            if recs:
                await advance(session, RECONCILIATIONS_WATERMARK, rec_mark, recs[-1].id)
            if guard is not None:
                await guard(session)
            await session.commit()
        except (WatermarkMoved, IntegrityError):
            await session.rollback()
            return {"skipped": "another worker updated trust meanwhile"}
    return {
        "probes": len(probes),
        "reconciliations": len(recs),
        "nodes": len(live),
        "levels": dict(levels),
    }
