"""Node operations: register by invite, heartbeat, describe, reachability, deregister."""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from streamr_protocol.nodes import (
    Heartbeat,
    HeartbeatAck,
    NodeCredentials,
    NodeRegistration,
    Reachability,
    ReachabilityCheck,
)

from ..accounts.models import Account, Role
from ..context import AppContext
from ..credentials import NODE_TOKEN_PREFIX, new_secret, secret_hash
from ..database import utcnow
from ..errors import Forbidden, NotFound, TooManyRequests, Unauthorized
from ..invites.service import redeem
from ..streams.models import Stream
from ..streams.service import may_manage
from .auth import NodeIdentity
from .models import Node
from .presence import NodePresence
from .reachability import Verdict, advice, probe
from .schemas import NodeLoad, NodeOut

log = logging.getLogger("streamr.nodes")


async def register_node(
    ctx: AppContext, session: AsyncSession, owner: Account, body: NodeRegistration
) -> NodeCredentials:
    invite = await redeem(session, body.invite_code)
    stream = await session.get(Stream, invite.stream_id)
    if stream is None:  # the stream was deleted between the two reads
        raise NotFound("The stream this invite was for no longer exists.")
    token = new_secret(NODE_TOKEN_PREFIX)
    node = Node(
        stream_id=stream.id,
        owner_id=owner.id,
        invite_id=invite.id,
        name=body.name,
        token_hash=secret_hash(token),
        public_url=str(body.public_url) if body.public_url else None,
        version=body.version,
    )
    session.add(node)
    await session.commit()
    log.info(
        "node registered",
        extra={"node_id": node.id, "stream": stream.name, "account_id": owner.id},
    )
    return NodeCredentials(
        node_id=node.id,
        node_token=token,
        stream=stream.name,
        heartbeat_interval_s=ctx.settings.heartbeat_interval_s,
        presence_ttl_s=ctx.settings.presence_ttl_s,
    )


async def heartbeat(ctx: AppContext, identity: NodeIdentity, beat: Heartbeat) -> HeartbeatAck:
    """Refresh the node's presence. No database write: see nodes/last_seen.py."""
    now = utcnow()
    public_url = str(beat.public_url) if beat.public_url else None
    await ctx.presence.beat(
        NodePresence(
            node_id=identity.node_id,
            stream_id=identity.stream_id,
            connections=beat.connections,
            egress_bps=beat.egress_bps,
            egress_cap_bps=beat.egress_cap_bps,
            version=beat.version,
            public_url=public_url,
            last_seen=now,
        ),
        ctx.settings.presence_ttl_s,
    )
    ctx.last_seen.seen(identity.node_id, now, public_url, beat.version)
    return HeartbeatAck(
        node_id=identity.node_id,
        received_at=now,
        next_heartbeat_s=ctx.settings.heartbeat_interval_s,
        presence_ttl_s=ctx.settings.presence_ttl_s,
    )


async def get_node(session: AsyncSession, node_id: str) -> Node:
    node = await session.get(Node, node_id[:64])
    if node is None or node.deregistered_at is not None:
        raise NotFound(f"No registered node has id {node_id[:64]!r}.")
    return node


def may_see_node(node: Node, stream: Stream, account: Account | None) -> bool:
    return account is not None and (account.id == node.owner_id or may_manage(stream, account))


async def visible_node(
    session: AsyncSession,
    node_id: str,
    caller: NodeIdentity | None,
    account: Account | None,
    what: str,
) -> tuple[Node, Stream]:
    """The node and its stream, for the node itself (its token), its owner, the stream's owner
    or an admin; 401 without either credential, 403 for anyone else. ``what`` names what the
    caller wanted to see, for the messages ("a node's usage")."""
    if caller is None and account is None:
        raise Unauthorized(f"Log in, or use the node's own token, to see {what}.")
    node = await get_node(session, node_id)
    stream = await session.get(Stream, node.stream_id)
    if stream is None:
        raise NotFound(f"No registered node has id {node_id[:64]!r}.")
    if not (
        (caller is not None and caller.node_id == node.id) or may_see_node(node, stream, account)
    ):
        raise Forbidden("Only the node, its owner, the stream's owner or an admin may see this.")
    return node, stream


