"""Bad input on every route that takes any: always a 4xx (never a 500) in the error shape, with
a message that names what was wrong.

Covers missing fields, wrong types, nulls, oversized strings (10 KB fields are refused by
validation with 422; a 100 KB body by the size cap with 413), unknown fields, bodies that are not
JSON objects, wrong content types, invalid enum values, out-of-range numbers, bad URLs, unknown
names and ids, odd path parameters and invalid pagination. A seeded random generator adds a few
hundred more malformed requests that may fail in any 4xx way but never with a 5xx.
"""

from __future__ import annotations

import json
import random
import string
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from streamr_coordinator.dashboards.sessions import csrf_for

from .browser import Browser
from .conftest import PASSWORD, Account, Api, Node, assert_error

TEN_KB = "x" * 10_000
HUNDRED_KB = "x" * 100_000
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


@dataclass
class World:
    """Long-lived callers and one stream with an invite and a node; bad input changes nothing."""

    client: TestClient
    owner: Account
    friend: Account
    stream: str
    invite_id: str
    invite_code: str
    node: Node
    session_id: str = ""  # a viewer watching the stream, and the token of that session
    session_token: str = ""

    def headers(self, who: str) -> dict[str, str]:
        return {
            "anonymous": {},
            "owner": self.owner.headers,
            "friend": self.friend.headers,
            "node": self.node.headers,
            "viewer": {"X-Streamr-Session": self.session_token},
        }[who]

    def url(self, path: str) -> str:
        return path.format(
            name=self.stream,
            node_id=self.node.id,
            invite_id=self.invite_id,
            session_id=self.session_id,
        )


def build_world(client: TestClient) -> World:
    api = Api(client)
    owner, friend = api.register(), api.register("friend")
    name, _ = api.create_stream(owner)
    invite = client.post(
        f"/api/v1/streams/{name}/invites", json={"max_uses": 1000}, headers=owner.headers
    )
    assert invite.status_code == 201, invite.text
    code = invite.json()["code"]
    api.set_status(owner, name, "LIVE")
    session = api.open_session(name)
    return World(
        client=client,
        owner=owner,
        friend=friend,
        stream=name,
        invite_id=invite.json()["id"],
        invite_code=code,
        node=api.register_node(friend, code),
        session_id=session["session_id"],
        session_token=session["token"],
    )


@pytest.fixture(scope="module")
def world(client: TestClient) -> World:
    return build_world(client)


NO_BODY = object()


@dataclass(frozen=True)
class Bad:
    """One bad request and what it must get: a status and words the message must contain."""

    method: str
    path: str
    who: str
    status: int
    mentions: tuple[str, ...]
    json: Any = NO_BODY
    content: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] | None = None

    def send(self, w: World) -> Any:
        kwargs: dict[str, Any] = {"headers": {**w.headers(self.who), **self.headers}}
        if self.json is not NO_BODY:
            kwargs["json"] = self.json(w) if callable(self.json) else self.json
        if self.content is not None:
            kwargs["content"] = self.content() if callable(self.content) else self.content
        if self.params is not None:
            kwargs["params"] = self.params
        # Never follow a redirect: a bad path must not turn into a call on another route.
        return w.client.request(self.method, w.url(self.path), follow_redirects=False, **kwargs)


def check(response: Any, bad: Bad) -> None:
    error = assert_error(response, bad.status)
    message = error["message"]
    for word in bad.mentions:
        assert word in message, f"{word!r} is not named in {message!r}"
    if response.status_code == 422:
        assert error["details"], error
        for detail in error["details"]:
            assert set(detail) == {"field", "location", "problem"}, detail


# --- Bodies that are not a JSON object, on every route that takes a body -------------------

BODY_ROUTES = {
    "register": ("POST", "/api/v1/auth/register", "anonymous"),
    "login": ("POST", "/api/v1/auth/login", "anonymous"),
    "refresh": ("POST", "/api/v1/auth/refresh", "anonymous"),
    "logout": ("POST", "/api/v1/auth/logout", "anonymous"),
    "create stream": ("POST", "/api/v1/streams", "owner"),
    "update stream": ("PATCH", "/api/v1/streams/{name}", "owner"),
    "change status": ("POST", "/api/v1/streams/{name}/status", "owner"),
    "create invite": ("POST", "/api/v1/streams/{name}/invites", "owner"),
    "register node": ("POST", "/api/v1/nodes/register", "friend"),
    "heartbeat": ("POST", "/api/v1/nodes/{node_id}/heartbeat", "node"),
    "usage report": ("POST", "/api/v1/nodes/{node_id}/usage", "node"),
    "reachability": ("POST", "/api/v1/nodes/{node_id}/reachability", "node"),
    "receipts": ("POST", "/api/v1/sessions/{session_id}/receipts", "viewer"),
}

JSON_TYPE = {"content-type": "application/json"}


def _chunks() -> Iterator[bytes]:
    # A generator body is sent without Content-Length: the cap must hold while reading.
    for _ in range(4):
        yield b"x" * 30_000


NOT_AN_OBJECT: dict[str, dict[str, Any]] = {
    "not JSON": {"content": b"{name: 'x',", "headers": JSON_TYPE, "mentions": ("body", "JSON")},
    "invalid UTF-8": {"content": b'{"a": "\xff\xfe"}', "headers": JSON_TYPE, "status": 400},
    "JSON array": {"json": [{"name": "x"}]},
    "JSON string": {"json": "name=x"},
    "JSON number": {"json": 42},
    "JSON null": {"content": b"null", "headers": JSON_TYPE},
    "empty body": {"content": b"", "headers": JSON_TYPE},
    "no body at all": {},
    "text/plain": {"content": b'{"name": "x"}', "headers": {"content-type": "text/plain"}},
    "form-encoded": {
        "content": b"name=x&title=y",
        "headers": {"content-type": "application/x-www-form-urlencoded"},
    },
    "XML": {"content": b"<name>x</name>", "headers": {"content-type": "application/xml"}},
    "100 KB field": {"json": {"name": HUNDRED_KB}, "status": 413},
    "100 KB without Content-Length": {"content": _chunks, "headers": JSON_TYPE, "status": 413},
}


