"""Register segments reported by the origin watcher, serve the signed index, prune old rows."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from streamr_protocol.attestation import SegmentEntry

from ..database import utcnow
from ..errors import Conflict, NotFound
from ..streams.models import Stream
from .models import Segment
from .signer import SegmentSigner

log = logging.getLogger("streamr.attestation")


@dataclass(frozen=True)
class ReportedSegment:
    stream: str
    sequence: int
    name: str
    duration_ms: int
    size: int
    sha256: str
    discontinuity: bool


async def register_segments(
    session: AsyncSession,
    signer: SegmentSigner,
    reported: list[ReportedSegment],
    replace_older_than: datetime,
) -> tuple[int, int]:
    """Sign and store new segments; returns (accepted, already known).

    Re-sending a known segment is harmless (a restarted watcher re-sends what is still listed).
    A known sequence with different content is refused, unless the stored one is older than the
    retention window: then the ingest was reset and began numbering again, and the old record
    describes a segment that no longer exists anywhere.
    """
    names = {r.stream for r in reported}
    streams = {
        s.name: s for s in await session.scalars(select(Stream).where(Stream.name.in_(names)))
    }
    missing = names - streams.keys()
    if missing:
        raise NotFound(f"No stream is named {sorted(missing)[0]!r}; segments were not recorded.")

    # One query for every record the batch could collide with, not one per segment: a
    # restarted watcher re-sends its whole listing at once.
    wanted: dict[str, set[int]] = {}
    for item in reported:
        wanted.setdefault(streams[item.stream].id, set()).add(item.sequence)
    rows = await session.scalars(
        select(Segment).where(
            or_(
                *(
                    (Segment.stream_id == stream_id) & Segment.sequence.in_(sequences)
                    for stream_id, sequences in wanted.items()
                )
            )
        )
    )
    stored = {(row.stream_id, row.sequence): row for row in rows}

    accepted = known = 0
    for item in reported:
        stream = streams[item.stream]
        existing = stored.get((stream.id, item.sequence))
        if existing is not None:
            if existing.sha256 == item.sha256 and existing.size == item.size:
                known += 1
                continue
            if existing.created_at > replace_older_than:
                await session.rollback()
                raise Conflict(
                    f"Segment {item.sequence} of {item.stream} was already attested with other "
                    "content; a segment never changes once listed.",
                    details={"stream": item.stream, "sequence": item.sequence},
                )
            await session.delete(existing)
            await session.flush()
        record = Segment(
            stream_id=stream.id,
            sequence=item.sequence,
            name=item.name,
            duration_ms=item.duration_ms,
            size=item.size,
            sha256=item.sha256,
            discontinuity=item.discontinuity,
            signature=signer.sign(
                stream.name, item.sequence, item.name, item.duration_ms, item.size, item.sha256
            ),
            created_at=utcnow(),
        )
        session.add(record)
        stored[(stream.id, item.sequence)] = record  # a repeat later in the batch is known
        accepted += 1
    await session.commit()
    if accepted:
        log.info(
            "segments attested",
            extra={"streams": sorted(names), "accepted": accepted, "known": known},
        )
    return accepted, known


async def signed_index(
    session: AsyncSession, stream: Stream, since: int | None, limit: int
) -> list[SegmentEntry]:
    """The newest ``limit`` segments (or those after ``since``), oldest first."""
    query = select(Segment).where(Segment.stream_id == stream.id)
    if since is not None:
        query = query.where(Segment.sequence > since).order_by(Segment.sequence).limit(limit)
        rows = list(await session.scalars(query))
    else:
        rows = list(await session.scalars(query.order_by(Segment.sequence.desc()).limit(limit)))
        rows.reverse()
    return [
        SegmentEntry(
            sequence=row.sequence,
            name=row.name,
            duration_ms=row.duration_ms,
            size=row.size,
            sha256=row.sha256,
            discontinuity=row.discontinuity,
            signature=row.signature,
        )
        for row in rows
    ]


async def prune_segments(session: AsyncSession, retention_s: float) -> int:
    """Delete segment records older than the retention: storage stays bounded."""
    cutoff = utcnow() - timedelta(seconds=retention_s)
    result = await session.execute(delete(Segment).where(Segment.created_at < cutoff))
    await session.commit()
    return result.rowcount or 0
