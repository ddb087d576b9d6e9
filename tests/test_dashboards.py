"""The dashboards in a real headless Chromium against a real coordinator process.

The scenario is made over plain HTTP, as clients make it: a streamer with a stream whose title
is an HTML injection attempt, an invite, two friends with three nodes (one reachable, one not,
one that another node reported bad segments from), heartbeats, a viewer session and usage
reports posted with the node tokens. Each role then logs in through the login form and must see
its dashboard with real values and a drawn chart, with every asset served by the coordinator.
Screenshots (desktop and phone size) are kept in the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

playwright = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parent.parent
STREAMR = str(ROOT / ".venv/bin/streamr")
PASSWORD = "dashboard passphrase 1"
EVIL_TITLE = "Ann plays chess <img src=x onerror=alert(1)>"
EVIL_NODE = "bob's <script>alert(2)</script> node"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# Set to a directory to keep a copy of every screenshot there, for a person to look at.
KEEP_SCREENSHOTS = os.environ.get("STREAMR_TEST_SCREENSHOTS")


class _Health(BaseHTTPRequestHandler):
    """Answers /<node id>/health as that node would, so the coordinator finds it reachable."""

    def do_GET(self) -> None:
        node_id = self.path.strip("/").split("/")[0]
        body = json.dumps({"status": "ok", "node_id": node_id}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@contextmanager
def health_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class World:
    base: str
    streamer: str
    friend: str
    admin: str
    stream: str
    node_id: str  # bob's reachable node, its token, and a viewer it serves
    node_token: dict[str, str]
    session_id: str


def _ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


def _register(http: httpx.Client, email: str, name: str, role: str) -> dict[str, str]:
    body = {"email": email, "password": PASSWORD, "display_name": name, "role": role}
    token = _ok(http.post("/api/v1/auth/register", json=body), 201)["access_token"]
    return {"Authorization": f"Bearer {token}"}


def _node(http: httpx.Client, auth: dict[str, str], code: str, name: str) -> tuple[str, dict]:
    node = _ok(
        http.post("/api/v1/nodes/register", json={"invite_code": code, "name": name}, headers=auth),
        201,
    )
    return node["node_id"], {"Authorization": f"Bearer {node['node_token']}"}


def _beat(http: httpx.Client, node_id: str, token: dict, public_url: str, **load: int) -> None:
    body = {
        "connections": 3,
        "egress_bps": 6_000_000,
        "egress_cap_bps": 20_000_000,
        "version": "0.1.0",
        "public_url": public_url,
        **load,
    }
    _ok(http.post(f"/api/v1/nodes/{node_id}/heartbeat", json=body, headers=token))


def _report(http: httpx.Client, node_id: str, token: dict, stream: str, **fields) -> None:
    body = {
        "report_id": f"r-{uuid.uuid4().hex}",
        "stream": stream,
        "period_start": "2026-01-01T00:00:00Z",
        "period_end": "2026-01-01T00:00:10Z",
        **fields,
    }
    _ok(http.post(f"/api/v1/nodes/{node_id}/usage", json=body, headers=token))


def seed(base: str, env: dict[str, str], health_url: str) -> World:
    streamer, friend, carol = "ann@example.com", "bob@example.com", "carol@example.com"
    admin = "ops@example.com"
    subprocess.run(
        [STREAMR, "admin", "create", "--email", admin, "--display-name", "Ops", "--password-stdin"],
        input=PASSWORD,
        text=True,
        env=env,
        check=True,
        capture_output=True,
    )
    with httpx.Client(base_url=base, timeout=30) as http:
        ann = _register(http, streamer, "Ann", "streamer")
        bob = _register(http, friend, "Bob <b>the builder</b>", "friend")
        carol_auth = _register(http, carol, "Carol", "friend")
        _ok(
            http.post(
                "/api/v1/streams", json={"name": "ann-live", "title": EVIL_TITLE}, headers=ann
            ),
            201,
        )
        code = _ok(
            http.post(
                "/api/v1/streams/ann-live/invites",
                json={"label": "for Bob & Carol", "max_uses": 5},
                headers=ann,
            ),
            201,
        )["code"]
        home, home_token = _node(http, bob, code, EVIL_NODE)
        laptop, laptop_token = _node(http, bob, code, "bob-laptop")
        pi, pi_token = _node(http, carol_auth, code, "carol-pi")
        _beat(http, home, home_token, f"{health_url}/{home}")
        _beat(http, laptop, laptop_token, "http://127.0.0.1:9", connections=0, egress_bps=0)
        _beat(http, pi, pi_token, f"{health_url}/{pi}", connections=1, egress_bps=2_000_000)
        for node_id, token in ((home, home_token), (laptop, laptop_token), (pi, pi_token)):
            _ok(http.post(f"/api/v1/nodes/{node_id}/reachability", json={}, headers=token))

        _ok(http.post("/api/v1/streams/ann-live/status", json={"status": "LIVE"}, headers=ann))
        viewer = _ok(http.post("/api/v1/streams/ann-live/sessions"), 201)
        other = _ok(http.post("/api/v1/streams/ann-live/sessions"), 201)
        by_bob, by_carol = 3 * 1_500_000_000, 700_000_000
        for session in (viewer, other):
            line = {
                "session_id": session["session_id"],
                "bytes": by_bob // 2,
                "segments": 400,
                "requests": 400,
            }
            _report(http, home, home_token, "ann-live", sessions=[line])
        _report(
            http,
            pi,
            pi_token,
            "ann-live",
            sessions=[
                {
                    "session_id": viewer["session_id"],
                    "bytes": by_carol,
                    "segments": 90,
                    "requests": 90,
                }
            ],
        )
        # bob's node got a bad segment from carol's: carol's node is flagged for the operator.
        _report(
            http,
            home,
            home_token,
            "ann-live",
            integrity_failures=[
                {
                    "upstream_url": f"{health_url}/{pi}",
                    "upstream_node_id": pi,
                    "segment": "ann-live-7.ts",
                    "sequence": 7,
                    "reason": "sha256 <mismatch>",
                }
            ],
        )
        # What the viewer's page got from the origin, if this coordinator takes receipts.
        http.post(
            f"/api/v1/sessions/{viewer['session_id']}/receipts",
            json={
                "batch_id": f"b-{uuid.uuid4().hex}",
                "receipts": [
                    {
                        "source_kind": "origin",
                        "segment": "ann-live-1.ts",
                        "sequence": 1,
                        "bytes": 900_000_000,
                        "outcome": "ok",
                    }
                ],
            },
            headers={"X-Streamr-Session": viewer["token"]},
        )
    return World(
        base,
        streamer,
        friend,
        admin,
        "ann-live",
        home,
        home_token,
        viewer["session_id"],
    )


@pytest.fixture
def world(start_coordinator) -> Iterator[World]:
    with health_server() as health_url:
        base, env = start_coordinator(allow_private_node_urls="true")
        yield seed(base, env, health_url)


def log_in(page, base: str, email: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form.stack button[type=submit]")
    page.wait_for_load_state()


def wait_until_live(page) -> None:
    """The page's script has fetched its JSON, filled the page and drawn its charts."""
    page.wait_for_selector("body[data-updated]", timeout=20_000)
    page.wait_for_selector("canvas[data-rendered=true]", timeout=20_000)


