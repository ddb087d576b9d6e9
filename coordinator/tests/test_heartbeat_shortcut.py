"""The heartbeat shortcut (nodes/heartbeats.py) answers well-formed heartbeats as the route would,
and leaves everything else to the route, whose error answers are the API's own."""

from __future__ import annotations

from typing import Any

import pytest

from streamr_coordinator.nodes import heartbeats, routes

from .conftest import assert_error


@pytest.fixture
def route_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bodies the FastAPI route parsed: the shortcut's own answers never get there."""
    calls: list[bytes] = []
    parse = routes.parse_heartbeat

    def counting(content_type: str | None, body: bytes) -> Any:
        calls.append(body)
        return parse(content_type, body)

    monkeypatch.setattr(routes, "parse_heartbeat", counting)
    return calls


def _node(api: Any) -> tuple[Any, str, Any]:
    owner, friend = api.register(), api.register("friend")
    name, _ = api.create_stream(owner)
    return owner, name, api.register_node(friend, api.invite(owner, name))


def test_a_well_formed_heartbeat_is_answered_before_the_route(api, route_calls):
    owner, name, node = _node(api)
    beat = api.client.post(
        f"/api/v1/nodes/{node.id}/heartbeat",
        json=api.heartbeat_body(connections=3),
        headers={**node.headers, "X-Request-ID": "beat-1"},
    )
    assert beat.status_code == 200, beat.text
    assert route_calls == []
    assert beat.headers["content-type"] == "application/json"
    assert beat.headers["x-request-id"] == "beat-1"  # still inside the request context
    ack = beat.json()
    assert set(ack) == {"node_id", "received_at", "next_heartbeat_s", "presence_ttl_s"}
    assert ack["node_id"] == node.id
    detail = api.client.get(f"/api/v1/streams/{name}/nodes", headers=owner.headers).json()
    [seen] = detail["nodes"]
    assert seen["online"] is True and seen["load"]["connections"] == 3


def test_when_the_shortcut_fails_the_route_answers_the_same(api, route_calls, monkeypatch):
    _, _, node = _node(api)
    path = f"/api/v1/nodes/{node.id}/heartbeat"
    fast = api.client.post(path, json=api.heartbeat_body(), headers=node.headers)
    assert route_calls == []

    async def refused(*args: Any) -> None:
        raise ConnectionRefusedError("the shortcut's token lookup failed")

    # Only the shortcut's lookup fails; the route, with its own, does the work instead.
    monkeypatch.setattr(heartbeats, "lookup_node_token", refused)
    slow = api.client.post(path, content=fast.request.content, headers=fast.request.headers)
    assert slow.status_code == fast.status_code == 200
    assert route_calls == [fast.request.content]
    assert slow.headers["content-type"] == fast.headers["content-type"]
    a, b = fast.json(), slow.json()
    assert a.pop("received_at") <= b.pop("received_at")
    assert a == b


@pytest.mark.parametrize(
    ("body", "headers", "status", "says"),
    [
        ({"connections": -1}, {}, 422, "connections"),
        (b"\xff\xfe", {"Content-Type": "application/json"}, 400, "UTF-8"),
        (b"{not json", {"Content-Type": "application/json"}, 422, "JSON"),
        (b"{}", {"Content-Type": "text/plain"}, 422, "Content-Type: application/json"),
    ],
)
def test_a_bad_body_gets_the_routes_error(api, route_calls, body, headers, status, says):
    _, _, node = _node(api)
    path = f"/api/v1/nodes/{node.id}/heartbeat"
    if isinstance(body, dict):
        answer = api.client.post(path, json=api.heartbeat_body(**body), headers=node.headers)
    else:
        answer = api.client.post(path, content=body, headers={**node.headers, **headers})
    error = assert_error(answer, status)
    assert says in str(error), error
    assert route_calls == [answer.request.content]  # the route's own answer, not a copy


def test_a_wrong_or_missing_token_gets_the_routes_error(api, route_calls):
    _, _, node = _node(api)
    _, _, other = _node(api)
    path = f"/api/v1/nodes/{node.id}/heartbeat"
    body = api.heartbeat_body()
    assert_error(api.client.post(path, json=body), 401)
    assert_error(api.client.post(path, json=body, headers=other.headers), 403)
    unknown = {"Authorization": "Bearer snt_" + "x" * 40}
    assert "join again" in str(assert_error(api.client.post(path, json=body, headers=unknown), 401))
    # Well formed, but for a path that is not a heartbeat's: not the shortcut's business.
    assert api.client.post(path + "s", json=body, headers=node.headers).status_code == 404
    assert len(route_calls) == 0  # none of these got as far as the body
