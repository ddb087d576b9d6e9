"""The dashboards in a real headless Chromium against a real coordinator process.

The scenario is made over plain HTTP, as clients make it: a streamer with a stream whose title
is an HTML injection attempt, an invite, two friends with three nodes (one reachable, one not,
one that another node reported bad segments from), heartbeats, a viewer session and usage
reports posted with the node tokens, and a funded budget. What the worker's jobs would write
(probes, reconciled intervals with a discrepancy, trust events, a warned and a penalised node,
job runs) goes into the coordinator's database, and the payouts services accrue the intervals
and run two payout cycles (one sends, one carries over). Each role then logs in through the
login form and must see its dashboard with real values and drawn charts, use its forms, and
download its statement, with every asset served by the coordinator. Screenshots (desktop and
phone size) are kept in the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from streamr_coordinator.database import create_engine, session_factory, utcnow
from streamr_coordinator.jobs.models import JobLease, JobRun
from streamr_coordinator.payouts.accrual import accrue_pending, full_pay
from streamr_coordinator.payouts.cycle import run_cycle
from streamr_coordinator.settings import Settings
from streamr_coordinator.verification.models import (
    Discrepancy,
    Probe,
    Reconciliation,
    TrustEvent,
    TrustState,
)

playwright = pytest.importorskip("playwright.sync_api")
GB = 1_000_000_000

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
    stream_id: str
    penalised_node: str  # carol's


async def _work_of_the_jobs(settings: Settings, world: World) -> None:
    """What the prober, reconciliation, trust update and worker write, then the real accrual
    and payout cycle: $1.35 sent to bob's node, then $0.36 carried over."""
    now = utcnow().replace(second=0, microsecond=0)
    engine = create_engine(settings.sqlalchemy_url)
    sessions = session_factory(engine)
    node, stream = world.node_id, world.stream_id
    try:
        async with sessions() as session:
            for i, (outcome, ttfb) in enumerate(
                [("ok", 35), ("ok", 48), ("timeout", None), ("ok", 41)]
            ):
                session.add(
                    Probe(
                        node_id=node,
                        stream_id=stream,
                        session_id=str(uuid.uuid4()),
                        reason="scheduled",
                        segment=f"ann-live-{i}.ts",
                        sequence=i,
                        started_at=now - timedelta(minutes=40 - 5 * i),
                        ttfb_ms=ttfb,
                        duration_ms=290 if ttfb else None,
                        bytes=870_000 if ttfb else 0,
                        throughput_bps=24_000_000 if ttfb else None,
                        outcome=outcome,
                        detail="" if ttfb else "no first byte within 10 s",
                    )
                )
            recs = [
                Reconciliation(
                    node_id=node,
                    stream_id=stream,
                    interval_start=now - timedelta(minutes=12 - i),
                    interval_end=now - timedelta(minutes=11 - i),
                    claimed_bytes=claimed,
                    receipted_bytes=receipted,
                    plausible_bytes=claimed,
                    paid_bytes=min(claimed, receipted),
                    outcome="agree" if receipted >= claimed else "disagree",
                    ratio=receipted / claimed,
                    excluded_sessions=0,
                )
                for i, (claimed, receipted) in enumerate([(30 * GB, 30 * GB), (2 * GB, 0)])
            ]
            session.add_all(recs)
            await session.flush()
            session.add(
                Discrepancy(
                    reconciliation_id=recs[1].id,
                    node_id=node,
                    kind="unreceipted_claim",
                    session_id=world.session_id,
                    claimed=2 * GB,
                    receipted=0,
                    evidence={"claimed": 2 * GB, "receipts": 0, "why": "<no receipts>"},
                )
            )
            for i, score in enumerate([0.95, 0.96, 0.93, 0.88, 0.84, 0.79, 0.74, 0.7]):
                session.add(
                    TrustEvent(
                        node_id=node,
                        at=now - timedelta(hours=7 - i),
                        source="probe" if i % 2 else "reconciliation",
                        success=1.0 if i < 2 else 0.0,
                        failure=0.0 if i < 2 else 1.0,
                        score=score,
                        level="good" if score >= 0.8 else "warned",
                        detail="receipts covered 0% of claimed bytes",
                    )
                )
            session.add_all(
                [
                    TrustState(
                        node_id=node,
                        alpha=7.0,
                        beta=3.0,
                        updated_at=now,
                        first_seen_at=now - timedelta(days=2),
                        probes_passed=12,
                        warned_at=now - timedelta(minutes=20),
                    ),
                    TrustState(
                        node_id=world.penalised_node,
                        alpha=5.0,
                        beta=5.0,
                        updated_at=now,
                        first_seen_at=now - timedelta(days=3),
                        probes_passed=11,
                        warned_at=now - timedelta(hours=3),
                        penalised_at=now - timedelta(hours=1),
                    ),
                    JobLease(
                        name="reconciliation",
                        holder="worker-a:4242:9f3c",
                        fence=2,
                        acquired_at=now,
                        expires_at=now + timedelta(hours=1),
                    ),
                    JobRun(
                        job="reconciliation",
                        holder="worker-a:4242:9f3c",
                        fence=1,
                        started_at=now - timedelta(seconds=15),
                        finished_at=now - timedelta(seconds=15),
                        duration_ms=38,
                        outcome="ok",
                    ),
                    JobRun(
                        job="reconciliation",
                        holder="worker-a:4242:9f3c",
                        fence=2,
                        started_at=now,
                        finished_at=now,
                        duration_ms=12,
                        outcome="error",
                        error="OperationalError: database is locked",
                    ),
                ]
            )
            await session.commit()
        await accrue_pending(sessions, settings, pay_factors=full_pay)
        await run_cycle(sessions, settings, now=utcnow())
        async with sessions() as session:
            session.add(
                Reconciliation(
                    node_id=node,
                    stream_id=stream,
                    interval_start=now - timedelta(minutes=5),
                    interval_end=now - timedelta(minutes=4),
                    claimed_bytes=8 * GB,
                    receipted_bytes=8 * GB,
                    plausible_bytes=8 * GB,
                    paid_bytes=8 * GB,
                    outcome="agree",
                    ratio=1.0,
                    excluded_sessions=0,
                )
            )
            await session.commit()
        await accrue_pending(sessions, settings, pay_factors=full_pay)
        await run_cycle(sessions, settings, now=utcnow() + timedelta(days=1))
    finally:
        await engine.dispose()


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
        stream_id = _ok(http.get("/api/v1/streams/ann-live", headers=ann))["id"]
        # $2 received from Ann: recorded as her stream's budget.
        funding = {"amount_micro_usd": 2_000_000, "funding_id": "ann-1", "note": "bank transfer"}
        _ok(http.post("/api/v1/streams/ann-live/budget", json=funding, headers=ann), 201)
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
    world = World(
        base,
        streamer,
        friend,
        admin,
        "ann-live",
        home,
        home_token,
        viewer["session_id"],
        stream_id,
        pi,
    )
    asyncio.run(_work_of_the_jobs(Settings(data_dir=Path(env["STREAMR_DATA_DIR"])), world))
    return world