@pytest.mark.parametrize("kind", list(NOT_AN_OBJECT))
@pytest.mark.parametrize("route", list(BODY_ROUTES))
def test_body_that_is_not_a_json_object(world: World, route: str, kind: str):
    method, path, who = BODY_ROUTES[route]
    spec = dict(NOT_AN_OBJECT[kind])
    bad = Bad(
        method,
        path,
        who,
        status=spec.pop("status", 422),
        mentions=spec.pop("mentions", ("body",)),
        json=spec.pop("json", NO_BODY),
        **spec,
    )
    check(bad.send(world), bad)


# --- Field by field ------------------------------------------------------------------------


def _register(**fields: Any) -> dict[str, Any]:
    body = {"email": f"b-{uuid.uuid4().hex[:10]}@example.com", "password": PASSWORD}
    return {**body, "display_name": "Bad", **fields}


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


def _beat(**fields: Any) -> dict[str, Any]:
    return {"connections": 3, "egress_bps": 4_000_000, "version": "0.1.0", **fields}


def case(
    route: str, label: str, mentions: str, body: Any = NO_BODY, status: int = 422, **kwargs: Any
) -> Any:
    """A bad request to one of BODY_ROUTES, made by that route's usual caller."""
    method, path, who = BODY_ROUTES[route]
    bad = Bad(method, path, who, status, (mentions,), json=body, **kwargs)
    return pytest.param(bad, id=f"{route}: {label}")


def _report(w: World | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "report_id": f"r-{uuid.uuid4().hex}",
        "stream": w.stream if w else "placeholder",
        "period_start": "2026-01-01T00:00:00Z",
        "period_end": "2026-01-01T00:00:10Z",
        **fields,
    }


def _usage(**fields: Any) -> Any:
    """A usage report for the world's stream, with ``fields`` changed (None: left out)."""

    def build(w: World) -> dict[str, Any]:
        body = _report(w, **fields)
        return {k: v for k, v in body.items() if v is not None}

    return build


def _line(**fields: Any) -> dict[str, Any]:
    return {"session_id": "s-1", "bytes": 1, "segments": 1, "requests": 1, **fields}


def _failure(**fields: Any) -> dict[str, Any]:
    body = {"upstream_url": "http://198.51.100.9:8090", "segment": "1.ts", "reason": "hash"}
    return {**body, **fields}


def _receipt(w: World | None = None, **fields: Any) -> dict[str, Any]:
    body = {
        "source_kind": "node",
        "node_id": w.node.id if w else UNKNOWN_ID,
        "segment": "7.ts",
        "sequence": 7,
        "bytes": 1000,
        "ttfb_ms": 12,
        "download_ms": 40,
        "outcome": "ok",
    }
    return {k: v for k, v in {**body, **fields}.items() if v is not ...}


def _receipts(**fields: Any) -> Any:
    """A receipt batch with one receipt about the world's node, with ``fields`` changed in that
    receipt (``...``: left out); ``batch`` changes the batch itself."""
    batch = fields.pop("batch", {})

    def build(w: World) -> dict[str, Any]:
        body = {"batch_id": f"b-{uuid.uuid4().hex}", "receipts": [_receipt(w, **fields)]}
        return {k: v for k, v in {**body, **batch}.items() if v is not ...}

    return build


def _node_body(w: World, **fields: Any) -> dict[str, Any]:
    return {"invite_code": w.invite_code, "name": "n", **fields}


def raw_beat(content: bytes) -> dict[str, Any]:
    return {"content": content, "headers": JSON_TYPE}


