"""The demo network for real (issue 5): `streamr demo` — coordinator, nginx-rtmp ingest, ffmpeg
test card and three `streamr-node` processes on loopback — with Chromium (Playwright) on the
pages the coordinator serves. One demo serves the whole module.

- The watch page plays for 30 s, at least 90 % of the segment bytes from friends' nodes. The
  share is read from the page's own counters (`window.streamrWatch.bytes`, bytes of segments
  that passed verification, by source kind) and checked again against the receipts the
  coordinator stored for the page's session (its SQLite database, read only).
- Every dashboard renders the demo's real data: the public page lists the live demo stream and
  the demo friend in the leaderboard once the nodes' usage reports arrived; the demo streamer
  (login from the banner) sees the stream LIVE, its three nodes and bytes from friends; the demo
  friend sees the three nodes; an admin made with `streamr admin create` against the demo's data
  directory sees the operator's page. Screenshots go to the test's tmp_path, with copies in
  /tmp/demo-net-*.png for a person to look at.
- Stalls are measured inside the page: video.currentTime is sampled every 250 ms, and a stall is
  the longest interval in which it did not advance once playback had started. The issue asks
  for playback to go on, on another node, with no stall of 4 s or more when the node serving
  the page is killed (SIGKILL). A node that hangs (SIGSTOP: connections are accepted, nothing
  is answered) is held to the same bar. `streamr demo` stops the whole network when any of its
  children exits, a node included, so the SIGKILL test is marked as an expected failure
  (strict, and only for that reason) until the demo lets a node die; it runs last.

Before the first page the demo must have run a little: until each node holds 8 segments (see
the fixture for why).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import httpx
import pytest

from tests.servers import free_port, wait_for_port

playwright = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parent.parent
STREAMR = str(ROOT / ".venv/bin/streamr")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--disable-gpu"]
DESKTOP = {"width": 1280, "height": 900}
STREAM = "demo"
NODES = 3
ADMIN_EMAIL = "ops@example.com"
ADMIN_PASSWORD = "demo network operator"
MAX_STALL_S = 4.0
FRIEND_SHARE = 0.90
KEEP_FOR_PEOPLE = Path("/tmp")  # copies of the screenshots, /tmp/demo-net-*.png

T = TypeVar("T")


def wait_for(check: Callable[[], T], what: str, timeout_s: float = 60, every_s: float = 0.5) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
        except (httpx.HTTPError, KeyError, ValueError, IndexError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(every_s)


# ---------------------------------------------------------------- the demo, once per module


@dataclass
class RunningDemo:
    process: subprocess.Popen
    coordinator: str
    origin: str
    env: dict[str, str]
    data_dir: Path
    log: Path
    logins: dict[str, tuple[str, str]] = field(default_factory=dict)  # "demo"/"friend"
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # by id: name, base_url

    def banner(self) -> str:
        return self.log.read_text(errors="replace")

    def open_session(self) -> dict[str, Any]:
        opened = httpx.post(f"{self.coordinator}/api/v1/streams/{STREAM}/sessions", timeout=10)
        assert opened.status_code == 201, opened.text
        return opened.json()

    def node_sources(self) -> dict[str, dict[str, Any]]:
        """The nodes a new viewer is sent to, by node id. (Each call opens a viewer session,
        and the coordinator allows an address 30 a minute: never call this in a loop.)"""
        return {s["node_id"]: s for s in self.open_session()["sources"] if s["kind"] == "node"}

    def nodes_online(self) -> int:
        answer = httpx.get(f"{self.coordinator}/api/v1/streams/{STREAM}/nodes", timeout=5)
        return int(answer.json()["online"])

    def stopped(self) -> str | None:
        """Why the demo stopped, if it did (its own line in the log, and its exit status)."""
        lines = [
            line
            for line in self.banner().splitlines()
            if line.startswith("streamr demo:") and line.endswith("stopping")
        ]
        if self.process.poll() is None and not lines:
            return None
        return f"{' / '.join(lines)} (demo exit status {self.process.poll()})"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[RunningDemo]:
    """`streamr demo --node-port 0` on free loopback ports, as tests/conftest.py's start_demo
    starts it, but once for the module; stopped with Ctrl-C, which must leave nothing behind."""
    workdir = tmp_path_factory.mktemp("demo-net")
    api, rtmp, origin, hooks = free_port(), free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}
    env |= {
        "STREAMR_DATA_DIR": str(workdir / "data"),
        "STREAMR_INGEST_RTMP_PORT": str(rtmp),
        "STREAMR_INGEST_HTTP_PORT": str(origin),
        "STREAMR_INGEST_HOOK_PORT": str(hooks),
        "STREAMR_INGEST_RTMP_URL": f"rtmp://127.0.0.1:{rtmp}/live",
    }
    log = workdir / "demo.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [STREAMR, "demo", "--port", str(api), "--node-port", "0"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = RunningDemo(
        process=process,
        coordinator=f"http://127.0.0.1:{api}",
        origin=f"http://127.0.0.1:{origin}",
        env=env,
        data_dir=workdir / "data",
        log=log,
    )
    try:
        wait_for_port(api, timeout_s=60, process=process)
        wait_for_port(origin, timeout_s=60, process=process)
        banner = wait_for(
            lambda: (text := running.banner()) and "Stop with Ctrl-C." in text and text,
            "the demo printed its banner",
        )
        for who in ("demo", "friend"):
            found = re.search(rf"{who} login:\s+(\S+@\S+) / (\S+)", banner)
            assert found, f"no {who} login in the banner:\n{banner}"
            running.logins[who] = (found[1], found[2])
        base = running.coordinator

        def on_air() -> bool:
            stream = httpx.get(f"{base}/api/v1/streams/{STREAM}", timeout=5).json()
            index = httpx.get(f"{base}/api/v1/streams/{STREAM}/segments", timeout=5).json()
            return stream["status"] == "LIVE" and len(index["segments"]) >= 3

        wait_for(on_air, "the demo stream is LIVE with signed segments", timeout_s=90)
        wait_for(lambda: running.nodes_online() == NODES, "the three demo nodes are online", 60)
        running.nodes = wait_for(
            lambda: len(found := running.node_sources()) == NODES and found,
            "a viewer is sent to the three nodes",
            every_s=3,
        )
        # The page's first playlist lists the newest 6 signed segments, and hls.js may start
        # with the oldest of them. A node that does not hold it answers 404, and the page then
        # leaves that node for 30 s. Nodes that started before the stream went live lose what
        # they took in the first seconds (their window restarts until their assignment says
        # LIVE), so wait until each holds more than the page can ask for.
        for node in running.nodes.values():
            wait_for(
                lambda url=node["base_url"]: (
                    httpx.get(f"{url}/stats", timeout=5).json()["window"]["segments"] >= 8
                ),
                f"{node['name']} holds the segments the page's first playlist lists",
            )
        yield running
    finally:
        process.send_signal(signal.SIGINT)  # a no-op if it already stopped
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        deadline = time.monotonic() + 10
        while True:
            leftovers = subprocess.run(
                ["pgrep", "-af", str(workdir)], capture_output=True, text=True
            ).stdout
            if leftovers == "" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert leftovers == "", f"processes outlived the demo: {leftovers}"


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def keep(page, tmp_path: Path, name: str) -> None:
    """A full-page screenshot in the test's tmp_path, and a copy in /tmp/demo-net-<name>.png."""
    path = tmp_path / f"demo-net-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    shutil.copy(path, KEEP_FOR_PEOPLE / path.name)


