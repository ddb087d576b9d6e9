"""What viewers' receipts say about nodes, as routing reads it.

Kept deliberately simple (the trust score of issue 6 builds on the same receipts):

- a node any viewer of the stream reported a ``mismatch`` for is flagged, out of routing for
  every viewer, for ``viewer_flag_s`` (5 minutes by default): its bytes did not match the
  signature, which an honest node cannot cause;
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

from .models import Receipt
from .routing import NodeSignals

FAILURE_WINDOW_S = 30.0
FAILING_SESSIONS = 3
LATENCY_WINDOW_S = 60.0


async def node_signals(
    session: AsyncSession, stream_id: str, now: datetime, flag_s: float
) -> dict[str, NodeSignals]:
    recent = (Receipt.stream_id == stream_id, Receipt.node_id.is_not(None))
    mismatched = set(
        await session.scalars(
            select(Receipt.node_id)
            .where(
                *recent,
                Receipt.outcome == "mismatch",
                Receipt.received_at >= now - timedelta(seconds=flag_s),
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
    flagged = mismatched | failing
    return {
        node_id: NodeSignals(flagged=node_id in flagged, latency_ms=latency.get(node_id))
        for node_id in flagged | latency.keys()
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