# fmt: off
FIELD_CASES = [
    # Registration.
    case("register", "missing email", "email", _without(_register(), "email")),
    case("register", "missing password", "password", _without(_register(), "password")),
    case("register", "missing display_name", "display_name",
         _without(_register(), "display_name")),
    case("register", "email is a number", "email", _register(email=12345)),
    case("register", "email is null", "email", _register(email=None)),
    case("register", "email is not an email", "email", _register(email="not-an-email")),
    case("register", "email is 10 KB", "email", _register(email=TEN_KB + "@example.com")),
    case("register", "password is null", "password", _register(password=None)),
    case("register", "password is short", "password", _register(password="short")),
    case("register", "password is 10 KB", "password", _register(password=TEN_KB)),
    case("register", "password is a list", "password", _register(password=["a" * 12])),
    case("register", "display_name is empty", "display_name", _register(display_name="")),
    case("register", "display_name is blank", "display_name", _register(display_name="   ")),
    case("register", "display_name is 10 KB", "display_name", _register(display_name=TEN_KB)),
    case("register", "display_name holds NUL", "display_name",
         _register(display_name="a\x00b")),
    case("register", "display_name is an object", "display_name",
         _register(display_name={"a": 1})),
    case("register", "role is admin", "role", _register(role="admin")),
    case("register", "role is FLYING", "role", _register(role="FLYING")),
    case("register", "role is null", "role", _register(role=None)),
    case("register", "unknown field", "is_admin", _register(is_admin=True)),
    # Login, refresh, logout.
    case("login", "missing password", "password", {"email": "a@example.com"}),
    case("login", "email is a list", "email", {"email": ["a@example.com"], "password": PASSWORD}),
    case("login", "password is 10 KB", "password", {"email": "a@example.com", "password": TEN_KB}),
    case("login", "password is empty", "password", {"email": "a@example.com", "password": ""}),
    case("login", "unknown field", "remember_me",
         {"email": "a@example.com", "password": PASSWORD, "remember_me": True}),
    case("refresh", "missing token", "refresh_token", {}),
    case("refresh", "token is null", "refresh_token", {"refresh_token": None}),
    case("refresh", "token is a number", "refresh_token", {"refresh_token": 7}),
    case("refresh", "token is 10 KB", "refresh_token", {"refresh_token": TEN_KB}),
    case("refresh", "unknown token", "refresh token", {"refresh_token": "srt_unknown"},
         status=401),
    case("logout", "everywhere is not a boolean", "everywhere",
         {"refresh_token": "srt_x", "everywhere": "perhaps"}),
    case("logout", "everywhere is null", "everywhere",
         {"refresh_token": "srt_x", "everywhere": None}),
    case("logout", "missing token", "refresh_token", {"everywhere": True}),
    # Creating a stream.
    case("create stream", "missing name", "name", {"title": "t"}),
    case("create stream", "missing title", "title", {"name": "fine-name"}),
    case("create stream", "name has capitals", "name", {"name": "Bad-Name", "title": "t"}),
    case("create stream", "name is too short", "name", {"name": "ab", "title": "t"}),
    case("create stream", "name ends with a hyphen", "name", {"name": "abc-", "title": "t"}),
    case("create stream", "name is 41 characters", "name", {"name": "a" * 41, "title": "t"}),
    case("create stream", "name is 10 KB", "name", {"name": TEN_KB, "title": "t"}),
    case("create stream", "name is emoji", "name", {"name": "\U0001f3a5" * 3, "title": "t"}),
    case("create stream", "name is a path", "name", {"name": "../../etc/passwd", "title": "t"}),
    case("create stream", "name is null", "name", {"name": None, "title": "t"}),
    case("create stream", "name is a number", "name", {"name": 12345, "title": "t"}),
    case("create stream", "title is empty", "title", {"name": "fine-name", "title": ""}),
    case("create stream", "title is blank", "title", {"name": "fine-name", "title": "   "}),
    case("create stream", "title is 10 KB", "title", {"name": "fine-name", "title": TEN_KB}),
    case("create stream", "title holds NUL", "title", {"name": "fine-name", "title": "a\x00b"}),
    case("create stream", "description is 10 KB", "description",
         {"name": "fine-name", "title": "t", "description": TEN_KB}),
    case("create stream", "is_test is not a boolean", "is_test",
         {"name": "fine-name", "title": "t", "is_test": "maybe"}),
    case("create stream", "is_test is null", "is_test",
         {"name": "fine-name", "title": "t", "is_test": None}),
    case("create stream", "owner_id cannot be chosen", "owner_id",
         {"name": "fine-name", "title": "t", "owner_id": UNKNOWN_ID}),
    case("create stream", "status cannot be chosen", "status",
         {"name": "fine-name", "title": "t", "status": "LIVE"}),
    # Updating a stream: null is refused by the route (400), everything else by validation.
    case("update stream", "nothing to change", "title", {}, status=400),
    case("update stream", "title is null", "title", {"title": None}, status=400),
    case("update stream", "description is null", "description", {"description": None},
         status=400),
    case("update stream", "is_test is null", "is_test", {"is_test": None}, status=400),
    case("update stream", "title is empty", "title", {"title": ""}),
    case("update stream", "title is 10 KB", "title", {"title": TEN_KB}),
    case("update stream", "description is 10 KB", "description", {"description": TEN_KB}),
    case("update stream", "is_test is not a boolean", "is_test", {"is_test": "maybe"}),
    case("update stream", "name cannot change", "name", {"name": "other-name"}),
    case("update stream", "status cannot be patched", "status", {"status": "LIVE"}),
    # Lifecycle.
    case("change status", "unknown status", "status", {"status": "FLYING"}),
    case("change status", "lowercase status", "status", {"status": "live"}),
    case("change status", "empty status", "status", {"status": ""}),
    case("change status", "null status", "status", {"status": None}),
    case("change status", "numeric status", "status", {"status": 3}),
    case("change status", "missing status", "status", {}),
    case("change status", "unknown field", "force", {"status": "LIVE", "force": True}),
    # Invites.
    case("create invite", "lifetime under a minute", "expires_in_s", {"expires_in_s": 59}),
    case("create invite", "negative lifetime", "expires_in_s", {"expires_in_s": -1}),
    case("create invite", "lifetime of centuries", "expires_in_s", {"expires_in_s": 10**12}),
    case("create invite", "lifetime is a word", "expires_in_s", {"expires_in_s": "soon"}),
    case("create invite", "lifetime is null", "expires_in_s", {"expires_in_s": None}),
    case("create invite", "zero uses", "max_uses", {"max_uses": 0}),
    case("create invite", "negative uses", "max_uses", {"max_uses": -5}),
    case("create invite", "too many uses", "max_uses", {"max_uses": 1001}),
    case("create invite", "fractional uses", "max_uses", {"max_uses": 1.5}),
    case("create invite", "label is 10 KB", "label", {"label": TEN_KB}),
    case("create invite", "label is a number", "label", {"label": 123}),
    case("create invite", "code cannot be chosen", "code", {"code": "inv_mine"}),
    # Registering a node.
    case("register node", "missing invite_code", "invite_code", {"name": "n"}),
    case("register node", "invite_code is null", "invite_code", {"invite_code": None}),
    case("register node", "invite_code is short", "invite_code", {"invite_code": "inv_x"}),
    case("register node", "invite_code is 10 KB", "invite_code", {"invite_code": TEN_KB}),
    case("register node", "invite_code is a number", "invite_code",
         {"invite_code": 12345678}),
    case("register node", "unknown invite_code", "invite", {"invite_code": "inv_" + "z" * 24},
         status=404),
    case("register node", "name is empty", "name", lambda w: _node_body(w, name="")),
    case("register node", "name is 10 KB", "name", lambda w: _node_body(w, name=TEN_KB)),
    case("register node", "name holds NUL", "name", lambda w: _node_body(w, name="a\x00b")),
    case("register node", "version is 10 KB", "version",
         lambda w: _node_body(w, version=TEN_KB)),
    case("register node", "public_url is not a URL", "public_url",
         lambda w: _node_body(w, public_url="not a url")),
    case("register node", "public_url is ftp", "public_url",
         lambda w: _node_body(w, public_url="ftp://198.51.100.7/")),
    case("register node", "public_url is javascript", "public_url",
         lambda w: _node_body(w, public_url="javascript:alert(1)")),
    case("register node", "public_url has no host", "public_url",
         lambda w: _node_body(w, public_url="http://")),
    case("register node", "public_url has a bad port", "public_url",
         lambda w: _node_body(w, public_url="http://198.51.100.7:99999/")),
    case("register node", "public_url is 10 KB", "public_url",
         lambda w: _node_body(w, public_url="http://example.com/" + TEN_KB)),
    case("register node", "public_url grows past the limit when encoded", "public_url",
         lambda w: _node_body(w, public_url="http://example.com/" + "\u00e9" * 1000)),
    case("register node", "stream cannot be chosen", "stream",
         lambda w: _node_body(w, stream="other")),
    # Heartbeats.
    case("heartbeat", "negative connections", "connections", _beat(connections=-1)),
    case("heartbeat", "a trillion connections", "connections", _beat(connections=10**12)),
    case("heartbeat", "fractional connections", "connections", _beat(connections=1.5)),
    case("heartbeat", "connections is a word", "connections", _beat(connections="many")),
    case("heartbeat", "connections is null", "connections", _beat(connections=None)),
    case("heartbeat", "missing connections", "connections", _without(_beat(), "connections")),
    case("heartbeat", "negative egress", "egress_bps", _beat(egress_bps=-1)),
    case("heartbeat", "egress beyond 64 bits", "egress_bps", _beat(egress_bps=10**20)),
    case("heartbeat", "egress of 1e30", "egress_bps", _beat(egress_bps=1e30)),
    case("heartbeat", "negative egress cap", "egress_cap_bps", _beat(egress_cap_bps=-1)),
    case("heartbeat", "missing version", "version", _without(_beat(), "version")),
    case("heartbeat", "empty version", "version", _beat(version="")),
    case("heartbeat", "version is 10 KB", "version", _beat(version=TEN_KB)),
    case("heartbeat", "version holds NUL", "version", _beat(version="1\x00")),
    case("heartbeat", "public_url is not a URL", "public_url", _beat(public_url="not a url")),
    case("heartbeat", "public_url is 10 KB", "public_url",
         _beat(public_url="http://example.com/" + TEN_KB)),
    case("heartbeat", "node_id cannot be sent", "node_id", _beat(node_id=UNKNOWN_ID)),
    case("heartbeat", "NaN connections", "connections",
         **raw_beat(b'{"connections": NaN, "egress_bps": 1, "version": "1"}')),
    case("heartbeat", "infinite egress", "egress_bps",
         **raw_beat(b'{"connections": 1, "egress_bps": Infinity, "version": "1"}')),
    case("heartbeat", "egress of 1e400", "egress_bps",
         **raw_beat(b'{"connections": 1, "egress_bps": 1e400, "version": "1"}')),
    # Usage reports.
    case("usage report", "missing report_id", "report_id", _usage(report_id=None)),
    case("usage report", "report_id is short", "report_id", _usage(report_id="abc")),
    case("usage report", "report_id has a slash", "report_id", _usage(report_id="a/b/c/d/e/f")),
    case("usage report", "report_id is 10 KB", "report_id", _usage(report_id=TEN_KB)),
    case("usage report", "report_id is a number", "report_id", _usage(report_id=12345678)),
    case("usage report", "missing stream", "stream", _usage(stream=None)),
    case("usage report", "stream is 10 KB", "stream", _usage(stream=TEN_KB)),
    case("usage report", "another stream", "relays stream", _usage(stream="someone-else"),
         status=400),
    case("usage report", "missing period_start", "period_start", _usage(period_start=None)),
    case("usage report", "period_start is a word", "period_start",
         _usage(period_start="yesterday")),
    case("usage report", "period_start is before year 1 in UTC", "period_start",
         _usage(period_start="0001-01-01T00:00:00+01:00")),
    case("usage report", "period_end is past year 9999 in UTC", "period_end",
         _usage(period_end="9999-12-31T23:59:59-01:00")),
    case("usage report", "period ends before it starts", "period_end",
         _usage(period_end="2025-01-01T00:00:00Z"), status=400),
    case("usage report", "sessions is an object", "sessions", _usage(sessions={"a": 1})),
    case("usage report", "a session twice", "appears twice",
         _usage(sessions=[_line(), _line()])),
    case("usage report", "negative bytes", "sessions.0.bytes",
         _usage(sessions=[_line(bytes=-1)])),
    case("usage report", "bytes beyond any uplink", "sessions.0.bytes",
         _usage(sessions=[_line(bytes=10**15)])),
    case("usage report", "fractional segments", "sessions.0.segments",
         _usage(sessions=[_line(segments=1.5)])),
    case("usage report", "missing requests", "sessions.0.requests",
         _usage(sessions=[{"session_id": "s", "bytes": 1, "segments": 1}])),
    case("usage report", "empty session_id", "sessions.0.session_id",
         _usage(sessions=[_line(session_id="")])),
    case("usage report", "session_id is 10 KB", "sessions.0.session_id",
         _usage(sessions=[_line(session_id=TEN_KB)])),
    case("usage report", "session_id holds NUL", "sessions.0.session_id",
         _usage(sessions=[_line(session_id="a\x00b")])),
    case("usage report", "session line has an unknown field", "sessions.0.counted",
         _usage(sessions=[_line(counted=True)])),
    case("usage report", "negative unattributed_bytes", "unattributed_bytes",
         _usage(unattributed_bytes=-1)),
    case("usage report", "unattributed_requests is a word", "unattributed_requests",
         _usage(unattributed_requests="many")),
    case("usage report", "failure without a reason", "integrity_failures.0.reason",
         _usage(integrity_failures=[_without(_failure(), "reason")])),
    case("usage report", "failure upstream_url is 10 KB", "integrity_failures.0.upstream_url",
         _usage(integrity_failures=[_failure(upstream_url=TEN_KB)])),
    case("usage report", "failure sequence is negative", "integrity_failures.0.sequence",
         _usage(integrity_failures=[_failure(sequence=-1)])),
    case("usage report", "101 failures", "integrity_failures",
         _usage(integrity_failures=[_failure()] * 101)),
    case("usage report", "counts cannot be sent", "counted_bytes", _usage(counted_bytes=5)),
    # Reachability checks.
    case("reachability", "public_url is not a URL", "public_url", {"public_url": "not a url"}),
    case("reachability", "public_url is ftp", "public_url",
         {"public_url": "ftp://198.51.100.7/"}),
    case("reachability", "public_url is a file", "public_url", {"public_url": "file:///etc/passwd"}),
    case("reachability", "public_url has a bad port", "public_url",
         {"public_url": "http://198.51.100.7:99999/"}),
    case("reachability", "public_url is 10 KB", "public_url",
         {"public_url": "http://example.com/" + TEN_KB}),
    case("reachability", "public_url is a number", "public_url", {"public_url": 8080}),
    case("reachability", "unknown field", "node_id", {"node_id": UNKNOWN_ID}),
    # Viewer receipts.
    case("receipts", "missing batch_id", "batch_id", _receipts(batch={"batch_id": ...})),
    case("receipts", "batch_id is short", "batch_id", _receipts(batch={"batch_id": "abc"})),
    case("receipts", "batch_id has a slash", "batch_id",
         _receipts(batch={"batch_id": "a/b/c/d/e"})),
    case("receipts", "batch_id is 10 KB", "batch_id", _receipts(batch={"batch_id": TEN_KB})),
    case("receipts", "batch_id is a number", "batch_id", _receipts(batch={"batch_id": 12345678})),
    case("receipts", "no receipts", "receipts", _receipts(batch={"receipts": []})),
    case("receipts", "missing receipts", "receipts", _receipts(batch={"receipts": ...})),
    case("receipts", "receipts is an object", "receipts", _receipts(batch={"receipts": {"a": 1}})),
    case("receipts", "101 receipts", "receipts", _receipts(batch={"receipts": [_receipt()] * 101})),
    case("receipts", "unknown batch field", "session_id",
         _receipts(batch={"session_id": UNKNOWN_ID})),
    case("receipts", "a node without node_id", "node_id", _receipts(node_id=...)),
    case("receipts", "a node with a null node_id", "node_id", _receipts(node_id=None)),
    case("receipts", "the origin with a node_id", "node_id", _receipts(source_kind="origin")),
    case("receipts", "source_kind is cdn", "source_kind", _receipts(source_kind="cdn")),
    case("receipts", "missing source_kind", "source_kind", _receipts(source_kind=...)),
    case("receipts", "outcome is great", "outcome", _receipts(outcome="great")),
    case("receipts", "outcome is OK", "outcome", _receipts(outcome="OK")),
    case("receipts", "missing outcome", "outcome", _receipts(outcome=...)),
    case("receipts", "negative bytes", "receipts.0.bytes", _receipts(bytes=-1)),
    case("receipts", "a terabyte segment", "receipts.0.bytes", _receipts(bytes=10**12)),
    case("receipts", "bytes is a word", "receipts.0.bytes", _receipts(bytes="lots")),
    case("receipts", "negative ttfb_ms", "receipts.0.ttfb_ms", _receipts(ttfb_ms=-1)),
    case("receipts", "ttfb_ms of a day", "receipts.0.ttfb_ms", _receipts(ttfb_ms=86_400_000)),
    case("receipts", "fractional ttfb_ms", "receipts.0.ttfb_ms", _receipts(ttfb_ms=1.5)),
    case("receipts", "download_ms is a word", "receipts.0.download_ms",
         _receipts(download_ms="slow")),
    case("receipts", "negative sequence", "receipts.0.sequence", _receipts(sequence=-1)),
    case("receipts", "sequence beyond 2^62", "receipts.0.sequence", _receipts(sequence=2**63)),
    case("receipts", "segment is a path", "receipts.0.segment", _receipts(segment="../../x.ts")),
    case("receipts", "segment is empty", "receipts.0.segment", _receipts(segment="")),
    case("receipts", "segment is 10 KB", "receipts.0.segment", _receipts(segment=TEN_KB)),
    case("receipts", "segment holds NUL", "receipts.0.segment", _receipts(segment="1\x00.ts")),
    case("receipts", "node_id is 10 KB", "receipts.0.node_id", _receipts(node_id=TEN_KB)),
    case("receipts", "unknown receipt field", "receipts.0.price", _receipts(price=3)),
    case("receipts", "a node of no stream", "names no node", _receipts(node_id=UNKNOWN_ID),
         status=400),
]
# fmt: on


