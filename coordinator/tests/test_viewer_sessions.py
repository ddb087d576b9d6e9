"""Viewer sessions: a signed token anyone can verify with the published key, and the sources a
viewer is sent to — the best reachable nodes with room, then the origin."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from streamr_coordinator.main import create_app
from streamr_coordinator.nodes.relays import RelayCandidate
from streamr_coordinator.viewers.routing import MAX_NODE_SOURCES, order_sources
from streamr_protocol.attestation import public_key_from
from streamr_protocol.viewer_sessions import SessionTokenError, decode_session_token

from .conftest import Api, assert_error, fresh_rate_window, make_settings

ORIGIN = "http://origin.example:8080"


def published_keys(api: Api) -> dict:
    key = api.client.get("/api/v1/attestation/key").json()
    return {key["key_id"]: public_key_from(key["public_key"])}


def live_stream(api: Api, status: str = "LIVE") -> tuple:
    owner = api.register()
    name, _ = api.create_stream(owner)
    api.set_status(owner, name, status)
    return owner, name


@pytest.mark.parametrize("status", ["LIVE", "TESTING"])
def test_session_token_verifies_with_the_published_key(api, status):
    _, name = live_stream(api, status)
    before = time.time()
    session = api.open_session(name)
    assert session["stream"] == name
    assert session["playlist_path"] == f"/hls/{name}/index.m3u8"
    claims = decode_session_token(session["token"], published_keys(api), stream=name)
    assert claims.session_id == session["session_id"] and claims.stream == name
    expires = datetime.fromisoformat(session["expires_at"]).timestamp()
    assert claims.expires_at == expires
    ttl = api.client.app.state.ctx.settings.viewer_session_ttl_s
    assert before + ttl - 2 <= expires <= time.time() + ttl


def test_a_token_is_for_one_stream_and_cannot_be_altered(api):
    _, name = live_stream(api)
    token = api.open_session(name)["token"]
    keys = published_keys(api)
    with pytest.raises(SessionTokenError, match="another stream"):
        decode_session_token(token, keys, stream="some-other-stream")
    payload, signature = token.split(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature
    with pytest.raises(SessionTokenError):
        decode_session_token(forged, keys, stream=name)
    with pytest.raises(SessionTokenError, match="expired"):
        decode_session_token(token, keys, now=time.time() + 7 * 86_400)


def test_each_watch_gets_its_own_session(api):
    _, name = live_stream(api)
    first, second = api.open_session(name), api.open_session(name)
    assert first["session_id"] != second["session_id"]


@pytest.mark.parametrize("status", ["READY", "OFFLINE", "ARCHIVED"])
def test_no_session_for_a_stream_that_is_not_on_air(api, status):
    owner = api.register()
    name, _ = api.create_stream(owner)
    if status == "OFFLINE":
        api.set_status(owner, name, "LIVE")
    if status != "READY":
        api.set_status(owner, name, status)
    response = api.client.post(f"/api/v1/streams/{name}/sessions")
    error = assert_error(response, 409)
    assert status in error["message"] and "LIVE or TESTING" in error["message"]
    assert error["details"] == {"status": status}


def test_unknown_stream_is_404(api):
    assert_error(api.client.post("/api/v1/streams/no-such-stream-here/sessions"), 404)


def test_without_nodes_the_origin_is_the_only_source(api):
    _, name = live_stream(api)
    origin = api.client.app.state.ctx.settings.origin_url
    assert api.open_session(name)["sources"] == [
        {"kind": "origin", "base_url": origin, "node_id": None, "name": None}
    ]


def test_sources_are_reachable_nodes_with_room_by_spare_capacity(api, nodes_host):
    owner, name = live_stream(api)
    friend = api.register("friend")
    code = api.invite(owner, name, max_uses=10)
    roomy, busy, full, unchecked, unreachable, silent = (
        api.register_node(friend, code) for _ in range(6)
    )
    api.relay(roomy, nodes_host, egress_bps=1_000_000, egress_cap_bps=50_000_000)
    api.relay(busy, nodes_host, egress_bps=40_000_000, egress_cap_bps=50_000_000)
    api.relay(full, nodes_host, egress_bps=50_000_000, egress_cap_bps=50_000_000)
    api.heartbeat(unchecked, public_url=nodes_host.node_url(unchecked.id))
    api.heartbeat(unreachable, public_url=nodes_host.node_url(unreachable.id, "other"))
    assert api.check_reachability(unreachable)["status"] == "wrong_node"
    api.relay(silent, nodes_host)
    # ``silent`` then moves to an address nobody checked: it is left out until checked again.
    api.heartbeat(silent, public_url=nodes_host.node_url(silent.id, "elsewhere"))

    sources = api.open_session(name)["sources"]
    assert [s["node_id"] for s in sources] == [roomy.id, busy.id, None]
    assert sources[0] == {
        "kind": "node",
        "base_url": nodes_host.node_url(roomy.id),
        "node_id": roomy.id,
        "name": "test node",
    }
    assert sources[-1]["kind"] == "origin"


def test_a_node_that_leaves_is_no_longer_a_source(api, nodes_host):
    owner, name = live_stream(api)
    friend = api.register("friend")
    node = api.register_node(friend, api.invite(owner, name))
    api.relay(node, nodes_host)
    assert [s["node_id"] for s in api.open_session(name)["sources"]] == [node.id, None]
    assert api.client.delete(f"/api/v1/nodes/{node.id}", headers=node.headers).status_code == 204
    assert [s["node_id"] for s in api.open_session(name)["sources"]] == [None]


def test_sessions_are_rate_limited_per_address(database_url, tmp_path):
    settings = make_settings(tmp_path, database_url, viewer_sessions_per_minute=3)
    with TestClient(create_app(settings)) as client:
        api = Api(client)
        _, name = live_stream(api)
        fresh_rate_window()
        for _ in range(3):
            api.open_session(name)
        refused = client.post(f"/api/v1/streams/{name}/sessions")
        assert "viewer sessions a minute" in assert_error(refused, 429)["message"]
        assert refused.headers["retry-after"] == "60"
        other = TestClient(client.app, client=("203.0.113.9", 50_000))
        other.portal = client.portal  # the same event loop, which the database pool lives on
        assert other.post(f"/api/v1/streams/{name}/sessions").status_code == 201


# --- The ordering itself: a pure function ----------------------------------------------------


def candidate(node_id: str, egress: int, cap: int | None) -> RelayCandidate:
    return RelayCandidate(
        node_id=node_id,
        base_url=f"http://{node_id}.example",
        connections=0,
        egress_bps=egress,
        egress_cap_bps=cap,
    )


def test_order_sources_ranks_by_spare_capacity_and_keeps_the_origin_last():
    ordered = order_sources(
        [
            candidate("a", 10, 100),  # 90 spare
            candidate("b", 0, 50),  # 50 spare
            candidate("c", 100, 100),  # full
            candidate("d", 5, None),  # no cap: after the known ones, least loaded first
            candidate("e", 1, None),
            candidate("f", 0, 200),  # 200 spare
        ],
        ORIGIN,
    )
    assert [s.node_id for s in ordered] == ["f", "a", "b", "e", "d", None]
    assert ordered[-1].kind == "origin" and ordered[-1].base_url == ORIGIN


def test_order_sources_caps_the_number_of_nodes():
    many = [candidate(f"n{i}", i, 1000) for i in range(12)]
    ordered = order_sources(many, ORIGIN)
    assert len(ordered) == MAX_NODE_SOURCES + 1
    assert [s.node_id for s in ordered[:-1]] == [f"n{i}" for i in range(MAX_NODE_SOURCES)]
    assert order_sources([], ORIGIN)[0].kind == "origin"
