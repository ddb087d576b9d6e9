"""A friend node joins a real coordinator process through the node client's API client."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from streamr_node.coordinator_client import CoordinatorClient, CoordinatorError
from streamr_protocol.nodes import Heartbeat, NodeRegistration

PASSWORD = "friend passphrase 1"


@pytest.fixture(params=["sqlite", "postgresql+redis"])
def coordinator(request, start_coordinator):
    if request.param == "sqlite":
        return start_coordinator()[0]
    return start_coordinator(
        database_url=request.getfixturevalue("postgres_server").create_database(),
        redis_url=request.getfixturevalue("redis_server"),
    )[0]


def _setup(base: str) -> str:
    """A streamer, a stream and an invite, made over plain HTTP; returns the invite code."""
    with httpx.Client(base_url=base) as http:
        owner = http.post(
            "/api/v1/auth/register",
            json={"email": "s@example.com", "password": PASSWORD, "display_name": "S"},
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {owner}"}
        http.post("/api/v1/streams", json={"name": "joined", "title": "J"}, headers=auth)
        http.post(
            "/api/v1/auth/register",
            json={
                "email": "f@example.com",
                "password": PASSWORD,
                "display_name": "F",
                "role": "friend",
            },
        )
        return http.post("/api/v1/streams/joined/invites", json={}, headers=auth).json()["code"]


def test_node_lifecycle_through_the_client(coordinator):
    code = _setup(coordinator)

    async def scenario() -> None:
        async with CoordinatorClient(coordinator) as client:
            access = await client.login("f@example.com", PASSWORD)
            creds = await client.register(access, NodeRegistration(invite_code=code, name="home"))
            assert creds.stream == "joined"
            beat = Heartbeat(connections=1, egress_bps=10, egress_cap_bps=None, version="0.1.0")
            ack = await client.heartbeat(creds.node_id, creds.node_token, beat)
            assert ack.node_id == creds.node_id
            assert ack.received_at.tzinfo is not None

            with pytest.raises(CoordinatorError) as used:
                await client.register(access, NodeRegistration(invite_code=code))
            assert used.value.status == 410
            assert "used up" in str(used.value)

            await client.deregister(creds.node_id, creds.node_token)
            with pytest.raises(CoordinatorError) as gone:
                await client.heartbeat(creds.node_id, creds.node_token, beat)
            assert gone.value.status == 401

    asyncio.run(scenario())