@pytest.mark.parametrize("bad", FIELD_CASES)
def test_bad_field(world: World, bad: Bad):
    check(bad.send(world), bad)


# --- Query strings: pagination and filters ---------------------------------------------------

QUERY_CASES = [
    ("/api/v1/streams", "anonymous", {"limit": "0"}, "limit"),
    ("/api/v1/streams", "anonymous", {"limit": "201"}, "limit"),
    ("/api/v1/streams", "anonymous", {"limit": "-1"}, "limit"),
    ("/api/v1/streams", "anonymous", {"limit": "ten"}, "limit"),
    ("/api/v1/streams", "anonymous", {"limit": "1.5"}, "limit"),
    ("/api/v1/streams", "anonymous", {"limit": ""}, "limit"),
    ("/api/v1/streams", "anonymous", {"limit": "9" * 40}, "limit"),
    ("/api/v1/streams", "anonymous", {"offset": "-1"}, "offset"),
    ("/api/v1/streams", "anonymous", {"offset": "2000000"}, "offset"),
    ("/api/v1/streams", "anonymous", {"offset": "first"}, "offset"),
    ("/api/v1/streams", "anonymous", {"status": "FLYING"}, "status"),
    ("/api/v1/streams", "anonymous", {"status": "live"}, "status"),
    ("/api/v1/streams", "anonymous", {"status": "\x00"}, "status"),
    ("/api/v1/streams/{name}/history", "owner", {"limit": "0"}, "limit"),
    ("/api/v1/streams/{name}/history", "owner", {"limit": "1001"}, "limit"),
    ("/api/v1/streams/{name}/history", "owner", {"limit": "all"}, "limit"),
]


