"""The watch page end to end, in Chromium: real nginx-rtmp ingest, coordinator, ffmpeg test card,
`streamr-node` processes on loopback, and the page the coordinator serves (hls.js from npm).

- The page plays for 20 s from friends' nodes: the overlay names the node, and the coordinator
  stores the page's receipts (outcome ok, from that node). The node serving it is killed
  (`kill -9`): playback goes on, from the other node.
- A registered node that alters every segment: the page never plays its bytes (every receipt
  about it says mismatch), plays on from the next source, and the node is flagged: no viewer
  is sent to it any more, although it is still present and reachable.
- A browser without Media Source Extensions that plays HLS itself (Safari on older iPhones;
  Chromium plays HLS natively too, so it stands in with MSE hidden): the page plays the origin
  directly and says it cannot check segments there.
- Screenshots at desktop and phone size (in the test's tmp_path).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.nodes import invite, run_node, wait_until
from tests.stack import Stack, log_events, run_stack

pytestmark = pytest.mark.timeout(300)

CHROMIUM = "/usr/bin/chromium"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
STREAMS = ("watch-relay", "watch-tamper")


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    with run_stack(
        tmp_path_factory.mktemp("watch"),
        usage_report_interval_s=1,
        assignment_refresh_s=1,
        viewer_sessions_per_minute=1000,  # the tests open a session on every routing check
    ) as stack:
        # Both streams go live at once: each test then finds its stream already running.
        publishers = [stack.publish(stack.api.create_stream(name), 150) for name in STREAMS]
        for name in STREAMS:
            stack.wait_status(name, "LIVE")
            stack.wait_listed(name, 2)
        yield stack
        for publisher in publishers:
            publisher.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
        )
        yield browser
        browser.close()


class Watcher:
    """One watch page in its own browser context, with what it logged."""

    def __init__(self, browser, url: str, init_script: str | None = None, **context: Any) -> None:
        self.context = browser.new_context(**context)
        self.page = self.context.new_page()
        if init_script is not None:
            self.page.add_init_script(init_script)
        self.console: list[str] = []
        self.page.on("console", lambda message: self.console.append(message.text))
        self.page.goto(url)

    def state(self) -> dict[str, Any]:
        return self.page.evaluate("JSON.parse(JSON.stringify(window.streamrWatch))")

    def current_time(self) -> float:
        return float(self.page.evaluate("document.getElementById('video').currentTime"))

    def plays_until(self, seconds: float, timeout_s: float = 60) -> None:
        # Polled from here: Playwright's wait_for_function evaluates a string in the page, which
        # the page's Content-Security-Policy (rightly) forbids.
        deadline = time.monotonic() + timeout_s
        while self.current_time() < seconds:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"playback did not reach {seconds} s: {self.state()} {self.console[-20:]}"
                )
            self.page.wait_for_timeout(250)

    def plays_for(self, seconds: float, timeout_s: float = 60) -> None:
        """Until the video has advanced ``seconds`` from where it started. (A live stream's
        currentTime is its position in the stream, which is not 0 when playback starts.)"""
        self.plays_until(0.001, timeout_s)
        self.plays_until(self.current_time() + seconds, timeout_s)

    def text(self, selector: str) -> str:
        return self.page.inner_text(selector)

    def close(self) -> None:
        self.context.close()


def receipts(stack: Stack, session_id: str) -> list[dict[str, Any]]:
    """The page's receipts as the coordinator stored them (its SQLite database, read only)."""
    database = stack.data_dir / "coordinator.sqlite3"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        connection.row_factory = sqlite3.Row
        rows = connection.execute(
            "SELECT node_id, source_kind, segment, bytes, ttfb_ms, outcome FROM viewer_receipts "
            "WHERE session_id = ? ORDER BY id",
            (session_id,),
        )
        return [dict(row) for row in rows]


def routed_nodes(stack: Stack, stream: str) -> list[str | None]:
    """The sources a new viewer of ``stream`` is given, by node id (None: the origin)."""
    opened = httpx.post(f"{stack.coordinator.url}/api/v1/streams/{stream}/sessions", timeout=10)
    assert opened.status_code == 201, opened.text
    return [source["node_id"] for source in opened.json()["sources"]]


