"""What viewers' receipts say about nodes, as routing reads it.

Kept deliberately simple (the trust score of issue 6 builds on the same receipts):

- a node is flagged, out of routing for every viewer, for ``viewer_flag_s`` (5 minutes by
  default) when a probe confirmed it served bytes that did not match the signature (which an
  honest node cannot cause), or when ``MISMATCH_SESSIONS`` different sessions reported a
  ``mismatch`` for it. One viewer's mismatch alone could be a lie meant to push a competitor
  out, so it only triggers an immediate probe of the node (verification/prober.py);
- a node whose trust standing is penalised has routing weight 0 and is out; others are
  weighted by their standing's routing weight;
- a node that ``FAILING_SESSIONS`` different sessions got an ``error`` or ``stall`` from within
  ``FAILURE_WINDOW_S`` is flagged for the rest of that window: it is failing, not just one
  viewer's network;
- a session avoids, for ``FAILURE_WINDOW_S``, every node it reported anything but ``ok`` for;
- latency is the mean time to first byte of ``ok`` deliveries in the last ``LATENCY_WINDOW_S``.

Each is one indexed range query over the stream's (or the session's) recent receipts.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..verification.models import Probe
from ..verification.service import stream_standings
from ..verification.trust import TrustParams
from .models import Receipt
from .routing import NodeSignals

FAILURE_WINDOW_S = 30.0
FAILING_SESSIONS = 3
MISMATCH_SESSIONS = 2
LATENCY_WINDOW_S = 60.0


async def node_signals(
    session: AsyncSession,
    stream_id: str,
    now: datetime,
    flag_s: float,
    trust_params: TrustParams | None = None,
) -> dict[str, NodeSignals]:
    recent = (Receipt.stream_id == stream_id, Receipt.node_id.is_not(None))
    flag_since = now - timedelta(seconds=flag_s)
    mismatched = set(
        await session.scalars(
            select(Receipt.node_id)
            .where(*recent, Receipt.outcome == "mismatch", Receipt.received_at >= flag_since)
            .group_by(Receipt.node_id)
            .having(func.count(distinct(Receipt.session_id)) >= MISMATCH_SESSIONS)
        )
    )
    mismatched.update(
        await session.scalars(
            select(Probe.node_id)
            .where(
                Probe.stream_id == stream_id,
                Probe.outcome == "mismatch",
                Probe.started_at >= flag_since,
            )
            .distinct()
        )
    )
    failing = set(
        await session.scalars(
            select(Receipt.node_id)
            .where(
                *recent,
                Receipt.outcome.in_(("error", "stall")),
                Receipt.received_at >= now - timedelta(seconds=FAILURE_WINDOW_S),
            )
            .group_by(Receipt.node_id)
            .having(func.count(distinct(Receipt.session_id)) >= FAILING_SESSIONS)
        )
    )
    latency = {
        node_id: float(mean)
        for node_id, mean in await session.execute(
            select(Receipt.node_id, func.avg(Receipt.ttfb_ms))
            .where(
                *recent,
                Receipt.outcome == "ok",
                Receipt.ttfb_ms.is_not(None),
                Receipt.received_at >= now - timedelta(seconds=LATENCY_WINDOW_S),
            )
            .group_by(Receipt.node_id)
        )
        if node_id is not None and mean is not None
    }
    trust = {
        node_id: standing.routing_weight
        for node_id, standing in (
            await stream_standings(session, stream_id, now, trust_params or TrustParams())
        ).items()
    }
    flagged = mismatched | failing
    return {
        node_id: NodeSignals(
            flagged=node_id in flagged,
            latency_ms=latency.get(node_id),
            trust=trust.get(node_id, 1.0),
        )
        for node_id in flagged | latency.keys() | trust.keys()
        if node_id is not None
    }


async def avoided_by(session: AsyncSession, session_id: str, now: datetime) -> frozenset[str]:
    """The nodes this session reported a failure of within the failure window."""
    rows = await session.scalars(
        select(Receipt.node_id)
        .where(
            Receipt.session_id == session_id,
            Receipt.node_id.is_not(None),
            Receipt.outcome != "ok",
            Receipt.received_at >= now - timedelta(seconds=FAILURE_WINDOW_S),
        )
        .distinct()
    )
    return frozenset(node_id for node_id in rows if node_id is not None)
