"""Opening a viewer session: a signed token, and the sources to fetch the stream from."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from streamr_protocol.viewer_sessions import SessionClaims, ViewerSession, encode_session_token

from ..context import AppContext
from ..database import utcnow
from ..errors import Conflict, TooManyRequests
from ..nodes.relays import relay_candidates
from ..streams.lifecycle import on_air
from ..streams.models import Stream
from ..streams.service import playlist_path
from .models import ViewerSession as ViewerSessionRow
from .routing import order_sources

log = logging.getLogger("streamr.viewers")


async def throttle_sessions(ctx: AppContext, client: str) -> None:
    limit = ctx.settings.viewer_sessions_per_minute
    if await ctx.attempts.hit(f"viewer-session:{client}", 60) > limit:
        raise TooManyRequests(
            f"More than {limit} viewer sessions a minute from this address; wait a minute. "
            "A player needs one session per watch, not one per request.",
            headers={"Retry-After": "60"},
        )


async def open_session(ctx: AppContext, session: AsyncSession, stream: Stream) -> ViewerSession:
    if not on_air(stream.status):
        raise Conflict(
            f"Stream {stream.name!r} is {stream.status}, not on air; viewer sessions open only "
            "while it is LIVE or TESTING. Try again when the streamer goes live.",
            details={"status": stream.status},
        )
    # Whole seconds: the token carries Unix seconds, and the answer must say the same instant.
    expires_at = datetime.fromtimestamp(
        int(utcnow().timestamp() + ctx.settings.viewer_session_ttl_s), UTC
    )
    row = ViewerSessionRow(stream_id=stream.id, expires_at=expires_at)
    session.add(row)
    await session.commit()
    claims = SessionClaims(
        session_id=row.id,
        stream=stream.name,
        expires_at=int(expires_at.timestamp()),
        key_id=ctx.signer.key_id,
    )
    candidates = await relay_candidates(session, ctx.presence, stream.id)
    sources = order_sources(candidates, ctx.settings.origin_url)
    log.info(
        "viewer session opened",
        extra={"stream": stream.name, "session_id": row.id, "node_sources": len(sources) - 1},
    )
    return ViewerSession(
        session_id=row.id,
        stream=stream.name,
        token=encode_session_token(claims, ctx.signer.sign_bytes),
        expires_at=expires_at,
        playlist_path=playlist_path(stream.name),
        sources=sources,
    )


async def prune_sessions(session: AsyncSession, keep_s: float) -> int:
    """Delete sessions that expired more than ``keep_s`` ago; storage stays bounded.

    Nodes report within seconds, so by then every report about such a session has arrived.
    """
    cutoff = utcnow() - timedelta(seconds=keep_s)
    result = await session.execute(
        delete(ViewerSessionRow).where(ViewerSessionRow.expires_at < cutoff)
    )
    await session.commit()
    return result.rowcount or 0