@pytest.mark.parametrize(
    ("path", "who", "params", "mentions"),
    QUERY_CASES,
    ids=[f"{path} {params}" for path, _, params, _ in QUERY_CASES],
)
def test_bad_query(world: World, path: str, who: str, params: dict[str, str], mentions: str):
    bad = Bad("GET", path, who, 422, (mentions,), params=params)
    check(bad.send(world), bad)


# --- Unknown names and ids -------------------------------------------------------------------

MISSING = "no-such-stream-anywhere"

UNKNOWN_CASES = [
    ("GET", f"/api/v1/streams/{MISSING}", "anonymous", None, MISSING),
    ("GET", f"/api/v1/streams/{MISSING}", "owner", None, MISSING),
    ("PATCH", f"/api/v1/streams/{MISSING}", "owner", {"title": "x"}, MISSING),
    ("DELETE", f"/api/v1/streams/{MISSING}", "owner", None, MISSING),
    ("POST", f"/api/v1/streams/{MISSING}/rotate-key", "owner", None, MISSING),
    ("POST", f"/api/v1/streams/{MISSING}/status", "owner", {"status": "LIVE"}, MISSING),
    ("GET", f"/api/v1/streams/{MISSING}/history", "owner", None, MISSING),
    ("POST", f"/api/v1/streams/{MISSING}/invites", "owner", {}, MISSING),
    ("GET", f"/api/v1/streams/{MISSING}/invites", "owner", None, MISSING),
    ("DELETE", f"/api/v1/streams/{MISSING}/invites/{UNKNOWN_ID}", "owner", None, MISSING),
    ("GET", f"/api/v1/streams/{MISSING}/nodes", "anonymous", None, MISSING),
    ("POST", f"/api/v1/streams/{MISSING}/sessions", "anonymous", None, MISSING),
    ("GET", f"/api/v1/nodes/{UNKNOWN_ID}/usage", "owner", None, UNKNOWN_ID),
    ("DELETE", f"/api/v1/streams/{{name}}/invites/{UNKNOWN_ID}", "owner", None, UNKNOWN_ID),
    ("DELETE", "/api/v1/streams/{name}/invites/not-an-id", "owner", None, "not-an-id"),
    ("GET", f"/api/v1/nodes/{UNKNOWN_ID}", "owner", None, UNKNOWN_ID),
    ("DELETE", f"/api/v1/nodes/{UNKNOWN_ID}", "owner", None, UNKNOWN_ID),
    ("GET", "/api/v1/nodes/not-a-node", "owner", None, "not-a-node"),
    ("GET", "/api/v1/no-such-route", "anonymous", None, "/api/v1"),
]


