"""Where a viewer is sent: an ordered list of sources, the best nodes first, the origin last.

Pure: it sees the candidates (present, reachable nodes with their reported load), what
viewers' receipts say about them (``NodeSignals``) and what this session went through
(``SessionView``), and nothing else, so it can be tested exhaustively and run in the simulator.

The rules, in order:

1. Never a node that is full (egress at or over its cap), flagged (a probe, or viewers of
   several sessions, got a segment from it that did not match its signature, or several viewers
   could not get segments from it), penalised (trust weight 0), or one this session itself
   failed with lately.
2. The node the session was sent to before comes first while it stays eligible: a viewer is
   not moved for a slightly better score (stickiness).
3. Then nodes with a known cap, by score = spare bit/s x trust x latency weight; then nodes
   without a cap (unknown room), by trust x latency weight / (1 + egress), so the least loaded
   come first. The node id breaks ties, so equal nodes keep a stable order.
4. At most ``limit`` nodes, then the origin, always last and always present.

Latency weight is ``LATENCY_REFERENCE_MS / (LATENCY_REFERENCE_MS + ttfb)`` from the mean time
to first byte viewers measured lately; a node nobody measured yet weighs 1 (it gets tried, and
measured). Trust is the routing weight of the node's trust standing (verification/trust.py):
1.0 for a node in good standing, less while it is warned, 0 (out) once it is penalised.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from streamr_protocol.viewer_sessions import Source

from ..nodes.relays import RelayCandidate

MAX_NODE_SOURCES = 5
LATENCY_REFERENCE_MS = 100.0


@dataclass(frozen=True)
class NodeSignals:
    """What viewers' receipts say about one node lately."""

    flagged: bool = False
    latency_ms: float | None = None  # mean time to first byte of recent good deliveries
    trust: float = 1.0  # routing weight of the node's trust standing; 0 = penalised


@dataclass(frozen=True)
class SessionView:
    """What routing knows about the one session it orders sources for."""

    sticky_node_id: str | None = None  # the node it was sent to first last time
    avoid: frozenset[str] = frozenset()  # nodes it failed to get good segments from lately


NO_SIGNALS = NodeSignals()


def has_room(node: RelayCandidate) -> bool:
    """Below its configured egress cap; a node that set no cap is taken at its word."""
    return node.egress_cap_bps is None or node.egress_bps < node.egress_cap_bps


def eligible(node: RelayCandidate, signals: NodeSignals, session: SessionView) -> bool:
    return (
        has_room(node)
        and not signals.flagged
        and signals.trust > 0
        and node.node_id not in session.avoid
    )


def latency_weight(latency_ms: float | None) -> float:
    if latency_ms is None:
        return 1.0
    return LATENCY_REFERENCE_MS / (LATENCY_REFERENCE_MS + max(latency_ms, 0.0))


def score(node: RelayCandidate, signals: NodeSignals) -> float:
    """Higher is better; comparable only among nodes of the same kind (capped or not)."""
    weight = signals.trust * latency_weight(signals.latency_ms)
    if node.egress_cap_bps is None:
        return weight / (1 + node.egress_bps)
    return (node.egress_cap_bps - node.egress_bps) * weight


def _rank(node: RelayCandidate, signals: NodeSignals, sticky: str | None) -> tuple:
    return (
        node.node_id != sticky,
        node.egress_cap_bps is None,
        -score(node, signals),
        node.node_id,
    )


def order_sources(
    candidates: Iterable[RelayCandidate],
    origin_url: str,
    limit: int = MAX_NODE_SOURCES,
    *,
    signals: Mapping[str, NodeSignals] | None = None,
    session: SessionView | None = None,
) -> list[Source]:
    """Up to ``limit`` eligible nodes, best first, then the origin."""
    signals = signals or {}
    session = session or SessionView()
    chosen = sorted(
        (c for c in candidates if eligible(c, signals.get(c.node_id, NO_SIGNALS), session)),
        key=lambda c: _rank(c, signals.get(c.node_id, NO_SIGNALS), session.sticky_node_id),
    )[: max(limit, 0)]
    return [
        *(Source(kind="node", base_url=n.base_url, node_id=n.node_id, name=n.name) for n in chosen),
        Source(kind="origin", base_url=origin_url),
    ]
