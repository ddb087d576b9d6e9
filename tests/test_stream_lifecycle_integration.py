r"""A stream's whole life against a real deployment: accounts, a stream, an invite, a friend's
node, a publish over RTMP that goes LIVE with signed segments at the origin, OFFLINE again.

    STREAMR_BASE_URL=https://api.example.org STREAMR_RTMP_URL=rtmp://rtmp.example.org:1935/live \
      .venv/bin/python -m pytest tests/test_stream_lifecycle_integration.py

Settings (environment):
- STREAMR_BASE_URL: the coordinator's public URL; without it every test here is skipped.
- STREAMR_RTMP_URL: the ingest's OBS server URL; without it the publishing test is skipped.
- STREAMR_ORIGIN_URL: the HLS origin (default: the base URL, as the cloud serves /hls/ there).
- STREAMR_SMOKE_EMAIL / STREAMR_SMOKE_PASSWORD: an existing streamer account to use; without
  them a fresh streamer account is registered. A fresh friend account is always registered.
- STREAMR_SMOKE_TEST_STREAM=1: create the stream as a test stream (TESTING instead of LIVE).

It creates a stream named smoke-<random> and deletes it (with its invite and node) at the end.
Publishing needs ffmpeg and this checkout's `streamr` (scripts/bootstrap.sh). Secrets (stream
key, node token, passwords) go only where the API wants them and are never printed.
tests/test_deployment_against_demo.py runs this module against the local demo network.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from streamr_protocol.attestation import (
    AttestationKey,
    SegmentIndex,
    public_key_from,
    verify_segment,
)

ROOT = Path(__file__).resolve().parent.parent
BASE_URL = os.environ.get("STREAMR_BASE_URL", "").rstrip("/")
RTMP_URL = os.environ.get("STREAMR_RTMP_URL", "")
ORIGIN_URL = (os.environ.get("STREAMR_ORIGIN_URL") or BASE_URL).rstrip("/")
TEST_STREAM = os.environ.get("STREAMR_SMOKE_TEST_STREAM") == "1"
ON_AIR = "TESTING" if TEST_STREAM else "LIVE"

pytestmark = pytest.mark.skipif(
    not BASE_URL, reason="set STREAMR_BASE_URL to the deployment's public URL to run it"
)
T = TypeVar("T")


def wait_for(check: Callable[[], T], what: str, timeout_s: float = 60) -> T:
    """Until ``check`` returns something true; that value. A deadline, not a timing."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.5)


class Account:
    """A logged-in account's calls; the password and tokens stay inside."""

    def __init__(self, http: httpx.Client, role: str, email: str = "", password: str = "") -> None:
        self.http = http
        if not email:
            email = f"smoke-{role}-{uuid.uuid4().hex[:10]}@example.com"
            password = f"smoke {uuid.uuid4().hex}"
            registered = http.post(
                "/api/v1/auth/register",
                json={
                    "email": email,
                    "password": password,
                    "display_name": "Smoke test",
                    "role": role,
                },
            )
            assert registered.status_code == 201, registered.json()["error"]["message"]
        login = http.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, "the smoke test account cannot log in"
        self.headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        self.email = email

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, headers=self.headers, **kw)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(base_url=BASE_URL, timeout=20) as client:
        yield client


@pytest.fixture(scope="module")
def streamer(http) -> Account:
    return Account(
        http,
        "streamer",
        os.environ.get("STREAMR_SMOKE_EMAIL", ""),
        os.environ.get("STREAMR_SMOKE_PASSWORD", ""),
    )


@pytest.fixture(scope="module")
def stream(streamer) -> Iterator[dict[str, Any]]:
    """A new stream (name and key), deleted again at the end of the module."""
    name = f"smoke-{uuid.uuid4().hex[:10]}"
    created = streamer.call(
        "POST",
        "/api/v1/streams",
        json={"name": name, "title": "Smoke test", "is_test": TEST_STREAM},
    )
    assert created.status_code == 201, created.json()["error"]["message"]
    body = created.json()
    yield {"name": name, "key": body["obs"]["stream_key"], "server": body["obs"]["server"]}
    deleted = wait_for(
        lambda: streamer.call("DELETE", f"/api/v1/streams/{name}").status_code in (204, 404),
        f"{name} can be deleted (it is not on air any more)",
        timeout_s=60,
    )
    assert deleted