@pytest.mark.parametrize(
    ("method", "path", "who", "body", "mentions"),
    UNKNOWN_CASES,
    ids=[f"{c[0]} {c[1]} as {c[2]}" for c in UNKNOWN_CASES],
)
def test_unknown_names_and_ids_are_404(
    world: World, method: str, path: str, who: str, body: Any, mentions: str
):
    bad = Bad(method, path, who, 404, (mentions,), json=NO_BODY if body is None else body)
    check(bad.send(world), bad)


def test_an_invite_of_another_stream_is_404(world: World):
    api = Api(world.client)
    other, _ = api.create_stream(world.owner)
    response = world.client.delete(
        f"/api/v1/streams/{other}/invites/{world.invite_id}", headers=world.owner.headers
    )
    assert world.invite_id in assert_error(response, 404)["message"]


@pytest.mark.parametrize(
    ("method", "route", "body"),
    [
        ("POST", "heartbeat", _beat()),
        ("GET", "assignment", None),
        ("POST", "usage", _report()),
        ("POST", "reachability", {}),
        ("DELETE", "presence", None),
    ],
)
def test_node_routes_for_an_unknown_node_id_are_403_for_this_token(
    world: World, method: str, route: str, body: Any
):
    response = world.client.request(
        method, f"/api/v1/nodes/{UNKNOWN_ID}/{route}", json=body, headers=world.node.headers
    )
    assert "different node" in assert_error(response, 403)["message"]


# --- Odd path parameters ---------------------------------------------------------------------

ODD_NAMES = {
    "emoji": "\U0001f3a5",
    "unicode letters": "\u00fcn\u00efc\u00f6d\u00e9",
    "right-to-left": "\u202eemaN",
    "dot dot": "%2E%2E",
    "encoded traversal": "..%2F..%2Fetc%2Fpasswd",
    "invalid UTF-8": "%FF%FE",
    "encoded surrogate": "%ED%A0%80",
    "SQL": "x'; DROP TABLE streams; --",
    "spaces": "a b",
    "percent": "%25",
    "backslashes": "..\\..\\windows",
    "200 characters": "a" * 200,
}


def _quoted(raw: str) -> str:
    # Keep the escapes above as written (they are the point); quote everything else.
    return quote(raw, safe="%").replace(".", "%2E")


@pytest.mark.parametrize("raw", list(ODD_NAMES.values()), ids=list(ODD_NAMES))
@pytest.mark.parametrize(
    ("method", "template", "who"),
    [
        ("GET", "/api/v1/streams/{}", "anonymous"),
        ("PATCH", "/api/v1/streams/{}", "owner"),
        ("GET", "/api/v1/streams/{}/nodes", "owner"),
        ("DELETE", "/api/v1/streams/{name}/invites/{}", "owner"),
        ("GET", "/api/v1/nodes/{}", "owner"),
        ("DELETE", "/api/v1/nodes/{}", "owner"),
        ("POST", "/api/v1/streams/{}/sessions", "anonymous"),
        ("GET", "/api/v1/nodes/{}/usage", "owner"),
    ],
    ids=[
        "stream",
        "update stream",
        "stream nodes",
        "invite",
        "node",
        "delete node",
        "viewer session",
        "node usage",
    ],
)
def test_odd_path_parameters_are_404(world: World, method: str, template: str, who: str, raw: str):
    path = template.replace("{}", _quoted(raw))
    body = {"title": "x"} if method == "PATCH" else NO_BODY
    response = Bad(method, path, who, 404, (), json=body).send(world)
    error = assert_error(response, 404)
    # "No stream is named ...", "No such path ...", "Stream ... has no invite ..."
    assert "no " in error["message"].lower(), error


@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("GET", "/api/v1/streams/{}"),
        ("PATCH", "/api/v1/streams/{}"),
        ("GET", "/api/v1/nodes/{}"),
        ("DELETE", "/api/v1/nodes/{}"),
        ("POST", "/api/v1/nodes/{}/heartbeat"),
    ],
)
def test_nul_in_a_path_is_400_before_any_lookup(world: World, method: str, template: str):
    response = world.client.request(
        method, template.replace("{}", "a%00b"), headers=world.owner.headers
    )
    assert "NUL" in assert_error(response, 400)["message"]


