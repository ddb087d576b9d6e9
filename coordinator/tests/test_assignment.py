"""Node assignments: what a node relays and from where, in a k-ary tree with k roots."""

from __future__ import annotations

import pytest

from streamr_coordinator.nodes.tree import choose_parent, parent_index

from .conftest import Api, Node, assert_error

IDS = [f"n{i}" for i in range(30)]


# --- The tree: a pure function ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "fanout", "parent"),
    [
        (0, 4, None),
        (3, 4, None),
        (4, 4, 0),
        (7, 4, 0),
        (8, 4, 1),
        (11, 4, 1),
        (19, 4, 3),
        (20, 4, 4),
        (0, 1, None),
        (1, 1, 0),
        (5, 1, 4),
        (2, 2, 0),
        (5, 2, 1),
        (6, 2, 2),
    ],
)
def test_parent_positions(position, fanout, parent):
    assert parent_index(position, fanout) == parent


@pytest.mark.parametrize("fanout", [1, 2, 3, 4, 7])
def test_the_origin_feeds_k_nodes_and_no_node_feeds_more_than_k(fanout):
    parents = [choose_parent(node, IDS, fanout) for node in IDS]
    assert parents.count(None) == fanout
    for node in IDS:
        assert parents.count(node) <= fanout
        assert node not in parents[: IDS.index(node) + 1], "a parent comes before its children"


def test_fanout_one_makes_a_chain():
    assert [choose_parent(n, ["a", "b", "c"], 1) for n in "abc"] == [None, "a", "b"]


def test_a_node_outside_the_list_is_placed_after_it():
    ordered = ["a", "b", "c", "d", "e", "f", "g", "h"]
    assert choose_parent("new", ordered, 4) == "b"  # position 8
    assert choose_parent("new", ordered[:5], 4) == "a"  # position 5
    assert choose_parent("new", [], 4) is None
    assert choose_parent("new", ["a"], 1) == "a"


def test_a_departed_parent_is_replaced():
    ordered = ["a", "b", "c"]
    assert choose_parent("c", ordered, 1) == "b"
    assert choose_parent("c", ["a", "c"], 1) == "a", "b left: c moves up and pulls from a"
    assert choose_parent("c", ["c"], 1) is None


def test_fanout_must_be_positive():
    with pytest.raises(ValueError, match="fanout"):
        parent_index(3, 0)


# --- Over the API ----------------------------------------------------------------------------


def assignment(api: Api, node: Node) -> dict:
    response = api.client.get(f"/api/v1/nodes/{node.id}/assignment", headers=node.headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_assignment_of_a_lone_node(api):
    owner, friend = api.register(), api.register("friend")
    name, _ = api.create_stream(owner)
    node = api.register_node(friend, api.invite(owner, name))
    settings = api.client.app.state.ctx.settings
    origin = {"kind": "origin", "base_url": settings.origin_url, "node_id": None}

    ready = assignment(api, node)
    assert ready["node_id"] == node.id and ready["stream"] == name
    assert ready["stream_state"] == "READY" and ready["live"] is False
    assert ready["playlist_path"] == f"/hls/{name}/index.m3u8"
    assert ready["upstream"] == origin and ready["origin"] == origin
    assert ready["attestation_key"] == api.client.get("/api/v1/attestation/key").json()
    assert ready["refresh_s"] == settings.assignment_refresh_s
    assert ready["report_interval_s"] == settings.usage_report_interval_s

    api.set_status(owner, name, "TESTING")
    testing = assignment(api, node)
    assert testing["stream_state"] == "TESTING" and testing["live"] is True


def test_assignments_build_the_tree(api, nodes_host, monkeypatch):
    monkeypatch.setattr(api.client.app.state.ctx.settings, "origin_fanout", 1)
    owner, friend = api.register(), api.register("friend")
    name, _ = api.create_stream(owner)
    api.set_status(owner, name, "LIVE")
    code = api.invite(owner, name, max_uses=10)
    first, second, third = (api.register_node(friend, code) for _ in range(3))
    for node in (first, second, third):
        api.relay(node, nodes_host)

    def upstreams() -> list[str | None]:
        return [assignment(api, n)["upstream"]["node_id"] for n in (first, second, third)]

    assert upstreams() == [None, first.id, second.id], "fanout 1: a chain"
    parent = assignment(api, second)["upstream"]
    assert parent["kind"] == "node" and parent["base_url"] == nodes_host.node_url(first.id)
    assert assignment(api, second)["origin"]["kind"] == "origin"

    # A newcomer that is not reachable yet still pulls from the tree, at its end.
    late = api.register_node(friend, code)
    assert assignment(api, late)["upstream"]["node_id"] == third.id

    monkeypatch.setattr(api.client.app.state.ctx.settings, "origin_fanout", 2)
    assert upstreams() == [None, None, first.id]

    monkeypatch.setattr(api.client.app.state.ctx.settings, "origin_fanout", 1)
    assert api.client.delete(f"/api/v1/nodes/{second.id}", headers=second.headers).status_code
    assert [assignment(api, n)["upstream"]["node_id"] for n in (first, third)] == [None, first.id]


def test_only_the_node_itself_gets_its_assignment(api):
    owner, friend = api.register(), api.register("friend")
    name, _ = api.create_stream(owner)
    code = api.invite(owner, name, max_uses=2)
    node, other = api.register_node(friend, code), api.register_node(friend, code)
    path = f"/api/v1/nodes/{node.id}/assignment"
    assert_error(api.client.get(path), 401)
    assert (
        "different node"
        in assert_error(api.client.get(path, headers=other.headers), 403)["message"]
    )
    refused = assert_error(api.client.get(path, headers=friend.headers), 403)
    assert "node token" in refused["message"]
