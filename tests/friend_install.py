"""What the distribution tests share: the single-file node, a stream to join, a clean environment.

``scripts/build-node.sh`` keeps a build whose inputs did not change, so building once per test
session costs a second after the first time.
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "friend's long passphrase"
STREAMER_PASSWORD = "streamer's long passphrase"


@functools.cache
def node_binary() -> Path:
    """The file ``scripts/build-node.sh`` builds (or kept), as its last line on stdout says."""
    result = subprocess.run(
        [str(ROOT / "scripts/build-node.sh")],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/build-node.sh failed:\n{result.stderr[-3000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def create_invite(base_url: str, stream: str = "friends-live") -> str:
    """A streamer, their stream and an invite for it, made over plain HTTP; the invite code."""
    with httpx.Client(base_url=base_url) as http:
        registered = http.post(
            "/api/v1/auth/register",
            json={"email": "s@example.com", "password": STREAMER_PASSWORD, "display_name": "S"},
        )
        assert registered.status_code == 201, registered.text
        auth = {"Authorization": f"Bearer {registered.json()['access_token']}"}
        created = http.post("/api/v1/streams", json={"name": stream, "title": "T"}, headers=auth)
        assert created.status_code == 201, created.text
        invite = http.post(f"/api/v1/streams/{stream}/invites", json={}, headers=auth)
        assert invite.status_code == 201, invite.text
        return str(invite.json()["code"])


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any StreamrP2P or XDG setting, in a throwaway HOME."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STREAMR_", "XDG_")) and k != "VIRTUAL_ENV"
    }
    home.mkdir(parents=True, exist_ok=True)
    return env | {"HOME": str(home)} | extra


def wait_for_health(port: int, process: subprocess.Popen, timeout_s: float = 60) -> dict:
    """The node's /health answer once it says "ok"; fails when the node exits first."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the node exited with status {process.returncode}")
        try:
            last = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            if last.status_code == 200 and last.json().get("status") == "ok":
                return dict(last.json())
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the node was not healthy within {timeout_s} s (last answer: {last})")


def wait_until_online(base_url: str, node_id: str, token: str, timeout_s: float = 30) -> dict:
    """The coordinator's view of the node once it shows the node online (its first heartbeat)."""
    deadline = time.monotonic() + timeout_s
    auth = {"Authorization": f"Bearer {token}"}
    while True:
        seen = httpx.get(f"{base_url}/api/v1/nodes/{node_id}", headers=auth, timeout=5)
        assert seen.status_code == 200, seen.text
        if seen.json()["online"] or time.monotonic() > deadline:
            return dict(seen.json())
        time.sleep(0.1)
