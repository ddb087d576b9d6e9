"""Streams over the API: create, list, detail, update, delete, keys, lifecycle."""

from __future__ import annotations

import pytest

from streamr_coordinator.streams.lifecycle import TRANSITIONS, StreamStatus


def test_create_shows_key_once_and_obs_settings(api):
    owner = api.register()
    response = api.client.post(
        "/api/v1/streams",
        json={"name": api.unique_name(), "title": "My show", "description": "hello"},
        headers=owner.headers,
    )
    assert response.status_code == 201
    body = response.json()
    key = body["stream_key"]
    assert key.startswith("sk_") and len(key) > 40
    assert body["obs"] == {"server": "rtmp://127.0.0.1:1935/live", "stream_key": key}
    assert body["stream"]["status"] == "READY"
    assert body["stream"]["state_entered_at"]["READY"] is not None
    assert body["stream"]["allowed_transitions"] == ["TESTING", "LIVE", "ARCHIVED"]

    name = body["stream"]["name"]
    for headers in ({}, owner.headers):
        detail = api.client.get(f"/api/v1/streams/{name}", headers=headers)
        assert detail.status_code == 200
        assert key not in detail.text
    listing = api.client.get("/api/v1/streams", params={"limit": 200})
    assert name in [s["name"] for s in listing.json()["streams"]]
    assert key not in listing.text


def test_public_detail_hides_owner_fields(api):
    owner = api.register()
    name, _ = api.create_stream(owner)
    public = api.client.get(f"/api/v1/streams/{name}").json()
    assert "owner_id" not in public and "id" not in public
    assert public["nodes"] == {"registered": 0, "online": 0}
    mine = api.client.get(f"/api/v1/streams/{name}", headers=owner.headers).json()
    assert mine["owner_id"] == owner.id


def test_duplicate_name_is_409(api):
    owner = api.register()
    name, _ = api.create_stream(owner)
    again = api.client.post(
        "/api/v1/streams", json={"name": name, "title": "x"}, headers=owner.headers
    )
    assert again.status_code == 409
    assert "taken" in again.json()["error"]["message"]


def test_update_changes_only_given_fields(api):
    owner = api.register()
    name, _ = api.create_stream(owner, description="before")
    response = api.client.patch(
        f"/api/v1/streams/{name}", json={"title": "After"}, headers=owner.headers
    )
    assert response.status_code == 200
    assert response.json()["title"] == "After"
    assert response.json()["description"] == "before"


def test_rotate_key_returns_a_new_key(api):
    owner = api.register()
    name, old = api.create_stream(owner)
    response = api.client.post(f"/api/v1/streams/{name}/rotate-key", headers=owner.headers)
    assert response.status_code == 200
    new = response.json()["stream_key"]
    assert new != old and new.startswith("sk_")


def test_invalid_transition_is_409_listing_allowed(api):
    owner = api.register()
    name, _ = api.create_stream(owner)
    response = api.client.post(
        f"/api/v1/streams/{name}/status", json={"status": "STALE"}, headers=owner.headers
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["details"]["allowed"] == ["TESTING", "LIVE", "ARCHIVED"]
    assert "TESTING, LIVE, ARCHIVED" in error["message"]


def test_full_lifecycle_records_timestamps_and_history(api):
    owner = api.register()
    name, _ = api.create_stream(owner)
    path = ["TESTING", "LIVE", "OFFLINE", "STALE", "ARCHIVED", "READY"]
    for state in path:
        response = api.client.post(
            f"/api/v1/streams/{name}/status", json={"status": state}, headers=owner.headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == state
        assert response.json()["state_entered_at"][state] is not None
    history = api.client.get(f"/api/v1/streams/{name}/history", headers=owner.headers).json()
    assert [h["to_status"] for h in reversed(history)] == ["READY", *path]
    assert all(h["actor"] == f"account:{owner.id}" for h in history)


@pytest.mark.parametrize("current", list(StreamStatus))
def test_transition_table_is_total(current):
    assert current in TRANSITIONS
    assert current not in TRANSITIONS[current], "a state never transitions to itself"


def test_delete_removes_invites_nodes_and_history(api):
    owner, friend = api.register(), api.register("friend")
    name, _ = api.create_stream(owner)
    node = api.register_node(friend, api.invite(owner, name))
    api.client.post(
        f"/api/v1/streams/{name}/status", json={"status": "ARCHIVED"}, headers=owner.headers
    )
    response = api.client.delete(f"/api/v1/streams/{name}", headers=owner.headers)
    assert response.status_code == 204
    assert api.client.get(f"/api/v1/streams/{name}").status_code == 404
    beat = api.client.post(
        f"/api/v1/nodes/{node.id}/heartbeat", json=api.heartbeat_body(), headers=node.headers
    )
    assert beat.status_code == 401
    assert api.client.delete(f"/api/v1/streams/{name}", headers=owner.headers).status_code == 404


def test_live_stream_cannot_be_deleted(api):
    owner = api.register()
    name, _ = api.create_stream(owner)
    api.client.post(
        f"/api/v1/streams/{name}/status", json={"status": "LIVE"}, headers=owner.headers
    )
    response = api.client.delete(f"/api/v1/streams/{name}", headers=owner.headers)
    assert response.status_code == 409
    assert "stop publishing" in response.json()["error"]["message"]


def test_list_filters_by_status_and_hides_archived(api):
    owner = api.register()
    live, _ = api.create_stream(owner)
    archived, _ = api.create_stream(owner)
    api.client.post(
        f"/api/v1/streams/{live}/status", json={"status": "LIVE"}, headers=owner.headers
    )
    api.client.post(
        f"/api/v1/streams/{archived}/status", json={"status": "ARCHIVED"}, headers=owner.headers
    )
    default = [s["name"] for s in api.client.get("/api/v1/streams?limit=200").json()["streams"]]
    assert archived not in default
    only_live = api.client.get("/api/v1/streams", params={"status": "LIVE", "limit": 200}).json()
    assert live in [s["name"] for s in only_live["streams"]]
    assert {s["status"] for s in only_live["streams"]} == {"LIVE"}
    only_archived = api.client.get("/api/v1/streams", params={"status": "ARCHIVED"}).json()
    assert archived in [s["name"] for s in only_archived["streams"]]
