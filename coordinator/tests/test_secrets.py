"""No secret (password, stream key, node token, invite code, refresh token) ever appears in a
public response, in the logs, or in the database in plain text."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from streamr_coordinator.logs import JsonFormatter
from streamr_coordinator.main import create_app
from streamr_coordinator.models import Base

from .conftest import PASSWORD, Api, make_settings


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_client(request, tmp_path):
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_server").create_database()
    with TestClient(create_app(make_settings(tmp_path, url))) as client:
        yield client


def _dump_database(client: TestClient) -> str:
    async def dump() -> str:
        rows = []
        async with client.app.state.ctx.sessions() as session:
            for table in Base.metadata.sorted_tables:
                result = await session.execute(text(f"SELECT * FROM {table.name}"))  # noqa: S608
                rows.extend(str(tuple(row)) for row in result)
        return "\n".join(rows)

    return client.portal.call(dump)


def test_secrets_stay_secret(fresh_client, caplog):
    caplog.set_level(logging.DEBUG)
    client = fresh_client
    api = Api(client)
    owner, friend, stranger = api.register(), api.register("friend"), api.register()
    name, first_key = api.create_stream(owner)
    rotated = client.post(f"/api/v1/streams/{name}/rotate-key", headers=owner.headers)
    second_key = rotated.json()["stream_key"]
    code = api.invite(owner, name)
    node = api.register_node(friend, code)
    client.post(
        f"/api/v1/nodes/{node.id}/heartbeat", json=api.heartbeat_body(), headers=node.headers
    )
    api.set_status(owner, name, "LIVE")
    viewer_token = api.open_session(name)["token"]
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    client.post("/api/v1/auth/logout", json={"refresh_token": refreshed.json()["refresh_token"]})
    # A failed login with a password-like string must not log it either.
    client.post("/api/v1/auth/login", json={"email": owner.email, "password": "Wr0ng-but-secret"})
    client.post("/api/v1/auth/register", json={"email": "x", "password": "sh0rt"})

    secrets = {
        "password": PASSWORD,
        "wrong password": "Wr0ng-but-secret",
        "short password": "sh0rt",
        "first stream key": first_key,
        "rotated stream key": second_key,
        "invite code": code,
        "node token": node.token,
        "refresh token": owner.refresh_token,
        "refreshed token": refreshed.json()["refresh_token"],
        "friend refresh token": friend.refresh_token,
        "viewer session token": viewer_token,
    }

    public_views = [
        client.get("/api/v1/streams").text,
        client.get(f"/api/v1/streams/{name}").text,
        client.get(f"/api/v1/streams/{name}/nodes").text,
        client.get(f"/api/v1/streams/{name}", headers=stranger.headers).text,
        client.get(f"/api/v1/streams/{name}/nodes", headers=stranger.headers).text,
        client.get(f"/api/v1/streams/{name}/nodes", headers=owner.headers).text,
        client.get(f"/api/v1/streams/{name}/invites", headers=owner.headers).text,
        client.get(f"/api/v1/nodes/{node.id}", headers=friend.headers).text,
        client.get("/.well-known/jwks.json").text,
        client.get("/openapi.json").text,
    ]
    formatter = JsonFormatter()
    logs = "\n".join(formatter.format(record) for record in caplog.records)
    assert "stream created" in logs and "node registered" in logs, "the logs were captured"
    database = _dump_database(client)
    assert node.id in database, "the database dump is real"

    for label, secret in secrets.items():
        for view in public_views:
            assert secret not in view, f"{label} leaked into a response"
        assert secret not in logs, f"{label} leaked into the logs"
        if "password" not in label:  # passwords are in no table at all, hashed or not
            assert secret not in database, f"{label} is stored in plain text"
    assert PASSWORD not in database
