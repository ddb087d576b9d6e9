from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy import func, select

from ..accounts.auth import Context, CurrentAccount, OptionalAccount, Session
from ..database import utcnow
from ..errors import AppError
from ..nodes.models import Node
from ..routing import DocumentedRoute
from .lifecycle import StreamStatus
from .models import Stream, StreamTransition
from .schemas import (
    StatusChange,
    StreamCreate,
    StreamList,
    StreamOut,
    StreamOwnerOut,
    StreamUpdate,
    StreamWithKey,
    TransitionOut,
)
from .service import (
    create_stream,
    delete_stream,
    ensure_manager,
    get_stream,
    may_manage,
    node_counts,
    owner_view,
    public_view,
    rotate_key,
    transition,
    with_key,
)

router = APIRouter(route_class=DocumentedRoute, prefix="/api/v1/streams", tags=["streams"])

# Path names are validated loosely (length only) so that a malformed name reads as "no such
# stream" (404) rather than as a validation error on a path the client did not build.
StreamName = Annotated[str, Path(max_length=200)]


@router.get("", response_model=StreamList)
async def list_streams(
    session: Session,
    status: StreamStatus | None = Query(default=None, description="Only streams in this state"),
    limit: int = Query(default=50, ge=1, le=200),
    offset: int = Query(default=0, ge=0, le=1_000_000),
) -> StreamList:
    """Every stream (archived ones only when asked for by status). Public: never a key."""
    query = select(Stream)
    if status is not None:
        query = query.where(Stream.status == status.value)
    else:
        query = query.where(Stream.status != StreamStatus.ARCHIVED.value)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(
        query.order_by(Stream.created_at.desc()).limit(limit).offset(offset)
    )
    return StreamList(
        streams=[public_view(s) for s in rows], total=total or 0, limit=limit, offset=offset
    )


@router.post("", status_code=201, response_model=StreamWithKey)
async def create_stream_route(
    body: StreamCreate, account: CurrentAccount, ctx: Context, session: Session
) -> StreamWithKey:
    """Create a stream. The answer holds the stream key: it is shown only this once."""
    stream, key = await create_stream(
        session, account, body.name, body.title, body.description, body.is_test
    )
    return with_key(stream, key, ctx.settings.ingest_rtmp_url)


@router.get("/{name}", response_model=StreamOwnerOut | StreamOut)
async def get_stream_route(
    name: StreamName, account: OptionalAccount, ctx: Context, session: Session
) -> StreamOut:
    """One stream. Its owner and admins also see ids, key age and allowed transitions."""
    stream = await get_stream(session, name)
    counts = await node_counts(session, ctx.presence, stream)
    return (
        owner_view(stream, counts) if may_manage(stream, account) else public_view(stream, counts)
    )


@router.patch("/{name}", response_model=StreamOwnerOut)
async def update_stream_route(
    name: StreamName, body: StreamUpdate, account: CurrentAccount, session: Session
) -> StreamOwnerOut:
    """Change a stream's title, description or test flag."""
    stream = await get_stream(session, name)
    ensure_manager(stream, account)
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise AppError("Nothing to change: send at least one of title, description, is_test.")
    for field, value in changes.items():
        if value is None:
            raise AppError(f"{field} cannot be null; leave it out to keep the current value.")
        setattr(stream, field, value)
    stream.updated_at = utcnow()
    await session.commit()
    return owner_view(stream)


@router.delete("/{name}", status_code=204)
async def delete_stream_route(
    name: StreamName, account: CurrentAccount, ctx: Context, session: Session
) -> Response:
    """Delete a stream with its invites, nodes and history. Not while it is published."""
    stream = await get_stream(session, name)
    ensure_manager(stream, account)
    node_ids = list(await session.scalars(select(Node.id).where(Node.stream_id == stream.id)))
    await delete_stream(session, stream)
    # The nodes went with the stream: their tokens and presence must stop working at once.
    for node_id in node_ids:
        await ctx.node_tokens.forget_node(node_id)
        await ctx.presence.forget(node_id, stream.id)
    return Response(status_code=204)


@router.post("/{name}/rotate-key", response_model=StreamWithKey)
async def rotate_key_route(
    name: StreamName, account: CurrentAccount, ctx: Context, session: Session
) -> StreamWithKey:
    """Replace the stream key. The old key stops working at once; the new one is shown once."""
    stream = await get_stream(session, name)
    ensure_manager(stream, account)
    key = await rotate_key(session, stream)
    return with_key(stream, key, ctx.settings.ingest_rtmp_url)


@router.post("/{name}/status", response_model=StreamOwnerOut)
async def change_status_route(
    name: StreamName, body: StatusChange, account: CurrentAccount, session: Session
) -> StreamOwnerOut:
    """Make a manual lifecycle transition; an invalid one answers 409 with the allowed ones."""
    stream = await get_stream(session, name)
    ensure_manager(stream, account)
    stream = await transition(session, stream, body.status, actor=f"account:{account.id}")
    return owner_view(stream)


@router.get("/{name}/history", response_model=list[TransitionOut])
async def history_route(
    name: StreamName,
    account: CurrentAccount,
    session: Session,
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[TransitionOut]:
    """The stream's state changes, newest first, with who made each."""
    stream = await get_stream(session, name)
    ensure_manager(stream, account)
    rows = await session.scalars(
        select(StreamTransition)
        .where(StreamTransition.stream_id == stream.id)
        .order_by(StreamTransition.id.desc())
        .limit(limit)
    )
    return [
        TransitionOut(from_status=r.from_status, to_status=r.to_status, actor=r.actor, at=r.at)
        for r in rows
    ]