@pytest.fixture
def world(start_coordinator) -> Iterator[World]:
    with health_server() as health_url:
        # No background jobs: the test writes what they would, so every amount is exact.
        base, env = start_coordinator(allow_private_node_urls="true", run_background_jobs="false")
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
            assert "Bob <b>the builder</b>" in board and "4.5 GB" in board
            assert "Carol" not in board, "her only node is penalised"
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
            assert "warned" in nodes and "penalised" in nodes, "each node's trust"
            banner = section.locator(".banner[role=alert]")
            assert banner.is_visible() and "Less than a tenth" in banner.inner_text()
            assert section.locator("[data-field='budget.balance']").inner_text() == "$0.10"
            spend = section.locator("tbody[data-rows=spend]").inner_text()
            assert EVIL_NODE in spend and "38.0 GB" in spend and "$1.90" in spend
            shoot(page, tmp_path, "streamer")

            # The streamer's statement downloads with the login cookie.
            with page.expect_download() as download:
                page.locator("a.button", has_text="Download CSV").click()
            rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
            assert [r["amount_micro_usd"] for r in rows if r["line"] == "funding"] == ["2000000"]

            # Recording funds received outside the platform, through the CSRF-protected form.
            section.locator("input[name=amount]").fill("3.50")
            section.locator("input[name=note]").fill("cash <b>at the meetup</b>")
            section.get_by_role("button", name="Record funds").click()
            page.wait_for_load_state()
            assert "Funds recorded" in page.locator(".notice").inner_text()
            section = page.locator("section[data-stream=ann-live]")
            assert section.locator("[data-field='budget.balance']").inner_text() == "$3.60"
            assert not section.locator(".banner[role=alert]").is_visible(), "ok again"

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
            page.wait_for_selector("canvas.trust-chart[data-rendered=true]", timeout=20_000)
            alerts = page.locator("#alerts")
            assert alerts.is_visible() and "Warning:" in alerts.inner_text()
            home_card = page.locator("article.node", has_text=EVIL_NODE)
            assert home_card.locator(".banner[role=alert]").is_visible()
            assert "warned" in home_card.locator(".node-head").inner_text()
            assert "70%" in home_card.inner_text()
            probes = home_card.locator("tbody[data-rows=probes]").inner_text()
            assert "timeout" in probes and "35 ms" in probes and "24.0 Mbit/s" in probes
            recs = home_card.locator("tbody[data-rows=reconciliations]").inner_text()
            assert "30.0 GB" in recs and "disagree" in recs and "unreceipted claim" in recs
            assert home_card.locator("[data-field='money.balance']").inner_text() == "$0.36"
            assert home_card.locator("[data-field='money.paid_out']").inner_text() == "$1.35"
            earnings = page.locator("#earnings").inner_text()
            assert "$1.71" in earnings and "carried over" in earnings and "sent" in earnings
            laptop = page.locator("article.node", has_text="bob-laptop")
            assert not laptop.locator(".banner[role=alert]").is_visible(), "vetting: no alert"
            shoot(page, tmp_path, "friend")

            # The friend's statement downloads with the login cookie.
            with page.expect_download() as download:
                page.locator("a.button", has_text="Download CSV").click()
            rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
            assert sum(int(r["amount_micro_usd"]) for r in rows if r["line"] == "accrual") == (
                1_710_000
            )

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
            jobs = page.locator("tbody[data-rows=jobs]").inner_text()
            assert "worker-a:4242:9f3c" in jobs and "database is locked" in jobs and "38 ms" in jobs
            assert (
                "unreceipted claim" in page.locator("tbody[data-rows=discrepancies]").inner_text()
            )
            assert "timeout" in page.locator("tbody[data-rows=probe_failures]").inner_text()
            assert page.locator("[data-field='money.fees']").inner_text() == "$0.19"
            assert page.locator("[data-field='money.books_balance']").inner_text() == "$0.00"
            assert "penalised" in page.locator("tbody[data-rows=nodes]").inner_text()
            shoot(page, tmp_path, "operator")

            # The economics form: a bad value is a page that says what to fix, not a 500.
            form = page.locator("#economics form")
            form.locator("input[name=rate_usd]").fill("five cents")
            form.get_by_role("button", name="Save as a new version").click()
            page.wait_for_load_state()
            assert "rate usd must be US dollars per GB" in page.locator("[role=alert]").inner_text()
            page.goto(f"{world.base}/dashboard/operator")
            form = page.locator("#economics form")
            form.locator("input[name=rate_usd]").fill("0.06")
            form.locator("input[name=note]").fill("test rate")
            form.get_by_role("button", name="Save as a new version").click()
            page.wait_for_load_state()
            wait_until_live(page)
            rate = page.locator("[data-field='economics.rate_per_gb']")
            assert rate.inner_text() == "$0.06"

            assert page.locator("img").count() == 0, "no value became an element"
        finally:
            browser.close()
    assert dialogs == [], f"a value ran as script: {dialogs}"
    assert problems == [], f"the pages logged errors: {problems}"
    assert failed == ["403 /dashboard/operator", "400 /dashboard/operator/economics"], (
        "only the friend's visit to the operator's page, and the bad economics form"
    )
    hosts = {urlparse(url).hostname for url in requested if url.startswith("http")}
    assert hosts == {"127.0.0.1"}, f"the pages reached beyond the coordinator: {hosts}"
    assert any("/static/vendor/chart.js/" in url for url in requested)
