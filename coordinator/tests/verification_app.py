"""A coordinator of its own for the verification tests, per database backend.

Reconciliation reads every node's activity by interval and moves one watermark, so these tests
get a database nobody else writes to, and no background worker racing them: each test drives
the jobs itself. Requests come from a public address (``PUBLIC``) so that network hashes exist;
``from_address`` switches it for a moment (a node and a viewer on different networks).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from streamr_coordinator.main import create_app
from streamr_protocol.ingest import SECRET_HEADER

from .conftest import make_settings

PUBLIC = ("203.0.113.9", 50000)


@pytest.fixture(scope="module")
def vclient(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: Any
) -> Iterator[TestClient]:
    url = (
        None
        if backend == "sqlite"
        else request.getfixturevalue("postgres_server").create_database()
    )
    settings = make_settings(
        tmp_path_factory.mktemp("verification"),
        url,
        run_background_jobs=False,
        reconcile_interval_s=10,
        reconcile_grace_s=0,
    )
    with TestClient(create_app(settings), client=PUBLIC) as client:
        yield client


@contextmanager
def from_address(client: TestClient, host: str) -> Iterator[None]:
    """Requests in this block come from ``host`` (TestClient has one fixed client address)."""
    transport = client._transport  # type: ignore[attr-defined]
    before = transport.client
    transport.client = (host, 50001)
    try:
        yield
    finally:
        transport.client = before


def attest(client: TestClient, stream: str, segments: list[tuple[int, bytes]]) -> None:
    """Report segments as the ingest does, so the coordinator signs them."""
    import hashlib

    body = {
        "segments": [
            {
                "stream": stream,
                "sequence": seq,
                "name": f"{seq}.ts",
                "duration_ms": 2000,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
            for seq, data in segments
        ]
    }
    secret = client.app.state.ctx.ingest_secret
    response = client.post("/api/v1/ingest/segments", json=body, headers={SECRET_HEADER: secret})
    assert response.status_code == 200, response.text