# ---------------------------------------------------------------- the watch page

# Samples video.currentTime every 250 ms inside the page (page.evaluate is not subject to the
# page's Content-Security-Policy; Playwright's wait_for_function is): [performance.now() in ms,
# currentTime, paused, the node id of the source of the last verified segment].
SAMPLER = """() => {
  const video = document.getElementById("video");
  window.__samples = [];
  setInterval(() => {
    const source = window.streamrWatch?.source ?? null;
    window.__samples.push([
      performance.now(), video.currentTime, video.paused, source ? source.node_id : null,
    ]);
  }, 250);
}"""


def longest_stall_s(samples: list[list[Any]], since_ms: float = 0.0) -> float:
    """The longest time video.currentTime stood still once playback had started, in seconds,
    counting only stalls that went on after ``since_ms`` (performance.now() in the page)."""
    longest, advanced_at, position = 0.0, None, None
    for at, current, _paused, _node in samples:
        if position is None or current > position:
            position = current
            if current > 0:
                advanced_at = at
        elif advanced_at is not None and at >= since_ms:
            longest = max(longest, at - advanced_at)
    return longest / 1000


def paused_once_playing(samples: list[list[Any]]) -> bool:
    started = [paused for _, current, paused, _ in samples if current > 0]
    return any(started)


