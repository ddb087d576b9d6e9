"""Which of a stream's nodes may relay right now: online (present) and reachable from outside.

Viewer routing (``viewers/routing.py``) and the relay tree (``nodes/tree.py``) both start from
this list; they are pure functions over it, so they can be tested and simulated without a server.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import Node
from .presence import NodePresence, PresenceStore


@dataclass(frozen=True)
class RelayCandidate:
    node_id: str
    base_url: str  # prefix of the node's HLS paths, without a trailing slash
    connections: int
    egress_bps: int
    egress_cap_bps: int | None
    name: str | None = None  # the friend's label for the node, shown to viewers


def base_url(public_url: str) -> str:
    return public_url.rstrip("/")


def relay_url(node: Node, presence: NodePresence | None) -> str | None:
    """The URL others may use for ``node``, or None when it must not be routed to.

    The node must be present, and its last reachability check must have passed for the very URL
    it reports now: a node that moved (a new address in its heartbeats) is left out until it is
    checked again, rather than sending viewers to an address nobody tried.
    """
    if presence is None or node.reachable is not True or node.reachability_url is None:
        return None
    if presence.public_url is not None and presence.public_url != node.reachability_url:
        return None
    return base_url(node.reachability_url)


async def relay_candidates(
    session: AsyncSession, presence_store: PresenceStore, stream_id: str
) -> list[RelayCandidate]:
    """The stream's routable nodes, oldest registration first (the order the tree is built in)."""
    nodes = list(
        await session.scalars(
            select(Node)
            .where(
                Node.stream_id == stream_id,
                Node.deregistered_at.is_(None),
                Node.reachable.is_(True),
            )
            .order_by(Node.registered_at, Node.id)
        )
    )
    live = await presence_store.get_many([n.id for n in nodes])
    candidates = []
    for node in nodes:
        presence = live.get(node.id)
        url = relay_url(node, presence)
        if url is None or presence is None:
            continue
        candidates.append(
            RelayCandidate(
                node_id=node.id,
                base_url=url,
                connections=presence.connections,
                egress_bps=presence.egress_bps,
                egress_cap_bps=presence.egress_cap_bps,
                name=node.name,
            )
        )
    return candidates
