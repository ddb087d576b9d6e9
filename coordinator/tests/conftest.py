"""API test fixtures: one coordinator per database backend, and helpers to build scenarios.

Each backend gets one migrated database and one app for the whole session; tests stay
independent by using fresh, unique accounts and stream names.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from streamr_coordinator.accounts.models import Role
from streamr_coordinator.accounts.service import create_account
from streamr_coordinator.main import create_app
from streamr_coordinator.settings import Settings

from .loopback import NodeHost, node_host

PASSWORD = "correct horse battery staple"
_counter = itertools.count()


def make_settings(tmp: Path, database_url: str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp,
        "database_url": database_url,
        "auto_migrate": True,
        "auth_attempts_per_minute": 100_000,
        "viewer_sessions_per_minute": 100_000,
        # Test nodes listen on loopback, which production refuses to check (SSRF protection).
        "allow_private_node_urls": True,
        # These tests check what routing makes of each heartbeat and receipt the moment it is
        # stored; reusing a stream's inputs for a second is test_routing_inputs.py's subject.
        "routing_inputs_ttl_s": 0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path_factory: Any) -> str | None:
    if backend == "sqlite":
        return None  # the default: SQLite in the data directory
    server = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture(scope="session")
def client(database_url: str | None, tmp_path_factory: Any) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("coordinator"), database_url)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@dataclass
class Account:
    id: str
    email: str
    role: str
    access_token: str
    refresh_token: str
    password: str = PASSWORD

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@dataclass
class Node:
    id: str
    token: str
    stream: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Api:
    """Builds scenarios through the public API, asserting each step succeeded."""

    client: TestClient
    created: list[str] = field(default_factory=list)

    def register(self, role: str = "streamer") -> Account:
        email = f"{role}-{uuid.uuid4().hex[:10]}@example.com"
        response = self.client.post(
            "/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "display_name": role.title(), "role": role},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        return Account(
            id=body["account"]["id"],
            email=email,
            role=role,
            access_token=body["access_token"],
            refresh_token=body["refresh_token"],
        )

    def make_admin(self) -> Account:
        """An admin, made the way the CLI makes one (nobody can register as admin), logged in."""
        email = f"admin-{uuid.uuid4().hex[:10]}@example.com"

        async def create() -> None:
            async with self.client.app.state.ctx.sessions() as session:
                await create_account(session, email, PASSWORD, "Admin", Role.ADMIN)

        self.client.portal.call(create)
        response = self.client.post(
            "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["account"]["role"] == "admin"
        return Account(
            id=body["account"]["id"],
            email=email,
            role="admin",
            access_token=body["access_token"],
            refresh_token=body["refresh_token"],
        )

    def unique_name(self, prefix: str = "s") -> str:
        return f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:8]}"

    def create_stream(self, owner: Account, **fields: Any) -> tuple[str, str]:
        name = fields.pop("name", None) or self.unique_name()
        response = self.client.post(
            "/api/v1/streams",
            json={"name": name, "title": f"Title of {name}", **fields},
            headers=owner.headers,
        )
        assert response.status_code == 201, response.text
        return name, response.json()["stream_key"]

    def invite(self, owner: Account, stream: str, **fields: Any) -> str:
        response = self.client.post(
            f"/api/v1/streams/{stream}/invites", json=fields, headers=owner.headers
        )
        assert response.status_code == 201, response.text
        return response.json()["code"]

    def register_node(self, account: Account, code: str, **fields: Any) -> Node:
        response = self.client.post(
            "/api/v1/nodes/register",
            json={"invite_code": code, "name": "test node", **fields},
            headers=account.headers,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        return Node(id=body["node_id"], token=body["node_token"], stream=body["stream"])

    def heartbeat_body(self, **fields: Any) -> dict[str, Any]:
        return {
            "connections": 3,
            "egress_bps": 4_000_000,
            "egress_cap_bps": 20_000_000,
            "version": "0.1.0",
            "public_url": "http://198.51.100.7:8080",
            **fields,
        }

    def set_status(self, owner: Account, stream: str, status: str) -> None:
        response = self.client.post(
            f"/api/v1/streams/{stream}/status", json={"status": status}, headers=owner.headers
        )
        assert response.status_code == 200, response.text

    def heartbeat(self, node: Node, **fields: Any) -> None:
        response = self.client.post(
            f"/api/v1/nodes/{node.id}/heartbeat",
            json=self.heartbeat_body(**fields),
            headers=node.headers,
        )
        assert response.status_code == 200, response.text

    def check_reachability(self, node: Node, **body: Any) -> dict[str, Any]:
        response = self.client.post(
            f"/api/v1/nodes/{node.id}/reachability", json=body, headers=node.headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    def relay(self, node: Node, host: NodeHost, **load: Any) -> None:
        """Make ``node`` a working relay: present (a heartbeat with ``load``), with a public URL
        on ``host`` that answers its health check, and checked reachable."""
        self.heartbeat(node, public_url=host.node_url(node.id), **load)
        verdict = self.check_reachability(node)
        assert verdict["status"] == "reachable", verdict

    def open_session(self, stream: str) -> dict[str, Any]:
        response = self.client.post(f"/api/v1/streams/{stream}/sessions")
        assert response.status_code == 201, response.text
        return response.json()

    def usage_report(self, stream: str, **fields: Any) -> dict[str, Any]:
        return {
            "report_id": f"r-{uuid.uuid4().hex}",
            "stream": stream,
            "period_start": "2026-01-01T00:00:00Z",
            "period_end": "2026-01-01T00:00:10Z",
            **fields,
        }


@pytest.fixture(scope="session")
def nodes_host() -> Iterator[NodeHost]:
    """One loopback HTTP server that answers health checks for any number of test nodes."""
    with node_host() as host:
        yield host


@pytest.fixture
def api(client: TestClient) -> Api:
    return Api(client)


def fresh_rate_window(window_s: float = 60, margin_s: float = 5) -> None:
    """Start a burst of throttled requests well inside one window of the fixed-window counters
    (``streamr_coordinator.ratelimit``), which start counting afresh on every window boundary."""
    left = window_s - time.monotonic() % window_s
    if left < margin_s:
        time.sleep(left + 0.05)


def assert_error(response: Any, status: int | None = None) -> dict[str, Any]:
    """Check the one shape every error answer has, and return its ``error`` object."""
    if status is not None:
        assert response.status_code == status, response.text
    assert response.status_code >= 400, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error.get("status"), int) and error["status"] == response.status_code, body
    assert isinstance(error.get("code"), str) and error["code"], body
    assert isinstance(error.get("message"), str) and error["message"].strip(), body
    return error