async def describe(
    ctx: AppContext, nodes: list[Node], stream_names: dict[str, str]
) -> list[NodeOut]:
    live = await ctx.presence.get_many([n.id for n in nodes])
    out = []
    for node in nodes:
        presence = live.get(node.id)
        out.append(
            NodeOut(
                id=node.id,
                stream=stream_names[node.stream_id],
                name=node.name,
                owner_id=node.owner_id,
                public_url=(
                    presence.public_url if presence and presence.public_url else node.public_url
                ),
                version=presence.version if presence else node.version,
                registered_at=node.registered_at,
                last_seen_at=presence.last_seen if presence else node.last_seen_at,
                online=presence is not None,
                load=NodeLoad(
                    connections=presence.connections,
                    egress_bps=presence.egress_bps,
                    egress_cap_bps=presence.egress_cap_bps,
                    last_heartbeat_at=presence.last_seen,
                )
                if presence
                else None,
                reachable=node.reachable,
                reachability_status=node.reachability_status,
                reachability_checked_at=node.reachability_checked_at,
            )
        )
    return out


async def stream_nodes(session: AsyncSession, stream: Stream) -> list[Node]:
    rows = await session.scalars(
        select(Node)
        .where(Node.stream_id == stream.id, Node.deregistered_at.is_(None))
        .order_by(Node.registered_at)
    )
    return list(rows)


async def deregister(ctx: AppContext, session: AsyncSession, node: Node) -> None:
    await session.execute(
        update(Node)
        .where(Node.id == node.id)
        .values(deregistered_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    await ctx.node_tokens.forget_node(node.id)
    await ctx.presence.forget(node.id, node.stream_id)
    log.info("node deregistered", extra={"node_id": node.id})


def ensure_may_deregister(
    node: Node, stream: Stream, account: Account | None, identity: NodeIdentity | None
) -> None:
    if identity is not None and identity.node_id == node.id:
        return
    if account is not None and (
        account.id == node.owner_id or account.role == Role.ADMIN or account.id == stream.owner_id
    ):
        return
    raise Forbidden("Only the node itself, its owner, the stream's owner or an admin may do this.")


# Each check makes the coordinator connect somewhere; a node needs one now and then, not a stream.
REACHABILITY_CHECKS_PER_MINUTE = 10


async def check_reachability(
    ctx: AppContext, session: AsyncSession, identity: NodeIdentity, body: ReachabilityCheck
) -> Reachability:
    """Try the node's public URL from outside and keep the verdict on the node.

    A URL in the body is checked and becomes the node's public URL; otherwise the one from its
    heartbeats (or registration) is checked.
    """
    node_id = identity.node_id
    if await ctx.attempts.hit(f"reachability:{node_id}", 60) > REACHABILITY_CHECKS_PER_MINUTE:
        raise TooManyRequests(
            f"At most {REACHABILITY_CHECKS_PER_MINUTE} reachability checks a minute per node; "
            "wait a minute, and change something (router, firewall, URL) before checking again.",
            headers={"Retry-After": "60"},
        )
    node = await get_node(session, node_id)
    url = str(body.public_url) if body.public_url is not None else None
    if url is None:
        presence = (await ctx.presence.get_many([node_id])).get(node_id)
        url = presence.public_url if presence and presence.public_url else node.public_url
    # No database connection is held while the coordinator waits on the node's network.
    await session.rollback()
    if url is None:
        verdict = Verdict("no_public_url", "the node has not said where viewers can reach it")
    else:
        verdict = await probe(
            url,
            node_id,
            timeout_s=ctx.settings.reachability_timeout_s,
            allow_private=ctx.settings.allow_private_node_urls,
        )
    checked_at = utcnow()
    values: dict[str, object] = {
        "reachable": verdict.reachable,
        "reachability_status": verdict.status,
        "reachability_checked_at": checked_at,
        "reachability_url": url,
    }
    if body.public_url is not None:
        values["public_url"] = url
    await session.execute(
        update(Node)
        .where(Node.id == node_id, Node.deregistered_at.is_(None))
        .values(values)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    log.info(
        "reachability checked",
        extra={"node_id": node_id, "status": verdict.status, "detail": verdict.detail},
    )
    return Reachability(
        reachable=verdict.reachable,
        status=verdict.status,
        checked_url=url,
        detail=verdict.detail[:1].upper() + verdict.detail[1:] + ".",
        advice=advice(verdict, url),
        checked_at=checked_at,
    )
