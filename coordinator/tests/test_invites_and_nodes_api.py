"""Invites and friend nodes over the API: redemption limits, heartbeats, presence, leaving."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from streamr_coordinator.main import create_app

from .conftest import Api, make_settings


def test_invite_is_shown_once_and_listed_without_code(api):
    owner = api.register()
    name, _ = api.create_stream(owner)
    created = api.client.post(
        f"/api/v1/streams/{name}/invites",
        json={"label": "for Bob", "max_uses": 2, "expires_in_s": 3600},
        headers=owner.headers,
    )
    assert created.status_code == 201
    body = created.json()
    assert body["code"].startswith("inv_")
    assert body["join_command"].endswith(f"--invite {body['code']}")
    listed = api.client.get(f"/api/v1/streams/{name}/invites", headers=owner.headers)
    assert listed.status_code == 200
    assert body["code"] not in listed.text
    assert listed.json()[0]["state"] == "active"
    assert listed.json()[0]["label"] == "for Bob"


def test_invite_max_uses_is_enforced(api):
    owner, friend = api.register(), api.register("friend")
    name, _ = api.create_stream(owner)
    code = api.invite(owner, name, max_uses=2)
    api.register_node(friend, code)
    api.register_node(friend, code)
    third = api.client.post(
        "/api/v1/nodes/register", json={"invite_code": code}, headers=friend.headers
    )
    assert third.status_code == 410
    assert "used up" in third.json()["error"]["message"]
    listed = api.client.get(f"/api/v1/streams/{name}/invites", headers=owner.headers).json()
    assert listed[0]["uses"] == 2 and listed[0]["state"] == "used_up"


def test_revoked_and_unknown_invites_are_refused(api):
    owner, friend = api.register(), api.register("friend")
    name, _ = api.create_stream(owner)
    code = api.invite(owner, name)
    invite_id = api.client.get(f"/api/v1/streams/{name}/invites", headers=owner.headers).json()[0][
        "id"
    ]
    assert (
        api.client.delete(
            f"/api/v1/streams/{name}/invites/{invite_id}", headers=owner.headers
        ).status_code
        == 204
    )
    revoked = api.client.post(
        "/api/v1/nodes/register", json={"invite_code": code}, headers=friend.headers
    )
    assert revoked.status_code == 410 and "revoked" in revoked.json()["error"]["message"]
    unknown = api.client.post(
        "/api/v1/nodes/register", json={"invite_code": "inv_" + "x" * 24}, headers=friend.headers
    )
    assert unknown.status_code == 404


def test_friend_never_sees_the_stream_key(api):
    owner, friend = api.register(), api.register("friend")
    name, key = api.create_stream(owner)
    code = api.invite(owner, name)
    registered = api.client.post(
        "/api/v1/nodes/register", json={"invite_code": code}, headers=friend.headers
    )
    assert key not in registered.text
    for path in (f"/api/v1/streams/{name}", f"/api/v1/streams/{name}/nodes"):
        assert key not in api.client.get(path, headers=friend.headers).text


def test_heartbeat_makes_the_node_present_with_its_load(api):
    owner, friend = api.register(), api.register("friend")
    name, _ = api.create_stream(owner)
    node = api.register_node(friend, api.invite(owner, name))
    assert node.token.startswith("snt_")

    before = api.client.get(f"/api/v1/streams/{name}/nodes").json()
    assert before == {"stream": name, "registered": 1, "online": 0, "nodes": None}

    beat = api.client.post(
        f"/api/v1/nodes/{node.id}/heartbeat",
        json=api.heartbeat_body(connections=7),
        headers=node.headers,
    )
    assert beat.status_code == 200
    ack = beat.json()
    assert ack["node_id"] == node.id
    assert ack["next_heartbeat_s"] > 0 and ack["presence_ttl_s"] > ack["next_heartbeat_s"]

    public = api.client.get(f"/api/v1/streams/{name}/nodes").json()
    assert public["online"] == 1 and public["nodes"] is None
    detail = api.client.get(f"/api/v1/streams/{name}/nodes", headers=owner.headers).json()
    [seen] = detail["nodes"]
    assert seen["online"] is True
    assert seen["load"]["connections"] == 7
    assert seen["load"]["egress_cap_bps"] == 20_000_000
    assert seen["public_url"] == "http://198.51.100.7:8080/"
    assert node.token not in str(detail)
    own = api.client.get(f"/api/v1/nodes/{node.id}", headers=node.headers)
    assert own.status_code == 200 and own.json()["online"] is True


def test_server_sets_timestamps_not_the_node(api):
    owner, friend = api.register(), api.register("friend")
    name, _ = api.create_stream(owner)
    node = api.register_node(friend, api.invite(owner, name))
    spoofed = api.client.post(
        f"/api/v1/nodes/{node.id}/heartbeat",
        json=api.heartbeat_body(last_seen="2001-01-01T00:00:00Z"),
        headers=node.headers,
    )
    assert spoofed.status_code == 422, "a node cannot send its own timestamps"


def test_heartbeat_for_another_node_is_403(api):
    owner, friend = api.register(), api.register("friend")
    name, _ = api.create_stream(owner)
    code = api.invite(owner, name, max_uses=2)
    first, second = api.register_node(friend, code), api.register_node(friend, code)
    response = api.client.post(
        f"/api/v1/nodes/{second.id}/heartbeat", json=api.heartbeat_body(), headers=first.headers
    )
    assert response.status_code == 403


def test_deregister_revokes_token_and_presence(api):
    owner, friend = api.register(), api.register("friend")
    name, _ = api.create_stream(owner)
    node = api.register_node(friend, api.invite(owner, name))
    api.client.post(
        f"/api/v1/nodes/{node.id}/heartbeat", json=api.heartbeat_body(), headers=node.headers
    )
    assert api.client.delete(f"/api/v1/nodes/{node.id}", headers=node.headers).status_code == 204
    counts = api.client.get(f"/api/v1/streams/{name}/nodes").json()
    assert counts["registered"] == 0 and counts["online"] == 0
    again = api.client.post(
        f"/api/v1/nodes/{node.id}/heartbeat", json=api.heartbeat_body(), headers=node.headers
    )
    assert again.status_code == 401
    assert "join again" in again.json()["error"]["message"]


def test_a_node_can_leave_routing_and_come_back(api):
    owner, friend = api.register(), api.register("friend")
    name, _ = api.create_stream(owner)
    node = api.register_node(friend, api.invite(owner, name))
    api.heartbeat(node)
    assert api.client.get(f"/api/v1/streams/{name}/nodes").json()["online"] == 1
    left = api.client.delete(f"/api/v1/nodes/{node.id}/presence", headers=node.headers)
    assert left.status_code == 204
    counts = api.client.get(f"/api/v1/streams/{name}/nodes").json()
    assert counts["online"] == 0 and counts["registered"] == 1, "still registered"
    api.heartbeat(node)
    assert api.client.get(f"/api/v1/streams/{name}/nodes").json()["online"] == 1


def test_presence_expires_without_heartbeats(tmp_path):
    settings = make_settings(tmp_path, None, presence_ttl_s=0.3, heartbeat_interval_s=0.1)
    with TestClient(create_app(settings)) as client:
        api = Api(client)
        owner, friend = api.register(), api.register("friend")
        name, _ = api.create_stream(owner)
        node = api.register_node(friend, api.invite(owner, name))
        client.post(
            f"/api/v1/nodes/{node.id}/heartbeat", json=api.heartbeat_body(), headers=node.headers
        )
        assert client.get(f"/api/v1/streams/{name}/nodes").json()["online"] == 1
        time.sleep(0.5)
        assert client.get(f"/api/v1/streams/{name}/nodes").json()["online"] == 0
        detail = client.get(f"/api/v1/streams/{name}/nodes", headers=owner.headers).json()
        assert detail["nodes"][0]["online"] is False
        assert detail["nodes"][0]["last_seen_at"] is not None, "the durable copy remains"


def test_presence_is_shared_through_redis(tmp_path, redis_server):
    """Two replicas with one Redis: a heartbeat to one is visible on the other."""
    first_dir = tmp_path / "shared"
    settings = make_settings(first_dir, None, redis_url=redis_server)
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        api = Api(one)
        owner, friend = api.register(), api.register("friend")
        name, _ = api.create_stream(owner)
        node = api.register_node(friend, api.invite(owner, name))
        beat = two.post(
            f"/api/v1/nodes/{node.id}/heartbeat",
            json=api.heartbeat_body(connections=11),
            headers=node.headers,
        )
        assert beat.status_code == 200
        # Replica two writes its beats to Redis behind the request; replica one sees them
        # once flushed (a quarter of a second by default).
        deadline = time.monotonic() + 10
        while True:
            detail = one.get(f"/api/v1/streams/{name}/nodes", headers=owner.headers).json()
            if detail["online"] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert detail["online"] == 1
        assert detail["nodes"][0]["load"]["connections"] == 11
        assert one.get("/health").json()["checks"]["redis"] == "ok"