@pytest.mark.parametrize("length", [201, 10_000])
@pytest.mark.parametrize(
    ("method", "template", "mentions"),
    [
        ("GET", "/api/v1/streams/{}", "name"),
        ("POST", "/api/v1/streams/{}/rotate-key", "name"),
        ("GET", "/api/v1/streams/{}/nodes", "name"),
        ("GET", "/api/v1/nodes/{}", "node_id"),
        ("DELETE", "/api/v1/nodes/{}", "node_id"),
        ("POST", "/api/v1/streams/{}/sessions", "name"),
        ("GET", "/api/v1/nodes/{}/usage", "node_id"),
        ("GET", "/api/v1/nodes/{}/assignment", "node_id"),
        ("POST", "/api/v1/nodes/{}/reachability", "node_id"),
        ("POST", "/api/v1/nodes/{}/usage", "node_id"),
        ("DELETE", "/api/v1/nodes/{}/presence", "node_id"),
        ("GET", "/api/v1/sessions/{}/sources", "session_id"),
        ("POST", "/api/v1/sessions/{}/receipts", "session_id"),
    ],
)
def test_very_long_path_parameters_are_422(
    world: World, method: str, template: str, mentions: str, length: int
):
    bad = Bad(method, template.replace("{}", "a" * length), "owner", 422, (mentions,))
    check(bad.send(world), bad)


def test_very_long_invite_id_is_404(world: World):
    response = world.client.delete(
        f"/api/v1/streams/{world.stream}/invites/{'a' * 10_000}", headers=world.owner.headers
    )
    assert "has no invite" in assert_error(response, 404)["message"]
    assert len(response.text) < 1000, "the message does not echo 10 KB back"


def test_heartbeat_with_a_10_kb_node_id_is_422(world: World):
    response = world.client.post(
        f"/api/v1/nodes/{'a' * 10_000}/heartbeat", json=_beat(), headers=world.node.headers
    )
    assert "node_id" in assert_error(response, 422)["message"]


# --- Property-style: a seeded generator of malformed requests --------------------------------

SEED = 20_251_127
TEXT_POOL = string.ascii_letters + string.digits + string.punctuation + " \t\n\x00\x1f\x7f"
UNICODE_POOL = "\u00e9\u00df\u4e2d\u202e\ufeff\U0001f3a5\ud800\udfff"


def _random_text(rng: random.Random) -> str:
    length = rng.choice([0, 1, 2, 8, 40, 65, 257, 3000])
    pool = TEXT_POOL + UNICODE_POOL
    return "".join(rng.choice(pool) for _ in range(length))


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["null", "bool", "int", "bigint", "float", "special", "text"]
    if depth < 2:
        kinds += ["list", "object"]
    kind = rng.choice(kinds)
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.randint(-(2**31), 2**31)
    if kind == "bigint":
        return rng.choice([-1, 1]) * 10 ** rng.randint(10, 40)
    if kind == "float":
        return rng.uniform(-1e6, 1e6)
    if kind == "special":
        return rng.choice([float("nan"), float("inf"), float("-inf"), -0.0, 1e308])
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "object":
        return {_random_text(rng)[:20]: _random_value(rng, depth + 1) for _ in range(3)}
    return _random_text(rng)


def malformed_payloads(rng: random.Random, valid: dict[str, Any], count: int) -> list[bytes]:
    """``count`` request bodies: mutations of a valid one (a field dropped, retyped or added)
    and a few that are not JSON objects at all."""
    out = []
    for _ in range(count):
        body = dict(valid)
        roll = rng.random()
        if roll < 0.1:
            out.append(bytes(rng.randrange(256) for _ in range(rng.randint(0, 64))))
            continue
        if roll < 0.2:
            out.append(json.dumps(_random_value(rng)).encode())
            continue
        for _ in range(rng.randint(1, 3)):
            action = rng.choice(["drop", "retype", "retype", "add"])
            if action == "drop" and body:
                body.pop(rng.choice(list(body)))
            elif action == "retype" and body:
                body[rng.choice(list(body))] = _random_value(rng)
            else:
                body[_random_text(rng)[:30] or "x"] = _random_value(rng)
        out.append(json.dumps(body).encode())
    return out


def _valid_bodies(w: World) -> dict[str, dict[str, Any]]:
    return {
        "register": _register(),
        "login": {"email": w.owner.email, "password": PASSWORD},
        "refresh": {"refresh_token": "srt_unknown"},
        "logout": {"refresh_token": "srt_unknown", "everywhere": False},
        "create stream": {"name": "fuzz-name", "title": "t", "description": "", "is_test": True},
        "update stream": {"title": "t", "description": "d", "is_test": False},
        "change status": {"status": "OFFLINE"},
        "create invite": {"label": "l", "expires_in_s": 3600, "max_uses": 2},
        "register node": {
            "invite_code": w.invite_code,
            "name": "n",
            "public_url": "http://198.51.100.7:8080",
            "version": "0.1.0",
        },
        "heartbeat": _beat(),
        "usage report": _report(
            w,
            sessions=[_line()],
            unattributed_bytes=0,
            unattributed_requests=0,
            integrity_failures=[_failure(sequence=1, upstream_node_id=None)],
        ),
        # A port nothing listens on: a fuzzed body that happens to be valid is checked quickly.
        "reachability": {"public_url": "http://127.0.0.1:9/"},
        "receipts": _receipts()(w),
    }


@pytest.fixture(scope="module")
def fuzz_world(client: TestClient) -> World:
    """A world of its own: random bodies may happen to be valid and change things."""
    return build_world(client)


@pytest.mark.parametrize("route", list(BODY_ROUTES))
def test_malformed_payloads_never_cause_a_5xx(fuzz_world: World, route: str):
    rng = random.Random(f"{SEED}:{route}")
    method, path, who = BODY_ROUTES[route]
    w = fuzz_world
    for payload in malformed_payloads(rng, _valid_bodies(w)[route], 50):
        response = w.client.request(
            method,
            w.url(path),
            content=payload,
            headers={**w.headers(who), **JSON_TYPE},
            follow_redirects=False,
        )
        assert response.status_code < 500, (payload[:300], response.text)
        if response.status_code >= 400:
            assert_error(response)