class Watcher:
    """One watch page in its own browser context, sampled from the moment it loads."""

    def __init__(self, browser, url: str) -> None:
        self.context = browser.new_context(viewport=DESKTOP)
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.page.on("console", lambda message: self.console.append(message.text))
        self.page.goto(url)
        self.page.evaluate(SAMPLER)
        self.samples: list[list[Any]] = []

    def state(self) -> dict[str, Any]:
        return self.page.evaluate("JSON.parse(JSON.stringify(window.streamrWatch))")

    def drain(self) -> list[list[Any]]:
        self.samples += self.page.evaluate("window.__samples.splice(0)")
        return self.samples

    def now_ms(self) -> float:
        return float(self.page.evaluate("performance.now()"))

    def position(self) -> float:
        return float(self.page.evaluate("document.getElementById('video').currentTime"))

    def plays_for(self, seconds: float, timeout_s: float) -> None:
        """Until currentTime has advanced ``seconds`` from where playback started (a live
        stream's currentTime is its position in the stream, not 0 at the start)."""
        deadline = time.monotonic() + timeout_s
        while self.position() <= 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"playback never started: {self.state()} {self.console}")
            self.page.wait_for_timeout(250)
        start = self.position()
        while self.position() < start + seconds:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"playback did not advance {seconds} s from {start} within {timeout_s} s: "
                    f"at {self.position()}; {self.state()} {self.console[-20:]}"
                )
            self.page.wait_for_timeout(250)

    def close(self) -> None:
        self.context.close()


def stored_receipts(demo: RunningDemo, session_id: str) -> list[dict[str, Any]]:
    """The page's receipts as the coordinator stored them (its SQLite database, read only)."""
    database = demo.data_dir / "coordinator.sqlite3"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as connection:
        connection.row_factory = sqlite3.Row
        rows = connection.execute(
            "SELECT node_id, source_kind, segment, bytes, outcome FROM viewer_receipts "
            "WHERE session_id = ? ORDER BY id",
            (session_id,),
        )
        return [dict(row) for row in rows]


@dataclass
class Watched:
    """What the 30 s of playback gave: the page's state and samples, the stored receipts."""

    state: dict[str, Any]
    samples: list[list[Any]]
    receipts: list[dict[str, Any]]
    overlay: str
    share_text: str
    console: list[str]


@pytest.fixture(scope="module")
def watched(demo, browser, tmp_path_factory) -> Watched:
    """The watch page, played for 30 s; what it did is asserted by the test below, and the
    dashboards test relies on the bytes it made the nodes deliver."""
    shots = tmp_path_factory.mktemp("watch")
    watcher = Watcher(browser, f"{demo.coordinator}/watch/{STREAM}")
    try:
        watcher.plays_for(30, timeout_s=75)
        state = watcher.state()
        overlay = watcher.page.inner_text("#source-name")
        share_text = watcher.page.inner_text("#friend-share")
        keep(watcher.page, shots, "watch")
        samples = list(watcher.drain())
        played = state["bytes"]["node"] + state["bytes"]["origin"]

        def all_stored() -> list[dict[str, Any]]:
            found = stored_receipts(demo, state["sessionId"])
            ok = sum(r["bytes"] for r in found if r["outcome"] == "ok")
            return found if ok >= played else []

        receipts = wait_for(all_stored, "the page's receipts for the 30 s are stored", 30)
        return Watched(state, samples, receipts, overlay, share_text, list(watcher.console))
    finally:
        watcher.close()


