"""What a node relays and from where: its stream, its upstream in the relay tree, the origin."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from streamr_protocol.nodes import Assignment, Upstream

from ..context import AppContext
from ..errors import NotFound
from ..streams.lifecycle import on_air
from ..streams.models import Stream
from ..streams.service import playlist_path
from .auth import NodeIdentity
from .relays import relay_candidates
from .tree import choose_parent


async def assignment_for(
    ctx: AppContext, session: AsyncSession, identity: NodeIdentity
) -> Assignment:
    stream = await session.get(Stream, identity.stream_id)
    if stream is None:  # deleted a moment ago; the token stops working with it
        raise NotFound("This node's stream no longer exists.")
    settings = ctx.settings
    origin = Upstream(kind="origin", base_url=settings.origin_url)
    candidates = await relay_candidates(session, ctx.presence, stream.id)
    parent = choose_parent(
        identity.node_id, [c.node_id for c in candidates], settings.origin_fanout
    )
    upstream = origin
    if parent is not None:
        chosen = next(c for c in candidates if c.node_id == parent)
        upstream = Upstream(kind="node", base_url=chosen.base_url, node_id=chosen.node_id)
    return Assignment(
        node_id=identity.node_id,
        stream=stream.name,
        stream_state=stream.status,
        live=on_air(stream.status),
        playlist_path=playlist_path(stream.name),
        upstream=upstream,
        origin=origin,
        attestation_key=ctx.signer.public(),
        refresh_s=settings.assignment_refresh_s,
        report_interval_s=settings.usage_report_interval_s,
    )
