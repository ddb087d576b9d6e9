"""Recording viewers' receipts exactly once.

The page keeps a batch until the coordinator acknowledges it and sends it again after a fault,
so the same batch can arrive twice, even twice at the same moment. The batch row is inserted
first; the unique constraint on (session, batch id) lets exactly one insert win, on SQLite and
PostgreSQL alike, and every other attempt answers ``duplicate`` with the winner's count.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from streamr_protocol.receipts import ReceiptAck, ReceiptBatch
from streamr_protocol.viewer_sessions import SessionClaims

from ..database import UTCDateTime, utcnow
from ..errors import AppError, NotFound
from ..nodes.models import Node
from ..verification import receipt_tallies
from ..verification.reconciliation import ReceiptFact
from .models import Receipt, ViewerSession
from .models import ReceiptBatch as ReceiptBatchRow

log = logging.getLogger("streamr.viewers")

_BATCHES = ReceiptBatchRow.__table__
_RECEIPTS = Receipt.__table__


class UnknownNode(AppError):
    code = "unknown_node"


async def record_receipts(
    session: AsyncSession, claims: SessionClaims, batch: ReceiptBatch, *, bucket_s: int
) -> ReceiptAck:
    """Store one batch, or answer ``duplicate`` for a batch id the session already sent.

    Every receipt batch of every viewer comes here (about one request in seven at 5,000 nodes),
    so its cost is counted in statements: on PostgreSQL one statement, committed by itself, does
    the checks and both inserts (``_record_in_one_statement``); elsewhere Core statements do, one
    SELECT for the session and the nodes it names, one INSERT ... ON CONFLICT DO NOTHING for the
    batch row (the unique constraint decides, without a failed statement and a rollback for a
    duplicate), one executemany INSERT for the receipts, and the commit. Then the batch is added
    to its receipt tallies (one upsert, and a query for segments this replica has not seen yet),
    which reconciliation reads instead of every receipt.
    """
    if session.get_bind().dialect.name == "postgresql":
        ack, stream_id, now = await _record_in_one_statement(session, claims, batch)
    else:
        ack, stream_id, now = await _record_in_statements(session, claims, batch)
    if not ack.duplicate:
        await _tally(session, claims.session_id, stream_id, now, batch, bucket_s)
    bad = sorted({r.node_id for r in batch.receipts if r.outcome == "mismatch" and r.node_id})
    if bad and not ack.duplicate:
        log.warning(
            "viewer received segments that failed verification; nodes probed",
            extra={"stream": claims.stream, "session_id": claims.session_id, "node_ids": bad},
        )
    return ack


def _unknown_node(claims: SessionClaims, batch: ReceiptBatch, known: set[str]) -> UnknownNode:
    position = next(
        i for i, r in enumerate(batch.receipts) if r.node_id is not None and r.node_id not in known
    )
    return UnknownNode(
        f"receipts.{position}.node_id names no node of stream {claims.stream!r}; "
        "report only the sources this session was given.",
        details={"field": f"receipts.{position}.node_id"},
    )


def _session_gone() -> NotFound:
    return NotFound(
        "This viewer session no longer exists (its stream was deleted, or it expired long "
        "ago); open a new session with POST /api/v1/streams/{name}/sessions."
    )


async def _known_nodes(session: AsyncSession, stream_id: str, named: set[str]) -> set[str]:
    """Of ``named``, the nodes ever registered for the stream (one that left since it served
    still counts)."""
    if not named:
        return set()
    found = await session.scalars(
        select(Node.id).where(Node.stream_id == stream_id, Node.id.in_(named))
    )
    return set(found)


async def _stored_count(session: AsyncSession, session_id: str, batch_id: str) -> int:
    first = await session.scalar(
        select(_BATCHES.c.receipts).where(
            _BATCHES.c.session_id == session_id, _BATCHES.c.batch_id == batch_id
        )
    )
    return first or 0


# The session, how many of the named nodes belong to its stream, the batch row unless the
# session sent this batch id before (or a node is unknown), and the receipts for that row: all
# in one statement, which PostgreSQL runs atomically (every part or none, even in autocommit).
_ONE_STATEMENT = text(
    """
WITH s AS (
    SELECT id, stream_id FROM viewer_sessions WHERE id = :session_id
), known AS (
    SELECT count(*) AS n FROM nodes JOIN s ON nodes.stream_id = s.stream_id
    WHERE nodes.id = ANY(CAST(:named AS VARCHAR[]))
), b AS (
    INSERT INTO viewer_receipt_batches (session_id, batch_id, received_at, receipts)
    SELECT s.id, :batch_id, :now, :count FROM s, known WHERE known.n = :named_count
    ON CONFLICT (session_id, batch_id) DO NOTHING
    RETURNING id
), r AS (
    INSERT INTO viewer_receipts (batch_pk, session_id, stream_id, node_id, source_kind, segment,
                                 sequence, bytes, ttfb_ms, download_ms, outcome, received_at)
    SELECT b.id, s.id, s.stream_id, x.node_id, x.source_kind, x.segment, x.sequence, x.bytes,
           x.ttfb_ms, x.download_ms, x.outcome, :now
    FROM b, s, unnest(
        CAST(:node_ids AS VARCHAR[]), CAST(:source_kinds AS VARCHAR[]),
        CAST(:segments AS VARCHAR[]), CAST(:sequences AS BIGINT[]), CAST(:bytes AS BIGINT[]),
        CAST(:ttfb_ms AS INTEGER[]), CAST(:download_ms AS INTEGER[]),
        CAST(:outcomes AS VARCHAR[])
    ) AS x(node_id, source_kind, segment, sequence, bytes, ttfb_ms, download_ms, outcome)
)
SELECT (SELECT stream_id FROM s) AS stream_id, (SELECT n FROM known) AS known,
       (SELECT id FROM b) AS batch_pk