def test_the_watch_page_plays_30_s_with_at_least_90_percent_from_friends_nodes(demo, watched):
    state = watched.state
    assert state["mode"] == "verified" and state["verification"] == "signature", state
    assert state["outcomes"]["mismatch"] == 0, state
    assert not [e for e in state["errors"] if e[1]], state["errors"]  # nothing fatal
    # The page's own counters: bytes of verified segments, by the kind of source that sent them.
    node_bytes, origin_bytes = state["bytes"]["node"], state["bytes"]["origin"]
    # 30 s of the 640x360 test card is well over a megabyte.
    assert node_bytes + origin_bytes > 1_000_000, state
    page_share = node_bytes / (node_bytes + origin_bytes)
    assert page_share >= FRIEND_SHARE, f"{page_share:.1%} from friends' nodes: {state}"
    # The coordinator's receipts for this session say the same.
    ok = [r for r in watched.receipts if r["outcome"] == "ok"]
    from_nodes = sum(r["bytes"] for r in ok if r["source_kind"] == "node")
    stored_share = from_nodes / sum(r["bytes"] for r in ok)
    assert stored_share >= FRIEND_SHARE, f"{stored_share:.1%} by the receipts: {ok}"
    stall = longest_stall_s(watched.samples)
    print(
        f"page: {node_bytes + origin_bytes} bytes, {page_share:.1%} from nodes; receipts: "
        f"{stored_share:.1%} from nodes; longest stall {stall:.2f} s"
    )
    demo_nodes = set(demo.nodes)
    assert {r["node_id"] for r in ok if r["source_kind"] == "node"} <= demo_nodes
    # The overlay names the demo node the last segment came from, and the friends' share.
    assert state["source"]["kind"] == "node" and state["source"]["node_id"] in demo_nodes
    assert watched.overlay == f"via {state['source']['name']}"
    assert watched.share_text == f"{round(100 * page_share)}% from friends"
    # Played without a stall, and the page's Content-Security-Policy was never violated.
    assert not paused_once_playing(watched.samples), "the video paused"
    assert stall < MAX_STALL_S, watched.samples
    assert not [m for m in watched.console if "Content Security Policy" in m], watched.console


# ---------------------------------------------------------------- the dashboards


