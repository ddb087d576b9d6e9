"""Time-driven lifecycle: OFFLINE for long becomes STALE, STALE for long becomes ARCHIVED."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..database import utcnow
from ..errors import Conflict
from .lifecycle import StreamStatus
from .models import Stream
from .service import transition


async def age_streams(
    session: AsyncSession, stale_after_s: float, archive_after_s: float
) -> list[str]:
    """Advance every stream whose time in OFFLINE or STALE ran out; returns their names."""
    now = utcnow()
    due = await session.scalars(
        select(Stream).where(
            (
                (Stream.status == StreamStatus.OFFLINE.value)
                & (Stream.offline_at < now - timedelta(seconds=stale_after_s))
            )
            | (
                (Stream.status == StreamStatus.STALE.value)
                & (Stream.stale_at < now - timedelta(seconds=archive_after_s))
            )
        )
    )
    changed = []
    for stream in list(due):
        target = (
            StreamStatus.STALE if stream.status == StreamStatus.OFFLINE else StreamStatus.ARCHIVED
        )
        try:
            await transition(session, stream, target, actor="timer")
        except Conflict:
            continue  # it went live (or was changed by hand) a moment ago: leave it
        changed.append(stream.name)
    return changed
