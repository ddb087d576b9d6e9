"""Where a viewer is sent: an ordered list of sources, the best nodes first, the origin last.

Pure: it sees the candidates' reported load and nothing else, so it can be tested exhaustively
and later run in the simulator. Trust, measured latency and stickiness will join spare capacity
here as the verification issues land.
"""

from __future__ import annotations

from collections.abc import Iterable

from streamr_protocol.viewer_sessions import Source

from ..nodes.relays import RelayCandidate

MAX_NODE_SOURCES = 5


def has_room(node: RelayCandidate) -> bool:
    """Below its configured egress cap; a node that set no cap is taken at its word."""
    return node.egress_cap_bps is None or node.egress_bps < node.egress_cap_bps


def _rank(node: RelayCandidate) -> tuple[bool, int, int, str]:
    # Most spare bit/s first. A node without a cap has unknown room: after those with known
    # room, the least loaded first. The id breaks ties, so equal nodes keep a stable order.
    spare = (node.egress_cap_bps or 0) - node.egress_bps
    return (node.egress_cap_bps is None, -spare, node.egress_bps, node.node_id)


def order_sources(
    candidates: Iterable[RelayCandidate], origin_url: str, limit: int = MAX_NODE_SOURCES
) -> list[Source]:
    """Up to ``limit`` nodes with room, by spare capacity, then the origin."""
    nodes = sorted((c for c in candidates if has_room(c)), key=_rank)[:limit]
    return [
        *(Source(kind="node", base_url=n.base_url, node_id=n.node_id) for n in nodes),
        Source(kind="origin", base_url=origin_url),
    ]