def log_in(page, base: str, email: str, password: str, lands_on: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("form.stack button[type=submit]")
    page.wait_for_load_state()
    assert urlparse(page.url).path == lands_on, page.url


def log_out(page, base: str) -> None:
    page.locator("header.top form button", has_text="Log out").click()
    page.wait_for_url(f"{base}/login")


def rendered(page) -> None:
    """The page's script has fetched its JSON, filled the page and drawn its charts."""
    page.wait_for_selector("body[data-updated]", timeout=20_000)
    page.wait_for_selector("canvas[data-rendered=true]", timeout=20_000)


def dashboard_json(page, base: str, which: str) -> dict[str, Any]:
    """The JSON the page polls, with the page's own login cookie."""
    answer = page.request.get(f"{base}/api/v1/dashboards/{which}")
    assert answer.ok, answer.text()
    return answer.json()


def shows(page, selector: str, check: Callable[[str], bool], what: str, timeout_s: float = 45):
    """Wait (the page polls its JSON every 5 s) until ``selector``'s text passes ``check``."""
    return wait_for(
        lambda: check(text := page.locator(selector).first.inner_text()) and text,
        f"{what} (shown: {page.locator(selector).first.inner_text()!r})",
        timeout_s,
    )


def not_zero_bytes(text: str) -> bool:
    return text.strip() not in ("", "0 B", "—")


def test_every_dashboard_shows_the_running_demo_network(demo, watched, browser, tmp_path):
    base = demo.coordinator
    # An operator, made with the CLI against the demo's own data directory.
    made = subprocess.run(
        [STREAMR, "admin", "create", "--email", ADMIN_EMAIL, "--password-stdin"],
        input=ADMIN_PASSWORD,
        text=True,
        env=demo.env,
        capture_output=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    node_names = {f"demo-node-{n}" for n in range(1, NODES + 1)}
    problems: list[str] = []
    requested: list[str] = []
    context = browser.new_context(viewport=DESKTOP)
    context.on("request", lambda request: requested.append(request.url))
    page = context.new_page()
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    try:
        # Public: the live demo stream with its three nodes, and the demo friend on the
        # leaderboard once the nodes' usage reports (every 10 s) have arrived.
        page.goto(f"{base}/")
        rendered(page)
        card = page.locator(".stream-card", has=page.locator("[data-field=name]", has_text=STREAM))
        assert card.locator(".title").inner_text() == "StreamrP2P demo"
        assert card.locator("[data-field=nodes_online]").inner_text() == str(NODES)
        shows(page, "tbody[data-rows=leaderboard]", lambda t: "Demo friend" in t, "leaderboard")
        public = dashboard_json(page, base, "public")
        assert [s["name"] for s in public["live_streams"]] == [STREAM], public
        leader = next(e for e in public["leaderboard"] if e["display_name"] == "Demo friend")
        assert leader["delivered_bytes"] > 0 and leader["nodes"] >= 1, public
        assert "@example.com" not in page.content()
        keep(page, tmp_path, "public")

        # The demo streamer: the stream LIVE, its three nodes online, bytes from friends.
        email, password = demo.logins["demo"]
        log_in(page, base, email, password, "/dashboard/streamer")
        rendered(page)
        section = page.locator(f"section[data-stream={STREAM}]")
        assert section.locator("[data-field=status]").inner_text() == "LIVE"
        nodes_text = shows(
            page,
            f"section[data-stream={STREAM}] tbody[data-rows=nodes]",
            lambda t: all(name in t for name in node_names) and t.count("healthy") == NODES,
            "the three demo nodes, healthy",
        )
        assert "Demo friend" in nodes_text
        shows(
            page,
            f"section[data-stream={STREAM}] [data-field='bytes.friend_bytes_total']",
            not_zero_bytes,
            "bytes delivered by friends",
        )
        shows(
            page,
            f"section[data-stream={STREAM}] [data-field='bytes.friend_share_recent_percent']",
            lambda t: t.endswith(" %") and int(t.split()[0]) >= 90,
            "the friends' recent share, from the page's receipts",
        )
        streamer = dashboard_json(page, base, "streamer")
        (mine,) = [s for s in streamer["streams"] if s["name"] == STREAM]
        assert mine["status"] == "LIVE"
        assert {n["name"] for n in mine["nodes"] if n["online"]} == node_names, mine["nodes"]
        assert mine["bytes"]["friend_bytes_total"] > 0, mine["bytes"]
        assert mine["bytes"]["friend_share_recent_percent"] >= 90, mine["bytes"]
        assert "sk_" not in page.content(), "the key stays hidden"
        keep(page, tmp_path, "streamer")
        log_out(page, base)

        # The demo friend: the three nodes, online and reachable, and what they delivered.
        email, password = demo.logins["friend"]
        log_in(page, base, email, password, "/dashboard/friend")
        rendered(page)
        assert page.locator("article.node").count() == NODES
        cards = page.locator("div.nodes").inner_text()
        assert all(name in cards for name in node_names), cards
        shows(page, "[data-field=delivered_bytes_total]", not_zero_bytes, "bytes delivered")
        friend = dashboard_json(page, base, "friend")
        assert {n["name"] for n in friend["nodes"]} == node_names
        assert all(n["online"] and n["stream"] == STREAM for n in friend["nodes"]), friend
        assert all(n["reachable"] for n in friend["nodes"]), friend["nodes"]
        assert friend["delivered_bytes_total"] > 0
        keep(page, tmp_path, "friend")
        log_out(page, base)

        # The operator: every stream and node of the demo.
        log_in(page, base, ADMIN_EMAIL, ADMIN_PASSWORD, "/dashboard/operator")
        rendered(page)
        streams = page.locator("tbody[data-rows=streams]").inner_text()
        assert STREAM in streams and "LIVE" in streams, streams
        shows(
            page,
            "tbody[data-rows=nodes]",
            lambda t: all(name in t for name in node_names) and t.count("online") >= NODES,
            "the three demo nodes, online",
        )
        operator = dashboard_json(page, base, "operator")
        assert operator["totals"]["nodes_online"] == NODES, operator["totals"]
        assert operator["totals"]["nodes_registered"] == NODES, operator["totals"]
        assert operator["flagged"] == [], operator["flagged"]
        keep(page, tmp_path, "operator")
    finally:
        context.close()
    assert problems == [], f"the pages logged errors: {problems}"
    hosts = {urlparse(url).hostname for url in requested if url.startswith("http")}
    assert hosts == {"127.0.0.1"}, f"the pages reached beyond the demo: {hosts}"


# ---------------------------------------------------------------- a node goes away


def serving_node_pid(demo: RunningDemo, base_url: str) -> int:
    """The pid of the demo's node process listening at ``base_url`` (`ss -ltnp`), checked to
    be a child of this demo running on this demo's data directory."""
    port = urlparse(base_url).port
    listing = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    pids = {int(pid) for pid in re.findall(r"pid=(\d+)", listing)}
    assert len(pids) == 1, f"who listens on port {port}? {listing!r}"
    (pid,) = pids
    parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert parent == demo.process.pid, (pid, parent, cmdline)
    assert "streamr_node" in cmdline and str(demo.data_dir) in cmdline, cmdline
    return pid


@dataclass
class Failover:
    before: dict[str, Any]  # the page's source when the node went away
    after: dict[str, Any]  # the page's state some seconds later
    stall_s: float  # the longest stall that went on after the node went away
    samples: list[list[Any]]
    watcher: Watcher


@contextmanager
def serving_node_taken_away(
    demo: RunningDemo, browser, how: signal.Signals, then_play_s: float = 16
) -> Iterator[Failover]:
    """Play, send ``how`` to the node serving the page, play on while sampling."""
    watcher = Watcher(browser, f"{demo.coordinator}/watch/{STREAM}")
    try:
        watcher.plays_for(8, timeout_s=60)
        state = watcher.state()
        before = state["source"]
        assert before["kind"] == "node", state
        url = demo.nodes[before["node_id"]]["base_url"]
        pid = serving_node_pid(demo, url)
        at = watcher.now_ms()
        os.kill(pid, how)
        try:
            watcher.page.wait_for_timeout(then_play_s * 1000)
            samples = watcher.drain()
            after = [sample for sample in samples if sample[0] >= at]
            # The sampler ran all along (a page's timers can be throttled): about 4 a second.
            assert len(after) >= 3 * then_play_s, f"{len(after)} samples in {then_play_s} s"
            yield Failover(before, watcher.state(), longest_stall_s(samples, at), samples, watcher)
        finally:
            if how == signal.SIGSTOP:
                os.kill(pid, signal.SIGCONT)
    finally:
        watcher.close()


def test_a_node_that_hangs_is_left_for_another_node_without_a_stall(demo, browser, tmp_path):
    """SIGSTOP: the node's sockets still accept, nothing answers; the page's loader gives up on
    it after 3 s without a first byte, which the player's buffer must cover."""
    with serving_node_taken_away(demo, browser, signal.SIGSTOP) as gone:
        after = gone.after
        print(f"hung {gone.before['name']}: longest stall {gone.stall_s:.2f} s, now {after}")
        assert after["source"]["kind"] == "node", after["source"]
        assert after["source"]["node_id"] != gone.before["node_id"], after["source"]
        assert gone.stall_s < MAX_STALL_S, f"stalled {gone.stall_s:.2f} s: {gone.samples}"
        assert after["outcomes"]["stall"] + after["outcomes"]["error"] >= 1, after["outcomes"]
        assert not [e for e in after["errors"] if e[1]], after["errors"]
        keep(gone.watcher.page, tmp_path, "watch-after-hang")
    # The hung node resumed: all three serve again before the next test.
    wait_for(lambda: demo.nodes_online() == NODES, "the resumed node is online again", 60)


class DemoStoppedWithItsNode(AssertionError):
    """`streamr demo` stopped everything because one of its friend nodes died."""


def test_killing_the_node_that_serves_the_page_moves_it_to_another_node(demo, browser, tmp_path):
    """The issue's own requirement: SIGKILL the node serving the page; playback goes on, on
    another node, with no stall of 4 s or more. (Last in the module: it may end the demo.)"""
    with serving_node_taken_away(demo, browser, signal.SIGKILL) as gone:
        stopped = demo.stopped()
        if stopped is not None:
            raise DemoStoppedWithItsNode(
                f"{stopped}; the page then stalled {gone.stall_s:.1f} s and its source was "
                f"{gone.after['source']}"
            )
        after = gone.after
        print(f"killed {gone.before['name']}: longest stall {gone.stall_s:.2f} s, now {after}")
        assert after["source"]["kind"] == "node", after["source"]
        assert after["source"]["node_id"] != gone.before["node_id"], after["source"]
        assert gone.stall_s < MAX_STALL_S, f"stalled {gone.stall_s:.2f} s: {gone.samples}"
        assert not [e for e in after["errors"] if e[1]], after["errors"]
        keep(gone.watcher.page, tmp_path, "watch-after-kill")
