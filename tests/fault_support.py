"""What the fault tests (tests/test_fault_*.py) share: plain-HTTP nodes that heartbeat through
the API, a loopback server that answers their health checks, and the check that an answer given
during an outage is the coordinator's clean, retryable error.

The heartbeaters are the cheap stand-in for ``streamr-node`` processes where only presence and
routing matter: they register with an invite (``POST /api/v1/nodes/register``), pass the
reachability check against ``HealthHost`` and beat every ``interval_s``, recording every answer
(status, or the exception when none came within the client's timeout).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

PASSWORD = "a long passphrase"
# A request during an outage must be answered within this: a bound on a hang, not a timing.
ANSWER_DEADLINE_S = 10.0


class _HealthHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # /<node id>/health -> the node's own id, as streamr-node answers
        parts = self.path.strip("/").split("/")
        if len(parts) == 2 and parts[1] == "health":
            body = json.dumps({"status": "ok", "node_id": parts[0]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        else:
            body = b"not found"
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@contextmanager
def health_host(host: str = "127.0.0.1") -> Iterator[str]:
    """An HTTP server answering every node's health check; yields its base URL."""
    server = ThreadingHTTPServer((host, 0), _HealthHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def register(http: httpx.Client, role: str) -> dict[str, str]:
    """A new account's Authorization header."""
    answer = http.post(
        "/api/v1/auth/register",
        json={
            "email": f"{role}-{uuid.uuid4().hex[:10]}@example.com",
            "password": PASSWORD,
            "display_name": role.title(),
            "role": role,
        },
    )
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


@dataclass
class HttpNode:
    node_id: str
    token: str
    public_url: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Beat:
    at: float  # time.monotonic() when the answer (or the failure) came
    node_id: str
    status: int | None  # None: no answer (the exception is in ``error``)
    retry_after: str | None
    error: str | None = None


def live_stream_with_nodes(
    http: httpx.Client, health_url: str, count: int
) -> tuple[str, list[HttpNode]]:
    """A LIVE stream and ``count`` registered nodes that passed the reachability check (and
    beat once): routable. (stream name, nodes)."""
    streamer, friend = register(http, "streamer"), register(http, "friend")
    name = f"fault-{uuid.uuid4().hex[:8]}"
    created = http.post("/api/v1/streams", json={"name": name, "title": name}, headers=streamer)
    assert created.status_code == 201, created.text
    live = http.post(f"/api/v1/streams/{name}/status", json={"status": "LIVE"}, headers=streamer)
    assert live.status_code == 200, live.text
    invite = http.post(
        f"/api/v1/streams/{name}/invites", json={"max_uses": count}, headers=streamer
    )
    assert invite.status_code == 201, invite.text
    nodes = []
    for number in range(count):
        joined = http.post(
            "/api/v1/nodes/register",
            json={"invite_code": invite.json()["code"], "name": f"http node {number}"},
            headers=friend,
        )
        assert joined.status_code == 201, joined.text
        node_id = joined.json()["node_id"]
        node = HttpNode(node_id, joined.json()["node_token"], f"{health_url}/{node_id}")
        beat = http.post(
            f"/api/v1/nodes/{node_id}/heartbeat", json=heartbeat_body(node), headers=node.headers
        )
        assert beat.status_code == 200, beat.text
        # Its URL in the body, as streamr-node sends it: another replica may not have seen the
        # heartbeat yet (presence reaches Redis within a quarter of a second).
        checked = http.post(
            f"/api/v1/nodes/{node_id}/reachability",
            json={"public_url": node.public_url},
            headers=node.headers,
        )
        assert checked.status_code == 200, checked.text
        assert checked.json()["status"] == "reachable", checked.json()
        nodes.append(node)
    return name, nodes


def heartbeat_body(node: HttpNode) -> dict[str, object]:
    return {
        "connections": 0,
        "egress_bps": 0,
        "egress_cap_bps": 50_000_000,
        "version": "0.1.0",
        "public_url": node.public_url,
    }


@dataclass
class Heartbeaters:
    """Every node beats every ``interval_s`` from one thread, each answer recorded. With
    several base URLs (replicas), the beats take turns among them, as behind a load balancer."""

    base_urls: list[str]
    nodes: list[HttpNode]
    interval_s: float
    beats: list[Beat] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=ANSWER_DEADLINE_S * 2)

    def _run(self) -> None:
        turn = 0
        with httpx.Client(timeout=ANSWER_DEADLINE_S) as http:
            while not self._stop.is_set():
                for node in self.nodes:
                    base = self.base_urls[turn % len(self.base_urls)]
                    turn += 1
                    try:
                        answer = http.post(
                            f"{base}/api/v1/nodes/{node.node_id}/heartbeat",
                            json=heartbeat_body(node),
                            headers=node.headers,
                        )
                        beat = Beat(
                            time.monotonic(),
                            node.node_id,
                            answer.status_code,
                            answer.headers.get("retry-after"),
                        )
                    except httpx.HTTPError as exc:
                        beat = Beat(time.monotonic(), node.node_id, None, None, repr(exc))
                    self.beats.append(beat)
                self._stop.wait(self.interval_s)

    def since(self, at: float) -> list[Beat]:
        return [beat for beat in list(self.beats) if beat.at >= at]


def timed(send, *args, **kwargs) -> tuple[httpx.Response, float]:
    """``send(*args, **kwargs)`` and how long its answer took (seconds)."""
    started = time.monotonic()
    answer = send(*args, **kwargs)
    return answer, time.monotonic() - started


def assert_retryable(answer: httpx.Response, what: str) -> None:
    """The coordinator's answer while its storage is away: 503, Retry-After, the error shape."""
    assert answer.status_code == 503, f"{what}: {answer.status_code} {answer.text[:300]}"
    assert answer.headers.get("retry-after", "").isdigit(), f"{what}: no Retry-After"
    error = answer.json()["error"]
    assert error["status"] == 503 and error["code"] == "storage_unavailable", (what, error)
    assert error["message"], what
