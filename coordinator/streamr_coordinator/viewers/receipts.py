"""Recording viewers' receipts exactly once.

The page keeps a batch until the coordinator acknowledges it and sends it again after a fault,
so the same batch can arrive twice, even twice at the same moment. The batch row is inserted
first; the unique constraint on (session, batch id) lets exactly one insert win, on SQLite and
PostgreSQL alike, and every other attempt answers ``duplicate`` with the winner's count.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from streamr_protocol.receipts import ReceiptAck, ReceiptBatch
from streamr_protocol.viewer_sessions import SessionClaims

from ..database import insert_once, utcnow
from ..errors import AppError, NotFound
from ..nodes.models import Node
from .models import Receipt, ViewerSession
from .models import ReceiptBatch as ReceiptBatchRow

log = logging.getLogger("streamr.viewers")


class UnknownNode(AppError):
    code = "unknown_node"


async def record_receipts(
    session: AsyncSession, claims: SessionClaims, batch: ReceiptBatch
) -> ReceiptAck:
    viewer = await session.get(ViewerSession, claims.session_id)
    if viewer is None:
        raise NotFound(
            "This viewer session no longer exists (its stream was deleted, or it expired long "
            "ago); open a new session with POST /api/v1/streams/{name}/sessions."
        )
    named = {r.node_id for r in batch.receipts if r.node_id is not None}
    if named:
        # Any node ever registered for the stream: one that left since it served still counts.
        known = set(
            await session.scalars(
                select(Node.id).where(Node.stream_id == viewer.stream_id, Node.id.in_(named))
            )
        )
        for position, receipt in enumerate(batch.receipts):
            if receipt.node_id is not None and receipt.node_id not in known:
                raise UnknownNode(
                    f"receipts.{position}.node_id names no node of stream {claims.stream!r}; "
                    "report only the sources this session was given.",
                    details={"field": f"receipts.{position}.node_id"},
                )

    now = utcnow()
    row = ReceiptBatchRow(
        session_id=viewer.id, batch_id=batch.batch_id, received_at=now, receipts=len(batch.receipts)
    )
    first = await insert_once(
        session,
        row,
        ReceiptBatchRow.session_id == claims.session_id,
        ReceiptBatchRow.batch_id == batch.batch_id,
    )
    if first is not None:
        return ReceiptAck(batch_id=batch.batch_id, duplicate=True, receipts=first.receipts)

    session.add_all(
        Receipt(
            batch_pk=row.id,
            session_id=viewer.id,
            stream_id=viewer.stream_id,
            node_id=r.node_id,
            source_kind=r.source_kind,
            segment=r.segment,
            sequence=r.sequence,
            bytes=r.bytes,
            ttfb_ms=r.ttfb_ms,
            download_ms=r.download_ms,
            outcome=r.outcome,
            received_at=now,
        )
        for r in batch.receipts
    )
    await session.commit()
    bad = sorted({r.node_id for r in batch.receipts if r.outcome == "mismatch" and r.node_id})
    if bad:
        log.warning(
            "viewer received segments that failed verification; nodes probed",
            extra={"stream": claims.stream, "session_id": viewer.id, "node_ids": bad},
        )
    return ReceiptAck(batch_id=batch.batch_id, duplicate=False, receipts=len(batch.receipts))
