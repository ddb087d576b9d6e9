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

from sqlalchemy import Row, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..context import AppContext
from ..database import utcnow
from ..nodes.models import Node
from . import trust
from .models import Probe, Reconciliation, TrustEvent, TrustState, Watermark
from .reconciliation import IntervalVerdict
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

PROBE_COLUMNS = (
    Probe.id,
    Probe.node_id,
    Probe.session_id,
    Probe.sequence,
    Probe.outcome,
    Probe.attempts,
    Probe.started_at,
)
RECONCILIATION_COLUMNS = (
    Reconciliation.id,
    Reconciliation.node_id,
    Reconciliation.interval_end,
    Reconciliation.claimed_bytes,
    Reconciliation.receipted_bytes,
    Reconciliation.plausible_bytes,
    Reconciliation.paid_bytes,
    Reconciliation.outcome,
    Reconciliation.ratio,
    Reconciliation.viewer_ok,
    Reconciliation.viewer_failed,
    Reconciliation.viewer_mismatch_sessions,
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
STATE_COLUMNS = (TrustState.node_id, *(getattr(TrustState, name) for name in STATE_VALUES))


def reconciliation_observations(
    row: Reconciliation | Row[Any], params: trust.TrustParams
) -> list[trust.Observation]:
    """The interval's verdict, and what uncontrolled viewers' receipts said about the node.

    Mismatches count only when viewers of at least two sessions reported them: one viewer's
    word is checked by a targeted probe instead (whose result is a probe observation)."""
    verdict = IntervalVerdict(
        claimed_bytes=row.claimed_bytes,
        receipted_bytes=row.receipted_bytes,
        plausible_bytes=row.plausible_bytes,
        paid_bytes=row.paid_bytes,
        excluded={},
        discrepancies=(),
        outcome=row.outcome,  # type: ignore[arg-type]
        after={},
        ratio=row.ratio,
    )
    found = [trust.verdict_observation(row.interval_end, verdict, params)]
    mismatched = row.viewer_mismatch_sessions if row.viewer_mismatch_sessions >= 2 else 0
    found.append(
        trust.viewer_observation(
            row.interval_end, row.viewer_ok, row.viewer_failed, mismatched, params
        )
    )
    return [o for o in found if o is not None]


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
                    .where(Probe.id > probe_mark, Probe.recorded_at <= settled)
                    .order_by(Probe.id)
                    .limit(BATCH)
                )
            ).all()
        )
        recs = list(
            (
                await session.execute(
                    select(*RECONCILIATION_COLUMNS)
                    .where(Reconciliation.id > rec_mark, Reconciliation.created_at <= settled)
                    .order_by(Reconciliation.id)
                    .limit(BATCH)
                )
            ).all()
        )
        probes = whole_sessions(probes, BATCH)
        observations: dict[str, list[trust.Observation]] = defaultdict(list)
        for node_id, obs in probe_observations(probes, params):
            observations[node_id].append(obs)
        for rec in recs:
            observations[rec.node_id].extend(reconciliation_observations(rec, params))

        # Idle intervals say nothing; reconciliations outlive their nodes, trust does not.
        observations = {node_id: obs for node_id, obs in observations.items() if obs}
        registered = dict(
            (
                await session.execute(
                    select(Node.id, Node.registered_at).where(Node.id.in_(list(observations)))
                )
            ).all()
        )
        live = set(registered)
        states = {
            row.node_id: row
            for row in (
                await session.execute(
                    select(*STATE_COLUMNS).where(TrustState.node_id.in_(list(live)))
                )
            ).all()
        }
        levels: dict[str, int] = defaultdict(int)
        updates: list[dict[str, Any]] = []
        inserts: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for node_id in sorted(live):
            obs = observations[node_id]
            row = states.get(node_id)
            before = (
                state_of(row)  # type: ignore[arg-type]  # a row with the model's columns
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
                updates.append({"node": node_id, **values})
            standing = trust.standing(after, max(now, after.updated_at), params)
            levels[standing.level] += 1
            score = trust.score(after)
            for source in ("probe", "reconciliation", "viewers"):
                mine = [o for o in obs if o.source == source]
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
        # Core statements on the tables with every row as parameters (executemany), not the
        # ORM's unit of work: one statement per kind of write.
        states_table, events_table = TrustState.__table__, TrustEvent.__table__
        try:
            if updates:
                await session.execute(
                    update(states_table)
                    .where(states_table.c.node_id == bindparam("node"))
                    .values({name: bindparam(name) for name in STATE_VALUES}),
                    updates,
                )
            if inserts:
                await session.execute(insert(states_table), inserts)
            if events:
                await session.execute(insert(events_table), events)
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
