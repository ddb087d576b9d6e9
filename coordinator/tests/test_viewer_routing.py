"""Viewer routing as a pure function: which nodes a viewer is sent to, in which order.

Every combination of node states is tried for small sets (full, flagged, failed by this
session, sticky, with and without a cap), and a seeded generator checks the same invariants on
thousands of larger ones. No server, no database.
"""

from __future__ import annotations

import itertools
import random

import pytest

from streamr_coordinator.nodes.relays import RelayCandidate
from streamr_coordinator.viewers.routing import (
    MAX_NODE_SOURCES,
    NodeSignals,
    SessionView,
    eligible,
    latency_weight,
    order_sources,
    score,
)

ORIGIN = "http://origin.example:8080"


def node(node_id: str, egress: int = 0, cap: int | None = 100, name: str | None = None):
    return RelayCandidate(
        node_id=node_id,
        base_url=f"http://{node_id}.example",
        connections=0,
        egress_bps=egress,
        egress_cap_bps=cap,
        name=name,
    )


def ids(sources) -> list[str | None]:
    return [s.node_id for s in sources]


# --- The rules, one at a time ------------------------------------------------------------------


def test_full_flagged_and_avoided_nodes_are_never_sources():
    candidates = [
        node("room"),
        node("full", 100, 100),
        node("over", 150, 100),
        node("bad"),
        node("failed"),
    ]
    ordered = order_sources(
        candidates,
        ORIGIN,
        signals={"bad": NodeSignals(flagged=True)},
        session=SessionView(avoid=frozenset({"failed"})),
    )
    assert ids(ordered) == ["room", None]


def test_the_origin_is_last_and_the_only_source_when_no_node_qualifies():
    ordered = order_sources([node("full", 100, 100)], ORIGIN)
    assert len(ordered) == 1
    assert ordered[0].kind == "origin" and ordered[0].base_url == ORIGIN
    assert ordered[0].node_id is None and ordered[0].name is None


def test_the_sticky_node_stays_first_while_it_is_healthy():
    roomy, sticky = node("roomy", 0, 1000), node("sticky", 90, 100)
    view = SessionView(sticky_node_id="sticky")
    assert ids(order_sources([roomy, sticky], ORIGIN, session=view)) == ["sticky", "roomy", None]
    # Without the session's history the roomier node comes first.
    assert ids(order_sources([roomy, sticky], ORIGIN)) == ["roomy", "sticky", None]


@pytest.mark.parametrize(
    ("sticky", "signals", "avoid"),
    [
        (node("sticky", 100, 100), {}, frozenset()),  # full
        (node("sticky"), {"sticky": NodeSignals(flagged=True)}, frozenset()),
        (node("sticky"), {}, frozenset({"sticky"})),  # this session failed with it
    ],
    ids=["full", "flagged", "failed by the session"],
)
def test_a_viewer_leaves_its_node_when_it_is_no_longer_healthy(sticky, signals, avoid):
    view = SessionView(sticky_node_id="sticky", avoid=avoid)
    ordered = order_sources([node("other"), sticky], ORIGIN, signals=signals, session=view)
    assert ids(ordered) == ["other", None]


def test_a_sticky_node_that_left_is_simply_not_there():
    view = SessionView(sticky_node_id="gone")
    assert ids(order_sources([node("a")], ORIGIN, session=view)) == ["a", None]


def test_lower_latency_wins_between_equal_nodes_and_unmeasured_nodes_get_tried():
    a, b, c = node("a"), node("b"), node("c")
    signals = {"a": NodeSignals(latency_ms=300), "b": NodeSignals(latency_ms=20)}
    assert ids(order_sources([a, b, c], ORIGIN, signals=signals)) == ["c", "b", "a", None]


def test_latency_and_capacity_trade_off():
    # Twice the spare capacity does not make up for a node five times slower to answer.
    near, far = node("near", 50, 100), node("far", 0, 100)
    signals = {"near": NodeSignals(latency_ms=10), "far": NodeSignals(latency_ms=400)}
    assert ids(order_sources([near, far], ORIGIN, signals=signals)) == ["near", "far", None]


def test_trust_weighs_in():
    signals = {"a": NodeSignals(trust=0.2), "b": NodeSignals(trust=1.0)}
    assert ids(order_sources([node("a", 0), node("b", 50)], ORIGIN, signals=signals)) == [
        "b",
        "a",
        None,
    ]


def test_nodes_without_a_cap_come_after_those_with_known_room_least_loaded_first():
    ordered = order_sources(
        [node("u-busy", 900, None), node("u-idle", 1, None), node("capped", 99, 100)], ORIGIN
    )
    assert ids(ordered) == ["capped", "u-idle", "u-busy", None]


def test_names_are_passed_on_for_the_page_to_show():
    ordered = order_sources([node("a", name="Bob's box")], ORIGIN)
    assert ordered[0].name == "Bob's box" and ordered[0].base_url == "http://a.example"


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_of_no_nodes_leaves_the_origin(limit):
    assert ids(order_sources([node("a")], ORIGIN, limit)) == [None]