"""
).bindparams(bindparam("now", type_=UTCDateTime()))


async def _record_in_one_statement(
    session: AsyncSession, claims: SessionClaims, batch: ReceiptBatch
) -> tuple[ReceiptAck, str, datetime]:
    receipts = batch.receipts
    named = {r.node_id for r in receipts if r.node_id is not None}
    now = utcnow()
    # Autocommit: the statement is its own transaction, without a BEGIN and a COMMIT each a
    # round trip of their own.
    connection = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    row = (
        await connection.execute(
            _ONE_STATEMENT,
            {
                "session_id": claims.session_id,
                "named": sorted(named),
                "named_count": len(named),
                "batch_id": batch.batch_id,
                "now": now,
                "count": len(receipts),
                "node_ids": [r.node_id for r in receipts],
                "source_kinds": [r.source_kind for r in receipts],
                "segments": [r.segment for r in receipts],
                "sequences": [r.sequence for r in receipts],
                "bytes": [r.bytes for r in receipts],
                "ttfb_ms": [r.ttfb_ms for r in receipts],
                "download_ms": [r.download_ms for r in receipts],
                "outcomes": [r.outcome for r in receipts],
            },
        )
    ).one()
    if row.stream_id is None:
        raise _session_gone()
    if row.known != len(named):
        raise _unknown_node(claims, batch, await _known_nodes(session, row.stream_id, named))
    if row.batch_pk is None:  # sent before, or at this moment by another request that won
        count = await _stored_count(session, claims.session_id, batch.batch_id)
        return ReceiptAck(batch_id=batch.batch_id, duplicate=True, receipts=count), "", now
    ack = ReceiptAck(batch_id=batch.batch_id, duplicate=False, receipts=len(receipts))
    return ack, row.stream_id, now


async def _record_in_statements(
    session: AsyncSession, claims: SessionClaims, batch: ReceiptBatch
) -> tuple[ReceiptAck, str, datetime]:
    stream_id = await session.scalar(
        select(ViewerSession.stream_id).where(ViewerSession.id == claims.session_id)
    )
    if stream_id is None:
        raise _session_gone()
    named = {r.node_id for r in batch.receipts if r.node_id is not None}
    known = await _known_nodes(session, stream_id, named)
    if known != named:
        raise _unknown_node(claims, batch, known)

    now = utcnow()
    batch_pk = await session.scalar(
        sqlite_insert(_BATCHES)
        .values(
            session_id=claims.session_id,
            batch_id=batch.batch_id,
            received_at=now,
            receipts=len(batch.receipts),
        )
        .on_conflict_do_nothing(index_elements=["session_id", "batch_id"])
        .returning(_BATCHES.c.id)
    )
    if batch_pk is None:  # sent before, or at this moment by another request that won
        count = await _stored_count(session, claims.session_id, batch.batch_id)
        return ReceiptAck(batch_id=batch.batch_id, duplicate=True, receipts=count), "", now

    await session.execute(
        insert(_RECEIPTS),
        [
            {
                "batch_pk": batch_pk,
                "session_id": claims.session_id,
                "stream_id": stream_id,
                "node_id": r.node_id,
                "source_kind": r.source_kind,
                "segment": r.segment,
                "sequence": r.sequence,
                "bytes": r.bytes,
                "ttfb_ms": r.ttfb_ms,
                "download_ms": r.download_ms,
                "outcome": r.outcome,
                "received_at": now,
            }
            for r in batch.receipts
        ],
    )
    await session.commit()
    ack = ReceiptAck(batch_id=batch.batch_id, duplicate=False, receipts=len(batch.receipts))
    return ack, stream_id, now


async def _tally(
    session: AsyncSession,
    session_id: str,
    stream_id: str,
    now: datetime,
    batch: ReceiptBatch,
    bucket_s: int,
) -> None:
    """Add the stored batch to its receipt tallies (verification/receipt_tallies.py), after the
    receipts themselves: if this fails or the process dies first, reconciliation finds the
    interval's tallies short of its receipts and reads the receipt rows instead, so nothing is
    lost either way."""
    by_node: dict[str, list[ReceiptFact]] = {}
    for r in batch.receipts:
        if r.node_id is not None:
            by_node.setdefault(r.node_id, []).append(
                ReceiptFact(
                    session_id, r.sequence, r.bytes, r.outcome, now, r.ttfb_ms, r.download_ms
                )
            )
    if not by_node:
        return
    try:
        await receipt_tallies.add(
            session,
            stream_id=stream_id,
            session_id=session_id,
            bucket_s=bucket_s,
            received_at=now,
            by_node=by_node,
        )
        await session.commit()
    except Exception:
        await session.rollback()
        log.exception(
            "could not add a receipt batch to its tallies", extra={"session_id": session_id}
        )
