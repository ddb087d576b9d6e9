"""A friend node joins a real coordinator process through the node client's API client."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from streamr_node.coordinator_client import CoordinatorClient, CoordinatorError
from streamr_protocol.nodes import Heartbeat, NodeRegistration
from tests.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "friend passphrase 1"


@pytest.fixture(params=["sqlite", "postgresql+redis"])
def coordinator(request, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}
    env |= {"STREAMR_DATA_DIR": str(tmp_path), "STREAMR_PORT": str(port)}
    if request.param != "sqlite":
        env["STREAMR_DATABASE_URL"] = request.getfixturevalue("postgres_server").create_database()
        env["STREAMR_REDIS_URL"] = request.getfixturevalue("redis_server")
        migrate = subprocess.run(
            [str(ROOT / ".venv/bin/streamr"), "db", "upgrade"], env=env, capture_output=True
        )
        assert migrate.returncode == 0, migrate.stderr
    log = (tmp_path / "coordinator.log").open("w")
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/streamr"), "coordinator"], env=env, stdout=log, stderr=log
    )
    try:
        wait_for_port(port, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


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