def test_latency_weight():
    assert latency_weight(None) == 1.0
    assert latency_weight(0) == 1.0
    assert latency_weight(-5) == 1.0
    assert latency_weight(100) == pytest.approx(0.5)
    weights = [latency_weight(ms) for ms in (0, 1, 10, 100, 1000, 60_000)]
    assert weights == sorted(weights, reverse=True)


# --- Every combination on small sets -----------------------------------------------------------

STATES = ["room", "full", "flagged", "avoided", "uncapped"]


def _build(states: tuple[str, ...]):
    candidates, signals, avoid = [], {}, set()
    for i, state in enumerate(states):
        node_id = f"n{i}"
        if state == "full":
            candidates.append(node(node_id, 100, 100))
        elif state == "uncapped":
            candidates.append(node(node_id, 10 * i, None))
        else:
            candidates.append(node(node_id, 10 * i, 100))
        if state == "flagged":
            signals[node_id] = NodeSignals(flagged=True)
        if state == "avoided":
            avoid.add(node_id)
    return candidates, signals, frozenset(avoid)


def check_invariants(candidates, signals, view, limit, ordered) -> None:
    by_id = {c.node_id: c for c in candidates}
    good = [c for c in candidates if eligible(c, signals.get(c.node_id, NodeSignals()), view)]
    assert ordered[-1].kind == "origin" and ordered[-1].base_url == ORIGIN
    assert [s.kind for s in ordered[:-1]] == ["node"] * (len(ordered) - 1)
    chosen = ids(ordered[:-1])
    assert len(chosen) == len(set(chosen)) == min(max(limit, 0), len(good))
    assert all(by_id[i] in good for i in chosen), "an ineligible node was chosen"
    sticky = view.sticky_node_id
    if sticky is not None and by_id.get(sticky) in good and limit > 0:
        assert chosen[0] == sticky
    rest = [by_id[i] for i in chosen if i != sticky]
    capped = [c.egress_cap_bps is not None for c in rest]
    assert capped == sorted(capped, reverse=True), "a node without a cap before a capped one"
    for first, second in itertools.pairwise(rest):
        if (first.egress_cap_bps is None) == (second.egress_cap_bps is None):
            s1 = score(first, signals.get(first.node_id, NodeSignals()))
            s2 = score(second, signals.get(second.node_id, NodeSignals()))
            assert s1 > s2 or (s1 == s2 and first.node_id < second.node_id)
    # Whatever was left out scores no better than the last one taken of its kind.
    if len(chosen) == max(limit, 0) and rest:
        left_out = [c for c in good if c.node_id not in chosen]
        last = rest[-1]
        for c in left_out:
            if (c.egress_cap_bps is None) == (last.egress_cap_bps is None):
                assert score(c, signals.get(c.node_id, NodeSignals())) <= score(
                    last, signals.get(last.node_id, NodeSignals())
                )


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4])
def test_every_combination_of_states_stickiness_and_limit(size):
    for states in itertools.product(STATES, repeat=size):
        candidates, signals, avoid = _build(states)
        for sticky in [None, *(c.node_id for c in candidates)]:
            view = SessionView(sticky_node_id=sticky, avoid=avoid)
            for limit in (0, 1, 2, MAX_NODE_SOURCES):
                ordered = order_sources(candidates, ORIGIN, limit, signals=signals, session=view)
                check_invariants(candidates, signals, view, limit, ordered)


def test_random_sets_keep_the_invariants_and_ignore_input_order():
    rng = random.Random(20_261_127)
    for _ in range(2000):
        count = rng.randint(0, 12)
        candidates = [
            node(
                f"n{i:02d}",
                rng.choice([0, 1, 10, 500, 999, 1000, 5000]),
                rng.choice([None, 1000, 1000, 10_000]),
            )
            for i in range(count)
        ]
        signals = {
            c.node_id: NodeSignals(
                flagged=rng.random() < 0.15,
                latency_ms=rng.choice([None, 5.0, 50.0, 400.0]),
                trust=rng.choice([1.0, 1.0, 0.5]),
            )
            for c in candidates
            if rng.random() < 0.7
        }
        avoid = frozenset(c.node_id for c in candidates if rng.random() < 0.1)
        sticky = rng.choice([None, "nowhere", *(c.node_id for c in candidates)])
        view = SessionView(sticky_node_id=sticky, avoid=avoid)
        limit = rng.choice([1, 3, MAX_NODE_SOURCES])
        ordered = order_sources(candidates, ORIGIN, limit, signals=signals, session=view)
        check_invariants(candidates, signals, view, limit, ordered)
        shuffled = candidates[:]
        rng.shuffle(shuffled)
        assert order_sources(shuffled, ORIGIN, limit, signals=signals, session=view) == ordered
