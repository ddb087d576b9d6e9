"""What publishing means for a stream: key checks, LIVE/TESTING/OFFLINE, reconciliation."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..context import AppContext
from ..credentials import secret_hash
from ..database import utcnow
from ..errors import Conflict, Forbidden, NotFound, TooManyRequests
from ..streams.lifecycle import StreamStatus, allowed_next, can_transition
from ..streams.models import Stream
from ..streams.service import STATE_COLUMNS, transition

log = logging.getLogger("streamr.ingest")

PUBLISHING = (StreamStatus.LIVE.value, StreamStatus.TESTING.value)
ACTOR = "ingest"
PUBLISH_AUTHORIZATION_TTL = timedelta(minutes=1)
# A sync reports what rtmp_stat said a moment before it arrived; a stream whose state changed
# more recently than that (a hook overtook the sync) is left alone until the next sync.
SYNC_GRACE = timedelta(seconds=15)


def _entered_current_state(stream: Stream) -> datetime:
    entered = getattr(stream, STATE_COLUMNS[StreamStatus(stream.status)])
    return entered or stream.updated_at


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
    stream.publish_authorized_at = utcnow()
    await session.commit()
    log.info("publish authorized", extra={"stream": stream.name, "addr": addr})
    return stream


async def _stream(session: AsyncSession, name: str) -> Stream:
    stream = await session.scalar(select(Stream).where(Stream.name == name))
    if stream is None:
        raise NotFound(f"No stream is named {name!r}.")
    return stream


async def publish_started(session: AsyncSession, name: str) -> Stream:
    """The origin began cutting HLS for ``name``: LIVE, or TESTING for a test stream.

    Only a publish the ingest authorized with the stream key a moment ago may start; the
    authorization is used up, so it cannot start a second one.
    """
    stream = await _stream(session, name)
    authorized = stream.publish_authorized_at
    if authorized is None or utcnow() - authorized > PUBLISH_AUTHORIZATION_TTL:
        log.warning("HLS publish refused: not authorized by a stream key", extra={"stream": name})
        raise Forbidden(
            f"Stream {name!r} was not authorized to publish; publish to the ingest application "
            "with the stream key."
        )
    stream.publish_authorized_at = None
    target = publish_state(stream)
    if stream.status == target.value:
        await session.commit()
        return stream  # reconciliation got there first
    return await transition(session, stream, target, actor=ACTOR)


async def publish_ended(session: AsyncSession, name: str) -> Stream | None:
    stream = await session.scalar(select(Stream).where(Stream.name == name))
    if stream is None or stream.status not in PUBLISHING:
        return stream  # deleted meanwhile, or already OFFLINE: nothing to do
    return await transition(session, stream, StreamStatus.OFFLINE, actor=ACTOR)


async def reconcile(
    session: AsyncSession, publishing: set[str], complete: bool = False
) -> list[str]:
    """Make the stream states match what the ingest is really publishing.

    Run by the ingest at start and periodically, so that a hook lost to a restart of either side
    cannot leave a stream LIVE forever (or OFFLINE while it plays).
    """
    changed = []
    # A complete list (nginx just started or stopped) is applied to every stream at once.
    settled_before = utcnow() + SYNC_GRACE if complete else utcnow() - SYNC_GRACE
    marked = await session.scalars(select(Stream).where(Stream.status.in_(PUBLISHING)))
    for stream in list(marked):
        if stream.name not in publishing and _entered_current_state(stream) < settled_before:
            await transition(session, stream, StreamStatus.OFFLINE, actor=f"{ACTOR}-sync")
            changed.append(stream.name)
    if publishing:
        rows = await session.scalars(select(Stream).where(Stream.name.in_(publishing)))
        for stream in list(rows):
            target = publish_state(stream)
            if (
                stream.status != target.value
                and can_transition(StreamStatus(stream.status), target)
                and _entered_current_state(stream) < settled_before
            ):
                await transition(session, stream, target, actor=f"{ACTOR}-sync")
                changed.append(stream.name)
    if changed:
        log.info("states reconciled with the ingest", extra={"streams": changed})
    return changed