def settle(page, viewport: dict[str, int]) -> None:
    """Resize, and let the charts follow (Chart.js resizes on the next animation frames)."""
    page.set_viewport_size(viewport)
    page.evaluate(
        "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"
    )


def shoot(page, tmp_path: Path, name: str) -> None:
    settle(page, DESKTOP)
    page.screenshot(path=str(tmp_path / f"dash-{name}.png"), full_page=True)
    settle(page, PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], (
        "the page is wider than a phone"
    )
    page.screenshot(path=str(tmp_path / f"dash-{name}-phone.png"), full_page=True)
    settle(page, DESKTOP)
    if KEEP_SCREENSHOTS:
        for suffix in ("", "-phone"):
            shutil.copy(tmp_path / f"dash-{name}{suffix}.png", KEEP_SCREENSHOTS)


def test_every_dashboard_renders_with_real_values(world: World, tmp_path: Path):
    requested: list[str] = []
    dialogs: list[str] = []
    problems: list[str] = []
    failed: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=DESKTOP)
            context.on("request", lambda request: requested.append(request.url))
            page = context.new_page()
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            # A script error or a Content-Security-Policy violation shows up here.
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on(
                "console",
                lambda message: (
                    problems.append(message.text)
                    if message.type == "error" and not message.text.startswith("Failed to load")
                    else None
                ),
            )
            page.on(
                "response",
                lambda response: (
                    failed.append(f"{response.status} {urlparse(response.url).path}")
                    if response.status >= 400
                    else None
                ),
            )

            # Public: the live stream (its title as text) and the leaderboard, display names.
            page.goto(f"{world.base}/")
            wait_until_live(page)
            card = page.locator(".stream-card").first
            assert card.locator(".title").inner_text() == EVIL_TITLE
            board = page.locator("tbody[data-rows=leaderboard]").inner_text()
            assert "Bob <b>the builder</b>" in board and "Carol" in board
            assert "4.5 GB" in board and "700.0 MB" in board
            assert "@example.com" not in page.content()
            shoot(page, tmp_path, "public")

            # Private pages send anonymous visitors to the login form.
            page.goto(f"{world.base}/dashboard/streamer")
            assert urlparse(page.url).path == "/login"

            # Streamer.
            log_in(page, world.base, world.streamer)
            assert urlparse(page.url).path == "/dashboard/streamer"
            wait_until_live(page)
            section = page.locator("section[data-stream=ann-live]")
            assert section.locator("h2").inner_text() == EVIL_TITLE
            assert section.locator("[data-field='bytes.friend_bytes_total']").inner_text() == (
                "5.2 GB"
            )
            # 5.2 GB at $0.02 per GB, in integer micro-dollars: $0.104.
            assert section.locator("[data-field='bytes.money_saved']").inner_text() == "$0.104"
            nodes = section.locator("tbody[data-rows=nodes]").inner_text()
            assert EVIL_NODE in nodes and "bob-laptop" in nodes and "carol-pi" in nodes
            assert "flagged" in nodes and "unreachable" in nodes and "healthy" in nodes
            assert "for Bob & Carol" in section.locator("tbody[data-rows=invites]").inner_text()
            assert "sk_" not in page.content(), "the key is hidden until asked for"
            shoot(page, tmp_path, "streamer")

            # "Show key" replaces the key and shows the new one, once.
            section.locator("details.reveal summary", has_text="Show key").click()
            section.get_by_role("button", name="Replace the key and show the new one").click()
            page.wait_for_selector("#secret")
            assert page.locator("#secret").inner_text().startswith("sk_")
            page.goto(f"{world.base}/dashboard/streamer")
            assert "sk_" not in page.content()

            # Friend: their nodes, what to fix, bytes per hour; trust and earnings to come.
            page.locator("header.top form button", has_text="Log out").click()
            page.wait_for_url(f"{world.base}/login")
            log_in(page, world.base, world.friend)
            assert urlparse(page.url).path == "/dashboard/friend"
            wait_until_live(page)
            cards = page.locator("article.node")
            assert cards.count() == 2
            text = page.locator("div.nodes").inner_text()
            assert EVIL_NODE in text and "reachable" in text and "refused" in text
            assert "Forward TCP port 9" in text, "the coordinator's advice, in plain words"
            assert page.locator("[data-field=delivered_bytes_total]").inner_text() == "4.5 GB"
            assert "Not computed yet" in page.locator("#totals").inner_text()
            assert "once payouts are enabled" in page.locator("#totals").inner_text()
            shoot(page, tmp_path, "friend")

            # Live: a new usage report shows up without a reload.
            with httpx.Client(base_url=world.base) as http:
                line = {
                    "session_id": world.session_id,
                    "bytes": 500_000_000,
                    "segments": 50,
                    "requests": 50,
                }
                _report(http, world.node_id, world.node_token, world.stream, sessions=[line])
            playwright.expect(page.locator("[data-field=delivered_bytes_total]")).to_have_text(
                "5.0 GB"
            )

            # Friends may not see the operator's page.
            page.goto(f"{world.base}/dashboard/operator")
            assert "Admins only" in page.locator("h1").inner_text()

            # Operator.
            page.goto(f"{world.base}/login")
            log_in(page, world.base, world.admin)
            assert urlparse(page.url).path == "/dashboard/operator"
            wait_until_live(page)
            flagged = page.locator("tbody[data-rows=flagged]").inner_text()
            assert "carol-pi" in flagged and "sha256 <mismatch>" in flagged
            assert "ann-live" in page.locator("tbody[data-rows=streams]").inner_text()
            assert page.locator("[data-field='totals.integrity_failures_24h']").inner_text() == "1"
            shoot(page, tmp_path, "operator")

            assert page.locator("img").count() == 0, "no value became an element"
        finally:
            browser.close()
    assert dialogs == [], f"a value ran as script: {dialogs}"
    assert problems == [], f"the pages logged errors: {problems}"
    assert failed == ["403 /dashboard/operator"], "only the friend's visit to the operator's page"
    hosts = {urlparse(url).hostname for url in requested if url.startswith("http")}
    assert hosts == {"127.0.0.1"}, f"the pages reached beyond the coordinator: {hosts}"
    assert any("/static/vendor/chart.js/" in url for url in requested)
