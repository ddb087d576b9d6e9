"""Viewer sessions: opening one (a signed token and the sources to fetch the stream from), and
the sources again as they change while the viewer watches."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from streamr_protocol.viewer_sessions import (
    SessionClaims,
    SessionSources,
    Source,
    ViewerSession,
    encode_session_token,
)

from ..context import AppContext
from ..database import utcnow
from ..errors import Conflict, NotFound, TooManyRequests
from ..nodes.relays import relay_candidates
from ..streams.lifecycle import on_air
from ..streams.models import Stream
from ..streams.service import playlist_path
from ..verification.service import trust_params
from .models import ViewerSession as ViewerSessionRow
from .routing import SessionView, order_sources
from .routing_inputs import RoutingInputs
from .signals import avoided_by, node_signals

# How often the watch page asks for its sources again: one segment duration, so the viewers of
# a node that leaves are moved within one segment (the page also moves at once on an error).
SOURCES_REFRESH_S = 2.0
SESSION_CALLS_PER_MINUTE = 120  # per session and route
# Polls of the sources are counted up to here: reconciliation asks only whether a session ever
# played (a page polls every 2 s), and a write per poll forever would buy nothing more.
SOURCES_POLLS_COUNTED = 100

log = logging.getLogger("streamr.viewers")


async def throttle_sessions(ctx: AppContext, client: str) -> None:
    limit = ctx.settings.viewer_sessions_per_minute
    if await ctx.attempts.hit(f"viewer-session:{client}", 60) > limit:
        raise TooManyRequests(
            f"More than {limit} viewer sessions a minute from this address; wait a minute. "
            "A player needs one session per watch, not one per request.",
            headers={"Retry-After": "60"},
        )


async def throttle_session_calls(ctx: AppContext, session_id: str, route: str) -> None:
    """A page asks for its sources every 2 s and sends receipts every 5 s: far below this."""
    limit = SESSION_CALLS_PER_MINUTE
    if await ctx.attempts.hit(f"viewer-{route}:{session_id}", 60) > limit:
        raise TooManyRequests(
            f"More than {limit} {route} requests a minute for this viewer session; wait a "
            "minute. The watch page needs one every few seconds.",
            headers={"Retry-After": "60"},
        )


async def open_session(
    ctx: AppContext,
    session: AsyncSession,
    stream: Stream,
    *,
    client_network: str | None = None,
    is_probe: bool = False,
) -> ViewerSession:
    """A new session and its sources. The prober opens its sessions here too (``is_probe``):
    the token and the answer are exactly a viewer's, only the row knows."""
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
    # A new session has no history: routed before the row is written, which keeps SQLite's
    # write lock short.
    sources = await _ordered_sources(ctx, session, stream, SessionView())
    ctx.routing_inputs.sent(stream.id, sources[0].node_id)
    row = ViewerSessionRow(
        stream_id=stream.id,
        expires_at=expires_at,
        node_id=sources[0].node_id,
        client_network=client_network,
        is_probe=is_probe,
    )
    session.add(row)
    await session.commit()
    claims = SessionClaims(
        session_id=row.id,
        stream=stream.name,
        expires_at=int(expires_at.timestamp()),
        key_id=ctx.signer.key_id,
    )
    if not is_probe:  # the prober's sessions stay out of the logs nodes' owners might see
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


async def _ordered_sources(
    ctx: AppContext, session: AsyncSession, stream: Stream, view: SessionView
) -> list[Source]:
    async def gather() -> RoutingInputs:
        # A session of its own: the gathering may serve other requests after this one ends.
        async with ctx.sessions() as own:
            return RoutingInputs(
                candidates=await relay_candidates(own, ctx.presence, stream.id),
                signals=await node_signals(
                    own, stream.id, utcnow(), ctx.settings.viewer_flag_s, trust_params(ctx.settings)
                ),
            )

    inputs = await ctx.routing_inputs.get(stream.id, gather)
    return order_sources(
        inputs.candidates, ctx.settings.origin_url, signals=inputs.signals, session=view
    )


async def session_sources(
    ctx: AppContext, session: AsyncSession, claims: SessionClaims
) -> SessionSources:
    row = await session.get(ViewerSessionRow, claims.session_id)
    stream = await session.get(Stream, row.stream_id) if row is not None else None
    if row is None or stream is None:
        raise NotFound(
            "This viewer session no longer exists (its stream was deleted, or it expired long "
            "ago); open a new session with POST /api/v1/streams/{name}/sessions."
        )
    view = SessionView(
        sticky_node_id=row.node_id, avoid=await avoided_by(session, row.id, utcnow())
    )
    sources = await _ordered_sources(ctx, session, stream, view)
    values: dict[str, object] = {}
    if sources[0].node_id != row.node_id:  # the node the session sticks to from now on
        values["node_id"] = sources[0].node_id
        ctx.routing_inputs.sent(stream.id, sources[0].node_id)
    if row.sources_polls < SOURCES_POLLS_COUNTED:
        values["sources_polls"] = ViewerSessionRow.sources_polls + 1
    if values:
        await session.execute(
            update(ViewerSessionRow)
            .where(ViewerSessionRow.id == row.id)
            .values(values)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
    return SessionSources(
        session_id=row.id,
        stream=stream.name,
        status=stream.status,
        on_air=on_air(stream.status),
        refresh_s=SOURCES_REFRESH_S,
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
