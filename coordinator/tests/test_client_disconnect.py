"""A client that hangs up before its body arrives is not a coordinator bug (bench/load)."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import ClientDisconnect

from streamr_coordinator.errors import install_error_handlers


def test_client_disconnect_is_answered_quietly(caplog):
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/cut")
    async def cut() -> None:
        raise ClientDisconnect()

    with caplog.at_level(logging.DEBUG), TestClient(app, raise_server_exceptions=True) as client:
        answer = client.post("/cut", content=b"{}")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "client_disconnected"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
