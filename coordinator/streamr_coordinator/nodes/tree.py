"""The relay tree: which upstream each node of a stream pulls from.

With fanout k the first k nodes pull from the origin, and every further node from a node of the
tree: node i (i >= k) pulls from node (i - k) // k. That is a k-ary tree with k roots, so the
origin sends k copies however many nodes there are, and no node feeds more than k others. The
order is registration time, so a node keeps its parent while the nodes before it stay; when one
leaves, the nodes after it move up a place and the tree heals at the next assignment refresh.
"""

from __future__ import annotations

from collections.abc import Sequence


def parent_index(position: int, fanout: int) -> int | None:
    """The position of the parent of the node at ``position``; None means the origin."""
    if fanout < 1:
        raise ValueError("fanout must be at least 1")
    if position < fanout:
        return None
    return (position - fanout) // fanout


def choose_parent(node_id: str, ordered: Sequence[str], fanout: int) -> str | None:
    """The id of the node ``node_id`` pulls from, or None for the origin.

    ``ordered`` holds the stream's routable nodes, oldest registration first. A node that is not
    among them (not yet reachable, or just back) is placed after all of them: it may pull from
    the tree, but nobody is sent to pull from it.
    """
    try:
        position = ordered.index(node_id)
    except ValueError:
        position = len(ordered)
    parent = parent_index(position, fanout)
    return None if parent is None else ordered[parent]