def test_accounts_and_a_new_stream(http, streamer, stream):
    me = streamer.call("GET", "/api/v1/auth/me")
    assert me.status_code == 200 and me.json()["email"] == streamer.email
    shown = streamer.call("GET", f"/api/v1/streams/{stream['name']}").json()
    assert shown["status"] == "READY"
    assert ON_AIR in shown["allowed_transitions"]
    assert stream["key"].startswith("sk_")
    public = http.get(f"/api/v1/streams/{stream['name']}")
    assert public.status_code == 200 and stream["key"] not in public.text
    refused = streamer.call(
        "POST", f"/api/v1/streams/{stream['name']}/status", json={"status": "OFFLINE"}
    )
    assert refused.status_code == 409, "READY cannot go straight to OFFLINE"
    assert "LIVE" in refused.json()["error"]["message"] + str(refused.json()["error"]["details"])


def test_friend_joins_with_an_invite_and_is_present(http, streamer, stream):
    invite = streamer.call(
        "POST", f"/api/v1/streams/{stream['name']}/invites", json={"label": "smoke", "max_uses": 1}
    )
    assert invite.status_code == 201
    friend = Account(http, "friend")
    node = friend.call(
        "POST",
        "/api/v1/nodes/register",
        json={"invite_code": invite.json()["code"], "name": "smoke-node"},
    )
    assert node.status_code == 201, node.json()["error"]["message"]
    node_id, token = node.json()["node_id"], node.json()["node_token"]
    beat = http.post(
        f"/api/v1/nodes/{node_id}/heartbeat",
        headers={"Authorization": f"Bearer {token}"},
        json={"connections": 0, "egress_bps": 0, "version": "smoke", "public_url": None},
    )
    assert beat.status_code == 200, beat.text
    counts = http.get(f"/api/v1/streams/{stream['name']}/nodes").json()
    assert (counts["registered"], counts["online"]) == (1, 1)
    assert token not in http.get(f"/api/v1/streams/{stream['name']}/nodes").text


@pytest.mark.skipif(not RTMP_URL, reason="set STREAMR_RTMP_URL to publish a test card")
def test_publish_goes_live_with_signed_segments_then_offline(http, streamer, stream):
    name = stream["name"]
    card = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/streamr"),
            "stream",
            "push-test",
            name,
            "--key",
            "-",
            "--rtmp",
            RTMP_URL,
            "--seconds",
            "60",
            "--size",
            "320x180",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert card.stdin is not None
        card.stdin.write(stream["key"] + "\n")  # on stdin: never in a process listing
        card.stdin.close()
        card.stdin = None  # so that communicate() does not write to it again
        wait_for(
            lambda: http.get(f"/api/v1/streams/{name}").json()["status"] == ON_AIR,
            f"{name} is {ON_AIR}",
        )

        def listed() -> str | None:
            playlist = httpx.get(f"{ORIGIN_URL}/hls/{name}/index.m3u8", timeout=15)
            ok = playlist.status_code == 200 and playlist.text.count(".ts") >= 2
            return playlist.text if ok else None

        playlist = wait_for(listed, "the origin lists two segments")
        assert playlist.startswith("#EXTM3U") and stream["key"] not in playlist

        def signed() -> SegmentIndex | None:
            index = SegmentIndex(**http.get(f"/api/v1/streams/{name}/segments").json())
            return index if len(index.segments) >= 2 else None

        index = wait_for(signed, "two segments in the signed index")
        key = public_key_from(AttestationKey(**http.get("/api/v1/attestation/key").json()))
        entry = index.segments[-1]
        data = httpx.get(f"{ORIGIN_URL}/hls/{name}/{entry.name}", timeout=15)
        assert data.status_code == 200
        verify_segment(key, name, entry, data.content)  # raises unless it is what was signed
    finally:
        if card.poll() is None:
            card.send_signal(signal.SIGINT)  # like OBS's Stop: the stream ends cleanly
        try:
            card.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            card.kill()
            card.communicate()
    wait_for(
        lambda: http.get(f"/api/v1/streams/{name}").json()["status"] == "OFFLINE",
        f"{name} is OFFLINE after the publisher stopped",
    )
    history = [
        t["to_status"] for t in streamer.call("GET", f"/api/v1/streams/{name}/history").json()
    ]
    assert history[:2] == ["OFFLINE", ON_AIR], history
