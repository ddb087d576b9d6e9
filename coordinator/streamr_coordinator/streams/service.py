"""Stream operations. Routes call these; the ingest hooks and timers (later) call them too."""

from __future__ import annotations

import logging

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..accounts.models import Account, Role
from ..credentials import STREAM_KEY_PREFIX, new_secret, secret_hash
from ..database import utcnow
from ..errors import Conflict, Forbidden, NotFound
from ..nodes.models import Node
from ..nodes.presence import PresenceStore
from .lifecycle import StreamStatus, allowed_next, can_transition
from .models import Stream, StreamTransition
from .schemas import NodeCounts, ObsSettings, StreamOut, StreamOwnerOut, StreamWithKey

log = logging.getLogger("streamr.streams")

STATE_COLUMNS = {
    StreamStatus.READY: "ready_at",
    StreamStatus.TESTING: "testing_at",
    StreamStatus.LIVE: "live_at",
    StreamStatus.OFFLINE: "offline_at",
    StreamStatus.STALE: "stale_at",
    StreamStatus.ARCHIVED: "archived_at",
}


async def get_stream(session: AsyncSession, name: str) -> Stream:
    stream = await session.scalar(select(Stream).where(Stream.name == name))
    if stream is None:
        raise NotFound(f"No stream is named {name!r}; GET /api/v1/streams lists them.")
    return stream


def playlist_path(stream_name: str) -> str:
    """Where the origin (and every node, which mirrors its paths) serves the live playlist."""
    return f"/hls/{stream_name}/index.m3u8"


def may_manage(stream: Stream, account: Account | None) -> bool:
    return account is not None and (account.id == stream.owner_id or account.role == Role.ADMIN)


def ensure_manager(stream: Stream, account: Account) -> None:
    if not may_manage(stream, account):
        raise Forbidden(f"Only the owner of stream {stream.name!r} (or an admin) may do this.")


def _state_times(stream: Stream) -> dict[str, object]:
    return {state.value: getattr(stream, column) for state, column in STATE_COLUMNS.items()}


def public_view(stream: Stream, counts: NodeCounts | None = None) -> StreamOut:
    return StreamOut(
        name=stream.name,
        title=stream.title,
        description=stream.description,
        status=StreamStatus(stream.status),
        is_test=stream.is_test,
        created_at=stream.created_at,
        updated_at=stream.updated_at,
        state_entered_at=_state_times(stream),
        nodes=counts,
    )


def owner_view(stream: Stream, counts: NodeCounts | None = None) -> StreamOwnerOut:
    return StreamOwnerOut(
        **public_view(stream, counts).model_dump(),
        id=stream.id,
        owner_id=stream.owner_id,
        key_rotated_at=stream.key_rotated_at,
        allowed_transitions=allowed_next(StreamStatus(stream.status)),
    )


def with_key(stream: Stream, key: str, rtmp_url: str) -> StreamWithKey:
    return StreamWithKey(
        stream=owner_view(stream), stream_key=key, obs=ObsSettings(server=rtmp_url, stream_key=key)
    )


async def node_counts(session: AsyncSession, presence: PresenceStore, stream: Stream) -> NodeCounts:
    registered = await session.scalar(
        select(func.count())
        .select_from(Node)
        .where(Node.stream_id == stream.id, Node.deregistered_at.is_(None))
    )
    online = await presence.online_in_stream(stream.id)
    return NodeCounts(registered=registered or 0, online=len(online))


async def create_stream(
    session: AsyncSession,
    owner: Account,
    name: str,
    title: str,
    description: str = "",
    is_test: bool = False,
) -> tuple[Stream, str]:
    if owner.role not in (Role.STREAMER, Role.ADMIN):
        raise Forbidden("Only streamer accounts own streams; register with role 'streamer'.")
    if await session.scalar(select(Stream.id).where(Stream.name == name)) is not None:
        raise Conflict(f"The stream name {name!r} is taken; choose another.")
    key = new_secret(STREAM_KEY_PREFIX)
    now = utcnow()
    stream = Stream(
        name=name,
        title=title,
        description=description,
        owner_id=owner.id,
        is_test=is_test,
        key_hash=secret_hash(key),
        key_rotated_at=now,
        created_at=now,
        updated_at=now,
        status=StreamStatus.READY.value,
        ready_at=now,
    )
    session.add(stream)
    await session.flush()
    session.add(
        StreamTransition(
            stream_id=stream.id, from_status=None, to_status="READY", actor=f"account:{owner.id}"
        )
    )
    await session.commit()
    log.info("stream created", extra={"stream": name, "account_id": owner.id})
    return stream, key


async def rotate_key(session: AsyncSession, stream: Stream) -> str:
    key = new_secret(STREAM_KEY_PREFIX)
    now = utcnow()
    stream.key_hash = secret_hash(key)
    stream.key_rotated_at = now
    stream.updated_at = now
    await session.commit()
    log.info("stream key rotated", extra={"stream": stream.name})
    return key


async def transition(
    session: AsyncSession, stream: Stream, target: StreamStatus, actor: str
) -> Stream:
    """Move ``stream`` to ``target`` if the lifecycle allows it, recording who did it.

    The update is conditional on the state we read, so two racing transitions cannot both
    apply: the loser gets the same 409 as any other invalid transition.
    """
    current = StreamStatus(stream.status)
    if not can_transition(current, target):
        allowed = allowed_next(current)
        raise Conflict(
            f"Stream {stream.name!r} is {current.value} and cannot become {target.value}; "
            f"from {current.value} it may become: {', '.join(allowed) or 'nothing'}.",
            details={"status": current.value, "allowed": allowed},
        )
    now = utcnow()
    result = await session.execute(
        update(Stream)
        .where(Stream.id == stream.id, Stream.status == current.value)
        .values({"status": target.value, "updated_at": now, STATE_COLUMNS[target]: now})
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        await session.rollback()
        await session.refresh(stream)
        raise Conflict(
            f"Stream {stream.name!r} changed state at the same moment (now {stream.status}); "
            "read it again and retry.",
            details={"status": stream.status, "allowed": allowed_next(StreamStatus(stream.status))},
        )
    session.add(
        StreamTransition(
            stream_id=stream.id, from_status=current.value, to_status=target.value, actor=actor
        )
    )
    await session.commit()
    await session.refresh(stream)
    log.info(
        "stream transition",
        extra={"stream": stream.name, "from": current.value, "to": target.value, "actor": actor},
    )
    return stream


async def delete_stream(session: AsyncSession, stream: Stream) -> None:
    """Delete a stream and, by cascade, its invites, nodes and history.

    A stream that is being published cannot be deleted: the ingest would keep serving it.
    """
    if stream.status in (StreamStatus.LIVE, StreamStatus.TESTING):
        raise Conflict(
            f"Stream {stream.name!r} is {stream.status}; stop publishing (or set it OFFLINE) "
            "before deleting it.",
            details={"status": stream.status},
        )
    await session.delete(stream)
    await session.commit()
    log.info("stream deleted", extra={"stream": stream.name})
