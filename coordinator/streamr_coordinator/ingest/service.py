"""What publishing means for a stream: key checks, LIVE/TESTING/OFFLINE, reconciliation."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..context import AppContext
from ..credentials import secret_hash
from ..errors import Conflict, Forbidden, NotFound, TooManyRequests
from ..streams.lifecycle import StreamStatus, allowed_next, can_transition
from ..streams.models import Stream
from ..streams.service import transition

log = logging.getLogger("streamr.ingest")

PUBLISHING = (StreamStatus.LIVE.value, StreamStatus.TESTING.value)
ACTOR = "ingest"


def publish_state(stream: Stream) -> StreamStatus:
    return StreamStatus.TESTING if stream.is_test else StreamStatus.LIVE


async def authorize_publish(ctx: AppContext, session: AsyncSession, key: str, addr: str) -> Stream:
    """The stream this key may publish, or a refusal. The key itself is never logged."""
    limit = ctx.settings.publish_failures_per_minute
    throttle_key = f"publish-fail:{addr}"
    if await ctx.attempts.count(throttle_key, 60) >= limit:
        log.warning("publish throttled", extra={"addr": addr})
        raise TooManyRequests(
            "Too many refused publish attempts from this address; wait a minute.",
            headers={"Retry-After": "60"},
        )
    stream = await session.scalar(select(Stream).where(Stream.key_hash == secret_hash(key)))
    if stream is None:
        await ctx.attempts.hit(throttle_key, 60)
        log.warning("publish refused: unknown or rotated stream key", extra={"addr": addr})
        raise Forbidden("This stream key is not valid; copy the current key from your stream.")
    current, target = StreamStatus(stream.status), publish_state(stream)
    if current.value in PUBLISHING:
        log.warning("publish refused: already publishing", extra={"stream": stream.name})
        raise Conflict(f"Stream {stream.name!r} is already being published.")
    if not can_transition(current, target):
        log.warning(
            "publish refused: state", extra={"stream": stream.name, "status": current.value}
        )
        raise Conflict(
            f"Stream {stream.name!r} is {current.value}; it may become "
            f"{', '.join(allowed_next(current))}, not {target.value}. Set it READY first."
        )
    log.info("publish authorized", extra={"stream": stream.name, "addr": addr})
    return stream


async def _stream(session: AsyncSession, name: str) -> Stream:
    stream = await session.scalar(select(Stream).where(Stream.name == name))
    if stream is None:
        raise NotFound(f"No stream is named {name!r}.")
    return stream


async def publish_started(session: AsyncSession, name: str) -> Stream:
    """The origin began cutting HLS for ``name``: LIVE, or TESTING for a test stream."""
    stream = await _stream(session, name)
    target = publish_state(stream)
    if stream.status == target.value:
        return stream  # a repeated hook, or reconciliation got there first
    return await transition(session, stream, target, actor=ACTOR)


async def publish_ended(session: AsyncSession, name: str) -> Stream | None:
    stream = await session.scalar(select(Stream).where(Stream.name == name))
    if stream is None or stream.status not in PUBLISHING:
        return stream  # deleted meanwhile, or already OFFLINE: nothing to do
    return await transition(session, stream, StreamStatus.OFFLINE, actor=ACTOR)


async def reconcile(session: AsyncSession, publishing: set[str]) -> list[str]:
    """Make the stream states match what the ingest is really publishing.

    Run by the ingest at start and periodically, so that a hook lost to a restart of either side
    cannot leave a stream LIVE forever (or OFFLINE while it plays).
    """
    changed = []
    marked = await session.scalars(select(Stream).where(Stream.status.in_(PUBLISHING)))
    for stream in list(marked):
        if stream.name not in publishing:
            await transition(session, stream, StreamStatus.OFFLINE, actor=f"{ACTOR}-sync")
            changed.append(stream.name)
    if publishing:
        rows = await session.scalars(select(Stream).where(Stream.name.in_(publishing)))
        for stream in list(rows):
            target = publish_state(stream)
            if stream.status != target.value and can_transition(
                StreamStatus(stream.status), target
            ):
                await transition(session, stream, target, actor=f"{ACTOR}-sync")
                changed.append(stream.name)
    if changed:
        log.info("states reconciled with the ingest", extra={"streams": changed})
    return changed
