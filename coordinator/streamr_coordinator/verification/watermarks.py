"""Watermarks: how far a job has read a stream of rows (intervals, probes, verdicts).

Moved with a compare-and-set in the same transaction as the work they cover, so a worker that
lost its lease, or raced another, writes nothing twice: its move fails and the work rolls back.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from ..database import utcnow
from .models import Watermark


class WatermarkMoved(Exception):
    """Another worker moved this watermark meanwhile (it did the same work first)."""


async def advance(session: AsyncSession, name: str, expected: int, to: int) -> None:
    """Move a watermark from ``expected`` to ``to``; WatermarkMoved if someone else moved it."""
    result = await session.execute(
        update(Watermark)
        .where(Watermark.name == name, Watermark.position == expected)
        .values(position=to, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:
        raise WatermarkMoved(name)