def test_the_page_plays_from_friends_nodes_and_moves_on_when_one_dies(stack, browser, tmp_path):
    stream = STREAMS[0]
    code = invite(stack.api.http, stack.api.auth, stream)
    url = stack.coordinator.url
    with (
        run_node(url, code, tmp_path, "alice-box") as alice,
        run_node(url, code, tmp_path, "bob-box") as bob,
    ):
        nodes = {alice.node_id: alice, bob.node_id: bob}
        wait_until(
            lambda: set(routed_nodes(stack, stream)) == {*nodes, None}, "both nodes are routed"
        )
        watcher = Watcher(browser, f"{url}/watch/{stream}", viewport=DESKTOP)
        try:
            watcher.plays_for(20)
            state = watcher.state()
            assert state["mode"] == "verified" and state["verification"] == "signature"
            assert state["source"]["kind"] == "node", state
            serving = nodes[state["source"]["node_id"]]
            survivor = next(n for n in nodes.values() if n is not serving)
            assert state["bytes"]["node"] > 0 and state["outcomes"]["mismatch"] == 0
            assert watcher.text("#source-name") == f"via {serving.name}"
            assert watcher.text("#friend-share").endswith("% from friends")
            assert not [m for m in watcher.console if "Content Security Policy" in m]
            watcher.page.screenshot(path=str(tmp_path / "watch-desktop.png"))
            stored = wait_until(
                lambda: [r for r in receipts(stack, state["sessionId"]) if r["outcome"] == "ok"],
                "the page's receipts are stored",
            )
            assert {r["node_id"] for r in stored} <= set(nodes), stored
            assert any(r["node_id"] == serving.node_id for r in stored)
            assert all(r["bytes"] > 0 and r["ttfb_ms"] is not None for r in stored)

            serving.kill()
            before = watcher.current_time()
            watcher.plays_until(before + 12)
            after = watcher.state()
            assert after["source"]["node_id"] == survivor.node_id, after
            assert watcher.text("#source-name") == f"via {survivor.name}"
            assert not [e for e in after["errors"] if e[1]], after["errors"]  # nothing fatal
            # The page told the coordinator what happened to the dead node.
            wait_until(
                lambda: any(
                    r["node_id"] == serving.node_id and r["outcome"] in ("error", "stall")
                    for r in receipts(stack, state["sessionId"])
                ),
                "a receipt reports the dead node's failure",
            )
        finally:
            watcher.close()

        phone = Watcher(
            browser,
            f"{url}/watch/{stream}",
            viewport=PHONE,
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
        )
        try:
            phone.plays_for(4)
            box = phone.page.locator("#video").bounding_box()
            assert box is not None and box["width"] == PHONE["width"], box
            overlay = phone.page.locator("#overlay").bounding_box()
            assert overlay is not None and overlay["x"] + overlay["width"] <= PHONE["width"]
            assert phone.text("#source-name") == f"via {survivor.name}"
            phone.page.screenshot(path=str(tmp_path / "watch-phone.png"))
        finally:
            phone.close()


class TamperingNode:
    """A registered, present and reachable node that flips a byte in every segment it serves.

    It reports far more spare capacity than any other node, so viewers are sent to it first.
    """

    def __init__(self, stack: Stack, stream: str, code: str) -> None:
        self.stream, self.origin = stream, stack.ingest.origin_url
        self.served: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.http = httpx.Client(base_url=stack.coordinator.url, timeout=10)
        registered = self.http.post(
            "/api/v1/auth/register",
            json={
                "email": f"mallory-{uuid.uuid4().hex[:6]}@example.com",
                "password": "a long passphrase",
                "display_name": "Mallory",
                "role": "friend",
            },
        )
        assert registered.status_code == 201, registered.text
        access = {"Authorization": f"Bearer {registered.json()['access_token']}"}
        node = self.http.post(
            "/api/v1/nodes/register",
            json={"invite_code": code, "name": "mallory", "public_url": self.url},
            headers=access,
        )
        assert node.status_code == 201, node.text
        self.node_id = node.json()["node_id"]
        self.auth = {"Authorization": f"Bearer {node.json()['node_token']}"}
        self._beat()
        checked = self.http.post(
            f"/api/v1/nodes/{self.node_id}/reachability", json={}, headers=self.auth
        )
        assert checked.json()["status"] == "reachable", checked.text
        self._stop = threading.Event()
        threading.Thread(target=self._beat_forever, daemon=True).start()

    def _beat(self) -> None:
        beat = self.http.post(
            f"/api/v1/nodes/{self.node_id}/heartbeat",
            json={
                "connections": 0,
                "egress_bps": 0,
                "egress_cap_bps": 10_000_000_000,
                "version": "evil",
                "public_url": self.url,
            },
            headers=self.auth,
        )
        assert beat.status_code == 200, beat.text

    def _beat_forever(self) -> None:
        while not self._stop.wait(2):
            self._beat()

    def _handler(self):
        node = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
                self.send_response(status)
                self.send_header("Access-Control-Allow-Origin", "*")
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_OPTIONS(self) -> None:
                self._send(204, Access_Control_Allow_Headers="X-Streamr-Session")

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/health":
                    body = json.dumps({"status": "ok", "node_id": node.node_id}).encode()
                    self._send(200, body, Content_Type="application/json")
                    return
                answer = httpx.get(node.origin + path, timeout=10)
                if answer.status_code != 200:
                    self._send(answer.status_code)
                    return
                body = answer.content
                if path.endswith(".ts"):
                    body = body[:100] + bytes([body[100] ^ 0xFF]) + body[101:]
                    node.served.append(path.rsplit("/", 1)[-1])
                self._send(200, body, Content_Type="video/mp2t")

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.http.close()


