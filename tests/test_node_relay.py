"""Friend nodes relay a live stream end to end: real nginx-rtmp ingest, coordinator, ffmpeg test
card and `streamr-node` processes on loopback.

- Two tiers: the second node pulls from the first (the coordinator's origin fan-out is 1 here);
  ffmpeg reads the second node's live playlist for 60 s without an error, and every segment
  either node serves matches the coordinator's signed index.
- A parent that alters bytes is caught: the altered segments are never served.
- `kill -9` in the middle of a stream, then a restart: the node resumes, and the coordinator
  counts exactly the bytes the viewer received — none lost, none twice. A graceful stop
  flushes the last report and leaves routing.
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from streamr_protocol.attestation import SegmentEntry, verify_segment
from streamr_protocol.playlist import parse
from tests.nodes import NodeProcess, invite, run_node, wait_until
from tests.stack import run_stack

pytestmark = pytest.mark.timeout(240)

FAST = {"origin_fanout": 1, "usage_report_interval_s": 1, "assignment_refresh_s": 1}
# A probe is a viewer session of its own, at a random time (mean 120 s by default): the
# browser test counts the sessions its node served, so this module's coordinator does not
# probe (probes have their own tests, and the fraud end-to-end test runs them for real).
NO_PROBES = {"probe_interval_s": 86_400, "targeted_probes_per_minute": 0}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with run_stack(tmp_path_factory.mktemp("relay"), **FAST, **NO_PROBES) as stack:
        yield stack


def signed_entries(stack, stream: str) -> dict[str, SegmentEntry]:
    index = stack.api.index(stream)
    return {entry.name: entry for entry in index.segments}


def verify_window(stack, node: NodeProcess, stream: str) -> int:
    """Fetch every listed segment from the node; each must match its signed entry."""
    playlist = parse(httpx.get(f"{node.url}/hls/{stream}/index.m3u8", timeout=10).text)
    entries = signed_entries(stack, stream)
    key = stack.api.public_key
    for segment in playlist.segments:
        data = httpx.get(f"{node.url}/hls/{stream}/{segment.uri}", timeout=10).content
        verify_segment(key, stream, entries[segment.uri], data)
    return len(playlist.segments)


def live_stream(stack, name: str, seconds: float) -> tuple[str, Any]:
    key = stack.api.create_stream(name)
    publisher = stack.publish(key, seconds)
    stack.wait_status(name, "LIVE")
    stack.wait_listed(name, 2)
    return key, publisher


def test_two_tiers_serve_a_live_stream_that_ffmpeg_reads_for_60_seconds(stack, tmp_path):
    stream = "two-tiers"
    live_stream(stack, stream, 150)
    code = invite(stack.api.http, stack.api.auth, stream)
    url = stack.coordinator.url
    with run_node(url, code, tmp_path, "first") as first:
        wait_until(lambda: first.stats()["window"]["segments"] >= 2, "the first node has segments")
        assert first.stats()["upstream"]["kind"] == "origin"
        with run_node(url, code, tmp_path, "second") as second:
            wait_until(
                lambda: second.stats()["upstream"]["node_id"] == first.node_id,
                "the second node is assigned the first as its parent",
            )
            wait_until(lambda: second.stats()["window"]["segments"] >= 3, "the second has some")

            reader = subprocess.run(
                [
                    "ffmpeg",
                    "-v",
                    "error",
                    "-nostdin",
                    "-i",
                    f"{second.url}/hls/{stream}/index.m3u8",
                    "-t",
                    "60",
                    "-f",
                    "null",
                    "-",
                ],
                capture_output=True,
                text=True,
                timeout=150,
            )
            assert reader.returncode == 0, reader.stderr
            assert reader.stderr.strip() == ""

            second_stats = second.stats()
            assert second_stats["upstream"]["kind"] == "node"
            assert second_stats["errors"]["integrity"] == 0
            assert second_stats["bytes"]["served_unattributed"] > 0  # ffmpeg had no session
            assert verify_window(stack, second, stream) >= 3
            assert verify_window(stack, first, stream) >= 3
            # The first node fetched each segment once from the origin, not once per reader.
            first_stats = first.stats()
            assert (
                first_stats["bytes"]["fetched_from_upstream"]
                < (first_stats["bytes"]["served_unattributed"]) * 2
            )


class TamperingParent:
    """A registered node that relays the origin but flips a byte in every other segment."""

    def __init__(self, stack, stream: str, code: str) -> None:
        from streamr_node.coordinator_client import CoordinatorClient
        from streamr_protocol.nodes import Heartbeat, NodeRegistration

        self.stream, self.origin = stream, stack.ingest.origin_url
        self.altered: set[str] = set()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

        import asyncio

        async def register() -> tuple[str, str]:
            async with CoordinatorClient(stack.coordinator.url) as client:
                await client.create_account("mallory@example.com", "a long passphrase", "M")
                access = await client.login("mallory@example.com", "a long passphrase")
                creds = await client.register(
                    access, NodeRegistration(invite_code=code, name="mallory", public_url=self.url)
                )
                return creds.node_id, creds.node_token

        self.node_id, self.token = asyncio.run(register())
        self._stop = threading.Event()

        async def beat_once() -> None:
            async with CoordinatorClient(stack.coordinator.url) as client:
                await client.heartbeat(
                    self.node_id,
                    self.token,
                    Heartbeat(connections=0, egress_bps=0, version="evil", public_url=self.url),
                )

        async def reachable() -> bool:
            async with CoordinatorClient(stack.coordinator.url) as client:
                verdict = await client.check_reachability(self.node_id, self.token, self.url)
                return verdict.reachable

        asyncio.run(beat_once())
        assert asyncio.run(reachable())

        def beat() -> None:
            while not self._stop.wait(2):
                asyncio.run(beat_once())

        threading.Thread(target=beat, daemon=True).start()

    def _handler(self):
        parent = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/health":
                    body = f'{{"status": "ok", "node_id": "{parent.node_id}"}}'.encode()
                else:
                    answer = httpx.get(parent.origin + self.path.split("?")[0], timeout=10)
                    if answer.status_code != 200:
                        self.send_response(answer.status_code)
                        self.end_headers()
                        return
                    body = answer.content
                    name = self.path.split("?")[0].rsplit("/", 1)[-1]
                    if name.endswith(".ts") and int(name.removesuffix(".ts")) % 2:
                        body = body[:100] + bytes([body[100] ^ 0xFF]) + body[101:]
                        parent.altered.add(name)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()


def test_a_parent_that_alters_segments_is_caught_and_its_bytes_never_served(stack, tmp_path):
    stream = "tampered"
    live_stream(stack, stream, 90)
    code = invite(stack.api.http, stack.api.auth, stream)
    parent = TamperingParent(stack, stream, code)
    try:
        with run_node(stack.coordinator.url, code, tmp_path, "victim") as node:
            wait_until(
                lambda: node.stats()["upstream"]["node_id"] == parent.node_id,
                "the node is assigned the tampering parent",
            )
            wait_until(lambda: node.stats()["errors"]["integrity"] >= 2, "tampering detected")
            wait_until(lambda: node.stats()["window"]["segments"] >= 4, "segments served")
            assert parent.altered, "the parent altered nothing; the test proves nothing"
            assert verify_window(stack, node, stream) >= 4
            # Every segment the parent altered and the node holds is the origin's version.
            entries = signed_entries(stack, stream)
            for name in parent.altered:
                answer = httpx.get(f"{node.url}/hls/{stream}/{name}", timeout=10)
                if answer.status_code == 200:
                    assert hashlib.sha256(answer.content).hexdigest() == entries[name].sha256
            assert node.events("segment from upstream failed verification; not served")
    finally:
        parent.close()


def _counted(stack, node: NodeProcess) -> int:
    answer = httpx.get(
        f"{stack.coordinator.url}/api/v1/nodes/{node.node_id}/usage",
        headers={"Authorization": f"Bearer {node.token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return int(answer.json()["counted_bytes"])


class Viewer:
    """Fetches each new segment once from a node with its session token, like a player."""

    def __init__(self, stack, stream: str) -> None:
        opened = httpx.post(f"{stack.coordinator.url}/api/v1/streams/{stream}/sessions", timeout=10)
        assert opened.status_code == 201, opened.text
        self.token = opened.json()["token"]
        self.stream = stream
        self.seen: set[str] = set()
        self.received = 0

    def watch(self, node: NodeProcess, segments: int) -> None:
        got = 0
        deadline = time.monotonic() + 60
        while got < segments and time.monotonic() < deadline:
            playlist = parse(httpx.get(f"{node.url}/hls/{self.stream}/index.m3u8", timeout=10).text)
            for segment in playlist.segments[-2:]:
                if segment.uri in self.seen:
                    continue
                answer = httpx.get(
                    f"{node.url}/hls/{self.stream}/{segment.uri}",
                    params={"session": self.token},
                    timeout=10,
                )
                assert answer.status_code == 200
                self.seen.add(segment.uri)
                self.received += len(answer.content)
                got += 1
            time.sleep(0.3)
        assert got >= segments


def test_kill_9_and_restart_lose_no_usage_and_count_none_twice(stack, tmp_path):
    stream = "crashing"
    live_stream(stack, stream, 120)
    code = invite(stack.api.http, stack.api.auth, stream)
    viewer = Viewer(stack, stream)
    with run_node(stack.coordinator.url, code, tmp_path, "crashy") as node:
        wait_until(lambda: node.stats()["window"]["segments"] >= 2, "the node has segments")
        viewer.watch(node, 3)
        node.kill()  # between two requests of the viewer, in the middle of the stream
        spool = node.data_dir / "spool"
        assert list(spool.glob("open-*.log")), "the open interval's journal survives kill -9"
        node.start()
        wait_until(lambda: node.stats()["window"]["segments"] >= 1, "the node resumes")
        viewer.watch(node, 3)
        wait_until(
            lambda: _counted(stack, node) == viewer.received,
            f"the coordinator counts the {viewer.received} bytes the viewer received",
        )
        time.sleep(2.5)  # two more reporting intervals: nothing more may be counted
        assert _counted(stack, node) == viewer.received

        assert node.stop() == 0  # graceful: flush, leave routing
        assert _counted(stack, node) == viewer.received
        nodes = httpx.get(f"{stack.coordinator.url}/api/v1/streams/{stream}/nodes").json()
        assert nodes["online"] == 0
        assert not list((node.data_dir / "spool" / "pending").glob("*.json"))


PLAYER_PAGE = """<!doctype html>
<meta charset="utf-8">
<video id="video" muted playsinline></video>
<script src="hls.min.js"></script>
<script>
  const params = new URLSearchParams(location.search);
  window.errors = [];
  window.fragments = 0;
  const video = document.getElementById("video");
  const session = params.get("session");
  const hls = new Hls({
    xhrSetup: (xhr) => { if (session) xhr.setRequestHeader("X-Streamr-Session", session); },
  });
  hls.on(Hls.Events.ERROR, (_, data) => {
    window.errors.push([data.details, data.fatal, String(data.error || "")]);
  });
  hls.on(Hls.Events.FRAG_LOADED, () => { window.fragments += 1; });
  hls.on(Hls.Events.MANIFEST_PARSED, () => video.play());
  hls.loadSource(params.get("src"));
  hls.attachMedia(video);