@pytest.mark.parametrize(
    "template",
    [
        "/api/v1/streams/{}",
        "/api/v1/streams/{}/nodes",
        "/api/v1/streams/{}/history",
        "/api/v1/streams/{name}/invites/{}",
        "/api/v1/nodes/{}",
        "/api/v1/nodes/{}/usage",
    ],
)
def test_random_path_parameters_never_cause_a_5xx(fuzz_world: World, template: str):
    rng = random.Random(f"{SEED}:{template}")
    w = fuzz_world
    method = "DELETE" if "invites" in template else "GET"
    for _ in range(50):
        raw = (_random_text(rng) or "x").encode("utf-8", "surrogatepass")
        # Dots are escaped too, or the client would resolve "." and ".." segments itself.
        escaped = quote(raw, safe="").replace(".", "%2E")
        url = w.url(template.replace("{}", "\x00")).replace("\x00", escaped)
        response = w.client.request(method, url, headers=w.owner.headers, follow_redirects=False)
        assert response.status_code < 500, (raw[:100], response.text)
        # Not always a 4xx: a value that decodes to "/" leaves a trailing slash, which Starlette
        # answers with a redirect to the same path without it.
        if response.status_code >= 400:
            assert_error(response)


SECRET = "Sup3r-secret-marker"


ECHO_CASES = {
    "long password": ("register", _register(password=SECRET * 20)),
    "email that is a password": ("register", _register(email=SECRET, password=SECRET)),
    "long display_name": ("register", _register(display_name=SECRET * 5)),
    "login": ("login", {"email": SECRET, "password": SECRET * 20}),
    "refresh": ("refresh", {"refresh_token": SECRET * 20}),
    "invite code": ("register node", {"invite_code": SECRET * 10}),
    "heartbeat": ("heartbeat", _beat(public_url=f"http://{SECRET}:99999/", version=SECRET * 5)),
    "usage session id": ("usage report", _report(sessions=[_line(session_id=SECRET * 10)])),
    "usage report id": ("usage report", _report(report_id=SECRET + "/")),
    "reachability URL": ("reachability", {"public_url": f"http://{SECRET}:99999/"}),
}


@pytest.mark.parametrize(("route", "body"), list(ECHO_CASES.values()), ids=list(ECHO_CASES))
def test_validation_errors_never_echo_the_input(world: World, route: str, body: dict[str, Any]):
    """What was sent may be a password or a key: a 422 says what is wrong, never what it was."""
    method, path, who = BODY_ROUTES[route]
    response = world.client.request(method, world.url(path), json=body, headers=world.headers(who))
    assert_error(response, 422)
    assert SECRET not in response.text


# --- The dashboards' forms: odd bodies and names are a 4xx page, never a 5xx ------------------

FORM_TYPE = {"content-type": "application/x-www-form-urlencoded"}
PAGE_FORMS = [
    "/login",
    "/logout",
    "/dashboard/streamer/streams/{name}/key",
    "/dashboard/streamer/streams/{name}/invites",
]
ODD_FORMS: dict[str, dict[str, Any]] = {
    "no body": {},
    "JSON": {"json": {"csrf_token": "x", "label": "y"}},
    "text/plain": {"content": b"csrf_token=x", "headers": {"content-type": "text/plain"}},
    "invalid UTF-8": {"content": b"csrf_token=\xff\xfe&label=%FF", "headers": FORM_TYPE},
    "NUL in a value": {"content": b"csrf_token=a%00b", "headers": FORM_TYPE},
    "50 fields": {"content": "&".join(f"f{i}=1" for i in range(50)).encode(), "headers": FORM_TYPE},
    "binary": {"content": bytes(range(256)), "headers": FORM_TYPE},
    "100 KB": {"content": b"label=" + b"x" * 100_000, "headers": FORM_TYPE},
    "wrong CSRF token": {"content": b"csrf_token=" + b"0" * 64, "headers": FORM_TYPE},
}


def _page_browser(w: World) -> Browser:
    """The owner, logged in to the dashboards (their registration's refresh token is a session)."""
    return Browser(w.client, {"streamr_session": w.owner.refresh_token})


def _page_error(response: Any) -> None:
    assert 400 <= response.status_code < 500, response.text
    if response.headers["content-type"].startswith("application/json"):
        assert_error(response)
    else:
        assert response.headers["content-type"].startswith("text/html"), response.headers
        assert 'role="alert"' in response.text


@pytest.mark.parametrize("kind", list(ODD_FORMS))
@pytest.mark.parametrize("path", PAGE_FORMS)
def test_odd_forms_on_pages_are_refused_with_a_4xx(world: World, path: str, kind: str):
    before = world.client.get(f"/api/v1/streams/{world.stream}", headers=world.owner.headers)
    response = _page_browser(world).request("POST", world.url(path), **ODD_FORMS[kind])
    _page_error(response)
    after = world.client.get(f"/api/v1/streams/{world.stream}", headers=world.owner.headers)
    assert after.json() == before.json(), "a refused form changed the stream"


@pytest.mark.parametrize("raw", list(ODD_NAMES.values()), ids=list(ODD_NAMES))
@pytest.mark.parametrize("action", ["key", "invites"])
def test_odd_stream_names_in_page_forms_are_a_4xx(world: World, action: str, raw: str):
    browser = _page_browser(world)
    response = browser.request(
        "POST",
        f"/dashboard/streamer/streams/{_quoted(raw)}/{action}",
        data={"csrf_token": csrf_for(world.owner.refresh_token)},
    )
    _page_error(response)


@pytest.mark.parametrize(
    "query", [{"next": "https://evil.example"}, {"next": "x" * 10_000}, {"next": "\x00"}]
)
def test_odd_queries_on_pages_are_ignored(world: World, query: dict[str, str]):
    response = Browser(world.client).request("GET", "/login", params=query)
    assert response.status_code == 200, response.text
    assert "evil.example" not in response.text and "x" * 100 not in response.text