def test_a_node_that_alters_segments_is_never_played_and_is_flagged(stack, browser, tmp_path):
    stream = STREAMS[1]
    code = invite(stack.api.http, stack.api.auth, stream)
    with run_node(stack.coordinator.url, code, tmp_path, "honest-box") as honest:
        tamperer = TamperingNode(stack, stream, code)
        try:
            wait_until(
                lambda: routed_nodes(stack, stream) == [tamperer.node_id, honest.node_id, None],
                "new viewers are sent to the tampering node first",
            )
            watcher = Watcher(browser, f"{stack.coordinator.url}/watch/{stream}", viewport=DESKTOP)
            try:
                watcher.plays_for(10)
                state = watcher.state()
                assert state["outcomes"]["mismatch"] >= 1, state
                assert state["source"]["node_id"] == honest.node_id, state
                assert not [e for e in state["errors"] if e[1]], state["errors"]
            finally:
                watcher.close()
            assert tamperer.served, "the page never asked the tampering node; nothing proven"

            def settled() -> list[dict[str, Any]]:
                found = receipts(stack, state["sessionId"])
                mine = [r for r in found if r["node_id"] == tamperer.node_id]
                return found if mine and any(r["outcome"] == "ok" for r in found) else []

            stored = wait_until(settled, "the page's receipts are stored")
            about_tamperer = [r for r in stored if r["node_id"] == tamperer.node_id]
            assert {r["outcome"] for r in about_tamperer} == {"mismatch"}, about_tamperer
            assert any(r["node_id"] == honest.node_id and r["outcome"] == "ok" for r in stored)

            # The mismatch receipt made the coordinator probe the node at once; the probe got
            # altered bytes too, so the node is flagged: still present and reachable, but no
            # viewer is sent to it any more.
            nodes = httpx.get(f"{stack.coordinator.url}/api/v1/streams/{stream}/nodes").json()
            assert nodes["online"] == 2
            wait_until(
                lambda: routed_nodes(stack, stream) == [honest.node_id, None],
                "the probe confirms the mismatch and the node leaves routing",
            )
            flagged = log_events(
                stack.coordinator.log(),
                "viewer received segments that failed verification; nodes probed",
            )
            assert any(tamperer.node_id in event["node_ids"] for event in flagged), flagged
        finally:
            tamperer.close()


# Chromium plays HLS natively as Safari does; without MSE it is what an older iPhone looks like.
NO_MEDIA_SOURCE = """
for (const name of ["MediaSource", "ManagedMediaSource", "WebKitMediaSource"]) {
  Object.defineProperty(window, name, { value: undefined, configurable: true });
}
"""


def test_without_media_source_extensions_the_page_plays_the_origin_natively(stack, browser):
    stream = STREAMS[0]
    watcher = Watcher(
        browser, f"{stack.coordinator.url}/watch/{stream}", NO_MEDIA_SOURCE, viewport=PHONE
    )
    try:
        watcher.plays_for(4)
        state = watcher.state()
        assert state["mode"] == "origin-native", state
        src = watcher.page.evaluate("document.getElementById('video').currentSrc")
        assert src == f"{stack.ingest.origin_url}/hls/{stream}/index.m3u8"
        assert watcher.text("#source-name") == "via origin"
        assert "cannot check" in watcher.text("#note")
        assert receipts(stack, state["sessionId"]) == []  # nothing was checked, nothing receipted
    finally:
        watcher.close()