</script>
"""


@pytest.fixture
def player_page(tmp_path):
    """The page and hls.js (from npm, as everything the browser runs) on a loopback server."""
    import functools
    import shutil
    from http.server import SimpleHTTPRequestHandler

    from tests.nodes import ROOT

    (tmp_path / "player.html").write_text(PLAYER_PAGE)
    shutil.copy(ROOT / "node_modules/hls.js/dist/hls.min.js", tmp_path / "hls.min.js")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/player.html"
    server.shutdown()


def test_hls_js_in_chromium_plays_from_a_node_for_20_seconds(stack, tmp_path, player_page):
    from playwright.sync_api import sync_playwright

    stream = "in-browser"
    live_stream(stack, stream, 90)
    code = invite(stack.api.http, stack.api.auth, stream)
    viewer = Viewer(stack, stream)
    with run_node(stack.coordinator.url, code, tmp_path, "browser") as node:
        wait_until(lambda: node.stats()["window"]["segments"] >= 3, "the node has segments")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
            )
            page = browser.new_page()
            source = f"{node.url}/hls/{stream}/index.m3u8"
            page.goto(f"{player_page}?src={source}&session={viewer.token}")
            console = []
            page.on("console", lambda m: console.append(m.text))
            try:
                page.wait_for_function(
                    "document.getElementById('video').currentTime >= 20",
                    timeout=60_000,
                    polling=500,
                )
            except Exception:
                state = page.evaluate(
                    "[window.errors, window.fragments, document.querySelector('video').currentTime]"
                )
                raise AssertionError(f"{state} {console[-20:]}") from None
            errors = page.evaluate("window.errors")
            fragments = page.evaluate("window.fragments")
            page.screenshot(path=str(tmp_path / "player.png"))
            browser.close()
        assert not [e for e in errors if e[1]], errors  # nothing fatal
        assert fragments >= 10
        stats = node.stats()
        assert stats["viewers"]["active_sessions"] == 1
        assert stats["bytes"]["segments_to_sessions"] >= fragments - 1
