"""The dashboards: login and logout with a cookie session, CSRF on every form, who sees which
page, escaping of every value users chose, and the numbers (money as exact integers).

A ``Browser`` keeps its own cookies and clears the shared test client's jar after each request,
so no session leaks into the other tests that share the client.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from streamr_coordinator.accounts.models import RefreshToken
from streamr_coordinator.credentials import secret_hash
from streamr_coordinator.dashboards.formatting import (
    format_bps,
    format_bytes,
    format_duration,
    slug,
)
from streamr_coordinator.dashboards.money import (
    bps_percent,
    format_usd,
    parse_percent,
    parse_usd,
    plain_usd,
    saved_micro_usd,
)
from streamr_coordinator.dashboards.service import hour_starts, share_percent
from streamr_coordinator.dashboards.standing import percent
from streamr_coordinator.database import utcnow
from streamr_coordinator.jobs.models import JobLease, JobRun
from streamr_coordinator.main import create_app
from streamr_coordinator.payouts.accrual import accrue_pending, full_pay
from streamr_coordinator.payouts.cycle import run_cycle
from streamr_coordinator.streams.models import Stream
from streamr_coordinator.usage.models import UsageReport
from streamr_coordinator.verification.models import (
    Discrepancy,
    Probe,
    Reconciliation,
    TrustEvent,
    TrustState,
)
from streamr_coordinator.viewers.models import Receipt, ReceiptBatch

from .browser import Browser
from .conftest import PASSWORD, Account, Api, Node, assert_error, fresh_rate_window, make_settings

EVIL = "<img src=x onerror=alert(1)>"
EVIL_ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


@dataclass
class Scene:
    api: Api
    owner: Account
    friend: Account
    admin: Account
    stream: str
    key: str
    node: Node

    def browser(self, account: Account | None = None) -> Browser:
        browser = Browser(self.api.client)
        if account is not None:
            assert browser.login(account.email).status_code == 303
        return browser


@pytest.fixture(scope="module")
def scene(client: TestClient) -> Scene:
    api = Api(client)
    owner, friend, admin = api.register("streamer"), api.register("friend"), api.make_admin()
    name, key = api.create_stream(owner, title=f"Chess {EVIL}")
    code = api.invite(owner, name, label=f"for {EVIL}", max_uses=5)
    node = api.register_node(friend, code, name=f"node {EVIL}")
    api.heartbeat(node)
    return Scene(api, owner, friend, admin, name, key, node)


@pytest.fixture
def browser(scene: Scene) -> Browser:
    return Browser(scene.api.client)


def stream_row(client: TestClient, name: str) -> Stream:
    async def read() -> Stream:
        async with client.app.state.ctx.sessions() as session:
            stream = await session.scalar(select(Stream).where(Stream.name == name))
            assert stream is not None
            return stream

    return client.portal.call(read)


def html_error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    found = re.search(r'role="alert">(.*?)</p>', response.text, re.S)
    assert found is not None, response.text
    return found.group(1)


# --- Login and logout ----------------------------------------------------------------------


def test_login_sets_an_httponly_lax_session_cookie_and_goes_to_the_role_page(scene: Scene):
    for account, home in (
        (scene.owner, "/dashboard/streamer"),
        (scene.friend, "/dashboard/friend"),
        (scene.admin, "/dashboard/operator"),
    ):
        browser = Browser(scene.api.client)
        response = browser.login(account.email)
        assert response.status_code == 303, response.text
        assert response.headers["location"] == home
        cookie = next(
            c for c in response.headers.get_list("set-cookie") if c.startswith("streamr_session=")
        )
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie, "the coordinator's public URL is not https"
        assert browser.get(home).status_code == 200


def test_login_returns_to_the_page_asked_for_but_never_elsewhere(scene: Scene):
    browser = Browser(scene.api.client)
    anonymous = browser.get("/dashboard/friend")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/login?next=%2Fdashboard%2Ffriend"
    assert browser.login(scene.owner.email, next="/dashboard/friend").headers["location"] == (
        "/dashboard/friend"
    )
    for elsewhere in ("https://evil.example/", "//evil.example", "/api/v1/auth/me", "javascript:x"):
        browser = Browser(scene.api.client)
        response = browser.login(scene.owner.email, next=elsewhere)
        assert response.headers["location"] == "/dashboard/streamer"


def test_a_wrong_password_shows_the_form_again_with_the_email_escaped(scene: Scene, browser):
    response = browser.login(scene.owner.email, password="not the password")
    assert response.status_code == 401
    assert "Email or password is wrong." in response.text
    assert "streamr_session" not in browser.cookies
    bad = browser.login(f'"><script>alert(1)</script>{EVIL}', password="x")
    assert bad.status_code == 400
    assert "<script>alert(1)" not in bad.text and EVIL not in bad.text
    assert "&lt;script&gt;" in bad.text


def test_the_login_form_needs_its_csrf_cookie_and_field(scene: Scene, browser):
    """Login CSRF: another site cannot log a victim into the attacker's account."""
    credentials = {"email": scene.owner.email, "password": PASSWORD}
    message = html_error(browser.post("/login", data=credentials), 403)
    assert "CSRF" in message and "Reload the login page" in message
    browser.get("/login")
    assert "streamr_login_csrf" in browser.cookies
    wrong = browser.post("/login", data={**credentials, "csrf_token": "x" * 43})
    html_error(wrong, 403)
    as_json = browser.post("/login", json={**credentials, "csrf_token": "x"})
    html_error(as_json, 403)
    assert "streamr_session" not in browser.cookies


def test_logout_revokes_the_session_on_the_server(scene: Scene):
    browser = scene.browser(scene.friend)
    token = browser.cookies["streamr_session"]
    csrf = browser.csrf()
    html_error(browser.post("/logout", data={}), 403)  # without its CSRF token: refused
    assert browser.get("/dashboard/friend").status_code == 200
    response = browser.post("/logout", data={"csrf_token": csrf})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert "streamr_session" not in browser.cookies
    # The cookie's value, replayed (a copy kept by someone), no longer works.
    replay = Browser(scene.api.client, {"streamr_session": token})
    assert replay.get("/dashboard/friend").status_code == 303
    assert_error(replay.get("/api/v1/dashboards/friend"), 401)

    async def stored() -> RefreshToken | None:
        async with scene.api.client.app.state.ctx.sessions() as session:
            return await session.scalar(
                select(RefreshToken).where(RefreshToken.token_hash == secret_hash(token))
            )

    row = scene.api.client.portal.call(stored)
    assert row is not None and row.revoked_at is not None, "stored only as a hash, and revoked"


def test_logging_out_everywhere_through_the_api_ends_dashboard_sessions(scene: Scene):
    friend = scene.api.register("friend")
    browser = scene.browser(friend)
    assert browser.get("/dashboard/friend").status_code == 200
    response = scene.api.client.post(
        "/api/v1/auth/logout", json={"refresh_token": friend.refresh_token, "everywhere": True}
    )
    assert response.status_code == 204
    assert browser.get("/dashboard/friend").status_code == 303


@pytest.mark.parametrize(
    "cookie", ["", "srt_unknown", "not-a-token", "srt_" + "x" * 400, "sk_abc", "\u00e9"]
)
def test_a_bad_session_cookie_is_just_anonymous(scene: Scene, cookie: str):
    browser = Browser(scene.api.client, {"streamr_session": cookie.encode().decode("latin-1")})
    assert browser.get("/dashboard/streamer").status_code == 303
    assert browser.get("/").status_code == 200
    assert_error(browser.get("/api/v1/dashboards/streamer"), 401)


# --- Who sees which page -------------------------------------------------------------------


def test_pages_by_role(scene: Scene):
    owner, friend, admin = (
        scene.browser(scene.owner),
        scene.browser(scene.friend),
        scene.browser(scene.admin),
    )
    assert owner.get("/dashboard/streamer").status_code == 200
    assert owner.get("/dashboard/friend").status_code == 200
    assert "Admins only" in owner.get("/dashboard/operator").text
    assert owner.get("/dashboard/operator").status_code == 403
    message = html_error(friend.get("/dashboard/streamer"), 403)
    assert "/dashboard/friend" in message
    assert friend.get("/dashboard/operator").status_code == 403
    for page in ("/", "/dashboard/streamer", "/dashboard/friend", "/dashboard/operator"):
        assert admin.get(page).status_code == 200, page


def test_pages_carry_a_strict_content_security_policy(scene: Scene):
    for page in ("/", "/login", "/dashboard/streamer"):
        response = scene.browser(scene.owner).get(page)
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
    private = scene.browser(scene.owner).get("/dashboard/streamer")
    assert private.headers["cache-control"] == "no-store"


# --- Forms: the stream key and invites, shown once, only with CSRF ---------------------------


def test_show_key_rotates_and_shows_the_new_key_once(scene: Scene):
    api = scene.api
    name, old_key = api.create_stream(scene.owner)
    browser = scene.browser(scene.owner)
    page = browser.get("/dashboard/streamer")
    assert old_key not in page.text and "sk_" not in page.text
    before = stream_row(api.client, name)

    refused = browser.post(f"/dashboard/streamer/streams/{name}/key", data={})
    assert "CSRF" in html_error(refused, 403)
    forged = browser.post(
        f"/dashboard/streamer/streams/{name}/key",
        data={"csrf_token": scene.browser(scene.friend).csrf()},  # another session's token
    )
    html_error(forged, 403)
    assert stream_row(api.client, name).key_hash == before.key_hash, "nothing changed"

    shown = browser.post(
        f"/dashboard/streamer/streams/{name}/key", data={"csrf_token": browser.csrf()}
    )
    assert shown.status_code == 200
    assert shown.headers["cache-control"] == "no-store"
    new_key = re.search(r'id="secret">(sk_[^<]+)<', shown.text)
    assert new_key is not None
    row = stream_row(api.client, name)
    assert row.key_hash == secret_hash(new_key.group(1)) != before.key_hash
    assert new_key.group(1) not in browser.get("/dashboard/streamer").text
    assert (
        new_key.group(1)
        not in api.client.get("/api/v1/dashboards/streamer", headers=scene.owner.headers).text
    )


@pytest.mark.parametrize("who", ["friend", "other_streamer"])
def test_only_the_owner_may_show_a_key_or_invite(scene: Scene, who: str):
    account = scene.friend if who == "friend" else scene.api.register("streamer")
    browser = scene.browser(account)
    csrf = browser.csrf()
    before = stream_row(scene.api.client, scene.stream).key_hash
    for action in ("key", "invites"):
        response = browser.post(
            f"/dashboard/streamer/streams/{scene.stream}/{action}", data={"csrf_token": csrf}
        )
        html_error(response, 403)
    assert stream_row(scene.api.client, scene.stream).key_hash == before


def test_an_admin_may_show_any_streams_key(scene: Scene):
    name, _ = scene.api.create_stream(scene.owner)
    browser = scene.browser(scene.admin)
    response = browser.post(
        f"/dashboard/streamer/streams/{name}/key", data={"csrf_token": browser.csrf()}
    )
    assert response.status_code == 200 and "sk_" in response.text


def test_create_invite_shows_the_code_once(scene: Scene):
    browser = scene.browser(scene.owner)
    csrf = browser.csrf()
    url = f"/dashboard/streamer/streams/{scene.stream}/invites"
    html_error(browser.post(url, data={"label": "x"}), 403)
    response = browser.post(
        url,
        data={"csrf_token": csrf, "label": f"<b>{EVIL}", "max_uses": "3", "expires_in_days": "2"},
    )
    assert response.status_code == 200
    code = re.search(r'id="secret">(inv_[^<]+)<', response.text)
    assert code is not None
    assert f"streamr-node join http://127.0.0.1:8000 --invite {code.group(1)}" in response.text
    listing = scene.api.client.get(
        f"/api/v1/streams/{scene.stream}/invites", headers=scene.owner.headers
    ).json()
    made = next(i for i in listing if i["label"] == f"<b>{EVIL}")
    assert made["max_uses"] == 3
    page = browser.get("/dashboard/streamer").text
    assert code.group(1) not in page
    assert f"&lt;b&gt;{EVIL_ESCAPED}" in page and EVIL not in page


@pytest.mark.parametrize(
    "fields",
    [
        {"max_uses": "0"},
        {"max_uses": "1001"},
        {"max_uses": "many"},
        {"max_uses": "1.5"},
        {"expires_in_days": "0"},
        {"expires_in_days": "91"},
        {"expires_in_days": "9" * 5000},
        {"label": "x" * 65},
    ],
)
def test_a_bad_invite_form_is_a_400_page(scene: Scene, fields: dict[str, str]):
    browser = scene.browser(scene.owner)
    response = browser.post(
        f"/dashboard/streamer/streams/{scene.stream}/invites",
        data={"csrf_token": browser.csrf(), **fields},
    )
    assert "1 to 1000 nodes" in html_error(response, 400)


def test_an_unknown_stream_in_a_form_is_a_404_page_that_escapes_the_name(scene: Scene):
    browser = scene.browser(scene.owner)
    response = browser.post(
        "/dashboard/streamer/streams/%3Cscript%3Ealert(1)/key",
        data={"csrf_token": browser.csrf()},
    )
    message = html_error(response, 404)
    assert "&lt;script&gt;" in message and "<script>" not in response.text


# --- Escaping --------------------------------------------------------------------------------


def test_every_value_users_chose_is_escaped_on_every_page(scene: Scene):
    api = scene.api
    evil_friend = api.register("friend")
    # A display name is chosen by its owner too.
    api.client.post(
        "/api/v1/auth/register",
        json={
            "email": f"e-{uuid.uuid4().hex[:8]}@example.com",
            "password": PASSWORD,
            "display_name": EVIL,
            "role": "friend",
        },
    )
    code = api.invite(scene.owner, scene.stream)
    evil_node = api.register_node(evil_friend, code, name=EVIL)
    api.heartbeat(evil_node, public_url="http://198.51.100.7:8080/<script>")
    pages = {
        "/": scene.browser(),
        "/dashboard/streamer": scene.browser(scene.owner),
        "/dashboard/friend": scene.browser(evil_friend),
        "/dashboard/operator": scene.browser(scene.admin),
    }
    for page, browser in pages.items():
        html = browser.get(page).text
        assert EVIL not in html, page
        assert "<script>" not in html.replace("<script src=", "").replace(
            '<script type="module"', ""
        ), page
    assert EVIL_ESCAPED in pages["/dashboard/streamer"].get("/dashboard/streamer").text
    assert EVIL_ESCAPED in pages["/dashboard/friend"].get("/dashboard/friend").text


# --- JSON and numbers ----------------------------------------------------------------------


def test_json_routes_take_the_cookie_or_a_token(scene: Scene):
    browser = scene.browser(scene.owner)
    by_cookie = browser.get("/api/v1/dashboards/streamer")
    by_token = scene.api.client.get("/api/v1/dashboards/streamer", headers=scene.owner.headers)
    assert by_cookie.status_code == by_token.status_code == 200
    names = {s["name"] for s in by_cookie.json()["streams"]}
    assert scene.stream in names and names == {s["name"] for s in by_token.json()["streams"]}
    assert scene.key not in by_cookie.text
    # A bad bearer token is an error even with a good cookie: the token was meant.
    bad = browser.get("/api/v1/dashboards/streamer", headers={"Authorization": "Bearer x.y.z"})
    assert_error(bad, 401)


def _insert(client: TestClient, *rows: Any) -> None:
    async def insert() -> None:
        async with client.app.state.ctx.sessions() as session:
            for row in rows:
                session.add(row)
                await session.flush()
            await session.commit()

    client.portal.call(insert)


def test_streamer_numbers_bytes_share_and_money(scene: Scene):
    api = scene.api
    owner = api.register("streamer")
    name, _ = api.create_stream(owner)
    node = api.register_node(scene.friend, api.invite(owner, name))
    api.set_status(owner, name, "LIVE")
    viewer = api.open_session(name)
    line = {
        "session_id": viewer["session_id"],
        "bytes": 2_600_000_000,
        "segments": 9,
        "requests": 9,
    }
    for _ in range(2):
        report = api.usage_report(name, sessions=[line])
        response = api.client.post(
            f"/api/v1/nodes/{node.id}/usage", json=report, headers=node.headers
        )
        assert response.status_code == 200
        # The same report again: counted once.
        api.client.post(f"/api/v1/nodes/{node.id}/usage", json=report, headers=node.headers)
    unknown = api.usage_report(name, sessions=[{**line, "session_id": "never-opened"}])
    api.client.post(f"/api/v1/nodes/{node.id}/usage", json=unknown, headers=node.headers)

    stream = stream_row(api.client, name)
    now = utcnow()
    old = now - timedelta(hours=30)
    batch = ReceiptBatch(session_id=viewer["session_id"], batch_id="b-12345678", receipts=3)
    _insert(api.client, batch)
    _insert(
        api.client,
        UsageReport(
            node_id=node.id,
            report_id="old-report-1",
            stream_id=stream.id,
            received_at=old,
            period_start=old,
            period_end=old,
            counted_bytes=1_000_000_000,
            counted_sessions=1,
            unknown_sessions=0,
            unattributed_bytes=0,
            unattributed_requests=0,
        ),
        *(
            Receipt(
                batch_pk=batch.id,
                session_id=viewer["session_id"],
                stream_id=stream.id,
                node_id=None,
                source_kind="origin",
                segment=f"{i}.ts",
                sequence=i,
                bytes=bytes_,
                outcome=outcome,
                received_at=when,
            )
            for i, (bytes_, outcome, when) in enumerate(
                [(1_300_000_000, "ok", now), (999, "error", now), (5_000, "ok", old)]
            )
        ),
    )

    body = api.client.get("/api/v1/dashboards/streamer", headers=owner.headers).json()
    (shown,) = body["streams"]
    money = shown["bytes"]
    assert money["friend_bytes_total"] == 6_200_000_000
    assert money["friend_bytes_24h"] == money["friend_bytes_recent"] == 5_200_000_000
    assert money["origin_bytes_recent"] == 1_300_000_000  # failed and pruned-age receipts aside
    assert money["friend_share_recent_percent"] == 80
    # 6.2 GB at $0.02/GB = $0.124 exactly, kept as integer micro-dollars.
    assert money["money_saved_micro_usd"] == 124_000 and money["money_saved"] == "$0.124"
    assert body["money_saved_micro_usd"] == 124_000
    assert shown["friend_bytes_by_hour"]["values"][-1] == 5_200_000_000
    assert sum(shown["friend_bytes_by_hour"]["values"]) == 5_200_000_000
    assert shown["origin_bytes_by_hour"][-1] == 1_300_000_000
    assert shown["origin_bytes_by_hour"][0] is None, "older than the receipts kept"
    assert shown["friend_share_by_hour"][-1] == 80
    assert shown["viewers"]["open_sessions"] == 1
    assert shown["viewers"]["served_by_friends_recently"] == 1
    (supporting,) = shown["nodes"]
    assert supporting["friend"] == "Friend" and "email" not in supporting

    friend = api.client.get("/api/v1/dashboards/friend", headers=scene.friend.headers).json()
    mine = next(n for n in friend["nodes"] if n["id"] == node.id)
    assert mine["delivered_bytes"] == 6_200_000_000
    assert mine["advice"] == [
        "Not checked yet: a running node asks for a check when it starts; run "
        "`streamr-node run` and look again in a minute."
    ]
    assert mine["trust"]["level"] == "vetting" and mine["trust"]["alert"] is False
    assert mine["trust"]["pay_percent"] == "50%", "the default vetting pay"
    assert mine["probes"] == [] and mine["reconciliations"] == [] and mine["trust_history"] == []
    assert mine["money"]["balance"] == "$0.00" and mine["budget"]["state"] == "exhausted"
    assert friend["statement_csv"] == "/dashboard/friend/statement.csv"

    public = api.client.get("/api/v1/dashboards/public").json()
    assert name in {s["name"] for s in public["live_streams"]}
    assert "@" not in str(public["leaderboard"]), "display names, never emails"


def test_operator_sees_flagged_nodes_and_error_rates(scene: Scene):
    api = scene.api
    owner = api.register("streamer")
    name, _ = api.create_stream(owner, title=f"Ops {EVIL}")
    code = api.invite(owner, name, max_uses=3)
    reporter = api.register_node(scene.friend, code, name="reporter")
    suspect = api.register_node(scene.friend, code, name="suspect")
    failure = {
        "upstream_url": "http://198.51.100.9:8090",
        "upstream_node_id": suspect.id,
        "segment": "9.ts",
        "sequence": 9,
        "reason": f"sha256 {EVIL}",
    }
    report = api.usage_report(name, integrity_failures=[failure, failure])
    response = api.client.post(
        f"/api/v1/nodes/{reporter.id}/usage", json=report, headers=reporter.headers
    )
    assert response.status_code == 200
    api.client.post(f"/api/v1/nodes/{suspect.id}/reachability", json={}, headers=suspect.headers)

    body = api.client.get("/api/v1/dashboards/operator", headers=scene.admin.headers).json()
    flagged = next(f for f in body["flagged"] if f["id"] == suspect.id)
    assert flagged["failures_24h"] == 2 and flagged["reported_by_nodes"] == 1
    assert flagged["last_reason"] == f"sha256 {EVIL}"
    assert next(n for n in body["nodes"] if n["id"] == suspect.id)["flagged"] is True
    assert next(n for n in body["nodes"] if n["id"] == reporter.id)["flagged"] is False
    assert body["error_rates"]["integrity_failures"][-1] >= 2
    assert body["error_rates"]["reachability_failures"][-1] >= 1
    assert len(body["error_rates"]["starts"]) == 24
    page = scene.browser(scene.admin).get("/dashboard/operator").text
    assert f"sha256 {EVIL_ESCAPED}" in page and EVIL not in page


# --- Pure parts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delivered", "price", "micro", "shown"),
    [
        (0, 20_000, 0, "$0.00"),
        (1_000_000_000, 20_000, 20_000, "$0.02"),
        (5_200_000_000, 20_000, 104_000, "$0.104"),
        (999_999_999, 20_000, 19_999, "$0.019999"),  # rounded down, never up
        (1, 1_000_000_000, 1, "$0.000001"),
        (10**18, 20_000, 20_000_000_000_000, "$20,000,000.00"),
        (123_456_789_012_345, 7, 864_197, "$0.864197"),
    ],
)
def test_money_is_exact_integer_arithmetic(delivered: int, price: int, micro: int, shown: str):
    saved = saved_micro_usd(delivered, price)
    assert saved == micro and type(saved) is int
    assert format_usd(saved) == shown


def test_money_refuses_negative_amounts():
    with pytest.raises(ValueError, match="never negative"):
        saved_micro_usd(-1, 20_000)
    assert format_usd(-1_500_000) == "-$1.50"


def test_formatting_and_hours():
    assert format_bytes(999) == "999 B" and format_bytes(4_500_000_000) == "4.5 GB"
    assert format_bytes(None) == "—" and format_bps(20_000_000) == "20.0 Mbit/s"
    assert slug("at capacity") == "at-capacity" and slug("<b>") == "b" and slug("") == "none"
    assert format_duration(21_600) == "6 hours" and format_duration(60) == "1 minute"
    assert format_duration(45) == "45 seconds"
    assert share_percent(0, 0) is None and share_percent(1, 2) == 33
    now = utcnow()
    starts = hour_starts(now)
    assert len(starts) == 24 and starts[-1] <= now < starts[-1] + timedelta(hours=1)
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(starts))


# --- Settings that change the cookie and the throttle ---------------------------------------


@pytest.fixture(scope="module")
def https_client(tmp_path_factory: Any) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path_factory.mktemp("https-coordinator"),
        None,
        public_url="https://coordinator.example",
        auth_attempts_per_minute=3,
        cdn_price_micro_usd_per_gb=1_000_000,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_the_cookie_is_secure_behind_https(https_client: TestClient):
    fresh_rate_window()
    account = Api(https_client).register("friend")
    response = Browser(https_client).login(account.email)
    assert response.status_code == 303, response.text
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("streamr_session=")
    )
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_login_attempts_through_the_form_are_throttled(https_client: TestClient):
    fresh_rate_window()
    browser = Browser(https_client)
    statuses = [browser.login("x@example.com", "wrong password").status_code for _ in range(4)]
    assert 429 in statuses, statuses
    throttled = browser.login("x@example.com", "wrong password")
    assert "Too many login attempts" in html_error(throttled, 429)
    assert throttled.headers["retry-after"] == "60"


def test_the_cdn_price_is_a_setting(https_client: TestClient):
    api = Api(https_client)
    owner = api.register("streamer")
    name, _ = api.create_stream(owner)
    body = https_client.get("/api/v1/dashboards/streamer", headers=owner.headers).json()
    assert body["cdn_price_micro_usd_per_gb"] == 1_000_000
    assert body["streams"][0]["name"] == name and body["money_saved"] == "$0.00"


# --- Trust, probes, reconciliations, money (a coordinator without background jobs) ----------


@pytest.fixture(scope="module")
def money_client(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: Any
) -> Iterator[TestClient]:
    """Its own coordinator, without background jobs: the test decides when accrual and the
    payout cycle run, so every amount below is exact."""
    url = None
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_server").create_database()
    settings = make_settings(
        tmp_path_factory.mktemp("dashboard-money"), url, run_background_jobs=False
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


GB = 1_000_000_000


@dataclass
class MoneyWorld:
    scene: Scene
    stream_id: str
    unfunded_stream: str
    other_friend: Account
    other_node: Node
    penalised_name: str


def _registered(api: Api, role: str, display_name: str) -> Account:
    email = f"{role}-{uuid.uuid4().hex[:10]}@example.com"
    response = api.client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "display_name": display_name, "role": role},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(body["account"]["id"], email, role, body["access_token"], body["refresh_token"])


def seed_verification(client: TestClient, node_id: str, stream_id: str) -> None:
    """What verification writes for a node: probes, reconciled intervals with a discrepancy,
    trust events falling below the warning line, and a warned trust state."""
    now = utcnow().replace(second=0, microsecond=0)

    async def insert() -> None:
        async with client.app.state.ctx.sessions() as session:
            session.add_all(
                [
                    Probe(
                        node_id=node_id,
                        stream_id=stream_id,
                        session_id=str(uuid.uuid4()),
                        reason="scheduled",
                        segment=f"{i}.ts",
                        sequence=i,
                        started_at=now - timedelta(minutes=30 - i),
                        ttfb_ms=ttfb,
                        duration_ms=300 if ttfb else None,
                        bytes=900_000 if ttfb else 0,
                        throughput_bps=24_000_000 if ttfb else None,
                        outcome=outcome,
                        detail=detail,
                    )
                    for i, (outcome, ttfb, detail) in enumerate(
                        [("ok", 35, ""), ("ok", 41, ""), ("timeout", None, f"no answer {EVIL}")]
                    )
                ]
            )
            recs = [
                Reconciliation(
                    node_id=node_id,
                    stream_id=stream_id,
                    interval_start=now - timedelta(minutes=10 - i),
                    interval_end=now - timedelta(minutes=9 - i),
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
                    node_id=node_id,
                    kind="unreceipted_claim",
                    session_id="s-1",
                    claimed=2 * GB,
                    receipted=0,
                    evidence={"note": EVIL},
                )
            )
            for i, score in enumerate([0.95, 0.9, 0.84, 0.78, 0.7]):
                session.add(
                    TrustEvent(
                        node_id=node_id,
                        at=now - timedelta(minutes=50 - 10 * i),
                        source="reconciliation",
                        success=0.0,
                        failure=1.0,
                        score=score,
                        level="good" if score >= 0.8 else "warned",
                        detail="receipts covered 0% of claimed bytes",
                    )
                )
            session.add(
                TrustState(
                    node_id=node_id,
                    alpha=7.0,
                    beta=3.0,
                    updated_at=now,
                    first_seen_at=now - timedelta(days=2),
                    probes_passed=12,
                    warned_at=now - timedelta(minutes=5),
                )
            )
            session.add_all(
                [
                    JobLease(
                        name="reconciliation",
                        holder="worker-a:17:abc",
                        fence=2,
                        acquired_at=now,
                        # Held for as long as the module's tests may take on a busy machine: the
                        # page must show it held whenever it is asked.
                        expires_at=now + timedelta(hours=1),
                    ),
                    JobRun(
                        job="reconciliation",
                        holder="worker-a:17:abc",
                        fence=1,
                        started_at=now - timedelta(minutes=1),
                        finished_at=now - timedelta(minutes=1),
                        duration_ms=42,
                        outcome="ok",
                    ),
                    JobRun(
                        job="reconciliation",
                        holder="worker-a:17:abc",
                        fence=2,
                        started_at=now,
                        finished_at=now,
                        duration_ms=7,
                        outcome="error",
                        error=f"database gone {EVIL}",
                    ),
                ]
            )
            await session.commit()

    client.portal.call(insert)


def penalise(client: TestClient, node_id: str) -> None:
    now = utcnow()

    async def insert() -> None:
        async with client.app.state.ctx.sessions() as session:
            session.add(
                TrustState(
                    node_id=node_id,
                    alpha=5.0,
                    beta=5.0,
                    updated_at=now,
                    first_seen_at=now - timedelta(days=3),
                    probes_passed=12,
                    warned_at=now - timedelta(hours=3),
                    penalised_at=now - timedelta(hours=1),
                )
            )
            await session.commit()

    client.portal.call(insert)


def run_money_jobs(client: TestClient, now: Any = None) -> None:
    ctx = client.app.state.ctx

    async def run() -> None:
        await accrue_pending(ctx.sessions, ctx.settings, pay_factors=full_pay)
        await run_cycle(ctx.sessions, ctx.settings, now=now or utcnow())

    client.portal.call(run)


def add_interval(client: TestClient, node_id: str, stream_id: str, paid: int) -> None:
    start = utcnow().replace(second=0, microsecond=0) - timedelta(minutes=3)

    async def insert() -> None:
        async with client.app.state.ctx.sessions() as session:
            session.add(
                Reconciliation(
                    node_id=node_id,
                    stream_id=stream_id,
                    interval_start=start,
                    interval_end=start + timedelta(minutes=1),
                    claimed_bytes=paid,
                    receipted_bytes=paid,
                    plausible_bytes=paid,
                    paid_bytes=paid,
                    outcome="agree",
                    ratio=1.0,
                    excluded_sessions=0,
                )
            )
            await session.commit()

    client.portal.call(insert)


@pytest.fixture(scope="module")
def money(money_client: TestClient) -> MoneyWorld:
    """$2 funded through the page's form; 30 GB paid ($1.50: $1.35 to the friend, sent by the
    first cycle), then 8 GB ($0.40: $0.36, under the $1 minimum, carried over by the next);
    $0.10 left, so the budget is low. A second stream was never funded."""
    api = Api(money_client)
    owner = api.register("streamer")
    friend = _registered(api, "friend", "Fay")
    admin = api.make_admin()
    name, key = api.create_stream(owner, title=f"Chess {EVIL}")
    node = api.register_node(friend, api.invite(owner, name, max_uses=5), name=f"node {EVIL}")
    api.heartbeat(node)
    stream_id = money_client.get(f"/api/v1/streams/{name}", headers=owner.headers).json()["id"]
    scene = Scene(api, owner, friend, admin, name, key, node)
    browser = scene.browser(owner)
    response = browser.post(
        f"/dashboard/streamer/streams/{name}/budget",
        data={"csrf_token": browser.csrf(), "amount": "$2.00", "funding_id": "f-1", "note": "cash"},
    )
    assert response.status_code == 200, response.text
    seed_verification(money_client, node.id, stream_id)
    run_money_jobs(money_client)
    add_interval(money_client, node.id, stream_id, 8 * GB)
    run_money_jobs(money_client, now=utcnow() + timedelta(days=1))

    unfunded, _ = api.create_stream(owner, title="Unfunded")
    other_friend = _registered(api, "friend", "Penny Penalised")
    other_node = api.register_node(other_friend, api.invite(owner, unfunded), name="penny-node")
    api.set_status(owner, unfunded, "LIVE")
    viewer = api.open_session(unfunded)
    line = {"session_id": viewer["session_id"], "bytes": 5 * GB, "segments": 9, "requests": 9}
    report = api.usage_report(unfunded, sessions=[line])
    response = money_client.post(
        f"/api/v1/nodes/{other_node.id}/usage", json=report, headers=other_node.headers
    )
    assert response.status_code == 200, response.text
    penalise(money_client, other_node.id)
    return MoneyWorld(scene, stream_id, unfunded, other_friend, other_node, "Penny Penalised")


def test_friends_see_trust_checks_intervals_and_earnings(money: MoneyWorld):
    scene = money.scene
    body = scene.browser(scene.friend).get("/api/v1/dashboards/friend").json()
    (node,) = body["nodes"]
    trust = node["trust"]
    assert trust["level"] == "warned" and trust["alert"] is True
    assert trust["score_percent"] == "70%" and trust["pay_percent"] == "100%"
    assert trust["message"].startswith("Warning:") and trust["probes_passed"] == 12
    assert [p["score"] for p in node["trust_history"]] == [0.95, 0.9, 0.84, 0.78, 0.7]
    probes = node["probes"]
    assert [p["outcome"] for p in probes] == ["timeout", "ok", "ok"], "newest first"
    assert probes[1]["ttfb_ms"] == 41 and probes[1]["throughput_bps"] == 24_000_000
    recs = node["reconciliations"]
    assert [(r["claimed_bytes"], r["receipted_bytes"], r["paid_bytes"]) for r in recs][-2:] == [
        (2 * GB, 0, 0),
        (30 * GB, 30 * GB, 30 * GB),
    ]
    assert recs[-2]["discrepancies"] == 1 and recs[-2]["discrepancy_kinds"] == "unreceipted claim"
    assert node["money"] == {
        "balance_micro_usd": 360_000,
        "balance": "$0.36",
        "earned": "$1.71",
        "paid_out": "$1.35",
        "carried_over": "$0.36",
        "below_minimum": True,
    }
    assert node["budget"]["state"] == "low"
    earnings = body["earnings"]
    assert earnings["balance"] == "$0.36" and earnings["paid_out"] == "$1.35"
    assert "below the minimum payout of $1.00" in earnings["next_payout"]
    assert [a["net"] for a in earnings["accruals"]] == ["$0.36", "$1.35"]
    assert [(p["status"], p["amount"]) for p in earnings["payouts"]] == [
        ("carried_over", "$0.00"),
        ("sent", "$1.35"),
    ]
    assert body["trust"]["state"] == "warned"
    assert len(body["alerts"]) == 2, "the warning and the low budget"

    page = scene.browser(scene.friend).get("/dashboard/friend").text
    assert 'class="banner" role="alert"' in page and "Warning:" in page
    assert "$1.35" in page and 'href="/dashboard/friend/statement.csv"' in page
    assert EVIL not in page and f"no answer {EVIL_ESCAPED}" in page


def test_friends_see_only_their_own_nodes_and_money(money: MoneyWorld):
    scene = money.scene
    other = scene.browser(money.other_friend).get("/api/v1/dashboards/friend").json()
    assert [n["id"] for n in other["nodes"]] == [money.other_node.id]
    assert other["earnings"]["balance"] == "$0.00" and other["earnings"]["accruals"] == []
    (node,) = other["nodes"]
    assert node["trust"]["level"] == "penalised" and node["trust"]["pay_percent"] == "0%"
    assert node["budget"]["state"] == "exhausted"
    assert any("no budget yet" in line for line in other["alerts"])
    csv_text = scene.browser(money.other_friend).get("/dashboard/friend/statement.csv").text
    assert scene.node.id not in csv_text
    # A friend is neither a streamer nor an admin.
    friend = scene.browser(scene.friend)
    assert friend.get("/dashboard/streamer/statement.csv").status_code == 403
    assert friend.get("/dashboard/operator/statement.csv").status_code == 403
    assert_error(friend.get("/api/v1/dashboards/operator"), 403)


def test_statements_download_as_csv_with_the_login_cookie(money: MoneyWorld):
    scene = money.scene
    assert Browser(scene.api.client).get("/dashboard/friend/statement.csv").status_code == 303
    response = scene.browser(scene.friend).get("/dashboard/friend/statement.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    assert response.headers["cache-control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {r["line"] for r in rows} == {"accrual", "sent", "carried_over"}
    assert sum(int(r["amount_micro_usd"]) for r in rows if r["line"] == "accrual") == 1_710_000
    assert all(r["node_id"] == scene.node.id for r in rows)
    streamer = scene.browser(scene.owner).get("/dashboard/streamer/statement.csv")
    lines = list(csv.DictReader(io.StringIO(streamer.text)))
    assert [r["amount_micro_usd"] for r in lines if r["line"] == "funding"] == ["2000000"]
    operator = scene.browser(scene.admin).get("/dashboard/operator/statement.csv")
    assert operator.status_code == 200 and "funding" in operator.text


def test_streamers_see_their_budget_spend_per_node_and_trust(money: MoneyWorld):
    scene = money.scene
    body = scene.browser(scene.owner).get("/api/v1/dashboards/streamer").json()
    funded = next(s for s in body["streams"] if s["name"] == scene.stream)
    budget = funded["budget"]
    assert (budget["state"], budget["balance"], budget["funded"], budget["spent"]) == (
        "low",
        "$0.10",
        "$2.00",
        "$1.90",
    )
    assert budget["needs_funds"] and "Record" in budget["advice"]
    (spend,) = funded["spend"]
    assert (spend["paid_bytes"], spend["gross"], spend["fee"], spend["net"]) == (
        38 * GB,
        "$1.90",
        "$0.19",
        "$1.71",
    )
    (node,) = funded["nodes"]
    assert node["trust_level"] == "warned" and node["trust_percent"] == "70%"
    unfunded = next(s for s in body["streams"] if s["name"] == money.unfunded_stream)
    assert unfunded["budget"]["state"] == "exhausted" and unfunded["spend"] == []
    assert unfunded["nodes"][0]["trust_level"] == "penalised"
    assert body["funded"] == "$2.00" and body["spent"] == "$1.90"
    page = scene.browser(scene.owner).get("/dashboard/streamer").text
    assert "received</strong> from you outside it" in page
    assert page.count('class="banner" role="alert"') == 2, "low and exhausted"


def _budget_of(scene: Scene, name: str) -> dict[str, Any]:
    body = scene.api.client.get(f"/api/v1/streams/{name}/budget", headers=scene.owner.headers)
    return body.json()


def test_recording_funds_needs_the_csrf_token_and_records_once(money: MoneyWorld):
    scene = money.scene
    name, _ = scene.api.create_stream(scene.owner, title="Funded here")  # others' money stays
    url = f"/dashboard/streamer/streams/{name}/budget"
    browser = scene.browser(scene.owner)
    assert "CSRF" in html_error(browser.post(url, data={"amount": "5"}), 403)
    forged = {"amount": "5", "csrf_token": scene.browser(scene.friend).csrf()}
    html_error(browser.post(url, data=forged), 403)
    assert _budget_of(scene, name)["funded_micro_usd"] == 0
    form = {"csrf_token": browser.csrf(), "amount": "1,000.123456", "funding_id": "page-1"}
    for _ in range(2):  # the same form sent twice (a double click, a reload)
        response = browser.post(url, data=form)
        assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
        assert "Funds recorded for “Funded here”: its budget is now $1,000.123456." in (
            response.text
        )
    assert _budget_of(scene, name)["funded_micro_usd"] == 1_000_123_456
    # Another streamer and a friend may not fund this stream.
    for account in (scene.api.register("streamer"), scene.friend):
        other = scene.browser(account)
        html_error(other.post(url, data={"csrf_token": other.csrf(), "amount": "5"}), 403)
    assert _budget_of(scene, name)["funded_micro_usd"] == 1_000_123_456


@pytest.mark.parametrize(
    "amount", ["", "0", "-5", "abc", "1.1234567", "1e3", "0x10", "1000000.01", "9" * 5000]
)
def test_a_bad_amount_of_funds_is_a_400_page(money: MoneyWorld, amount: str):
    scene = money.scene
    browser = scene.browser(scene.owner)
    response = browser.post(
        f"/dashboard/streamer/streams/{scene.stream}/budget",
        data={"csrf_token": browser.csrf(), "amount": amount},
    )
    assert "enter the amount received in US dollars" in html_error(response, 400)


def test_operators_see_economics_jobs_trust_discrepancies_and_fees(money: MoneyWorld):
    scene = money.scene
    body = scene.browser(scene.admin).get("/api/v1/dashboards/operator").json()
    economics = body["economics"]
    assert economics["rate_per_gb"] == "$0.05" and economics["platform_fee_percent"] == "10%"
    assert economics["payout_period"] == "24 hours" and economics["version"] is None
    money_now = body["money"]
    assert (money_now["fees"], money_now["earnings_owed"], money_now["payouts_sent"]) == (
        "$0.19",
        "$0.36",
        "$1.35",
    )
    assert money_now["books_balance"] == "$0.00"
    # Other tests record funds too; what was spent of them is this scenario's alone.
    spent = parse_usd(money_now["funded"]) - parse_usd(money_now["budgets_left"])
    assert spent == 1_900_000
    job = next(j for j in body["jobs"] if j["name"] == "reconciliation")
    assert job["holder"] == "worker-a:17:abc" and job["held"] is True
    assert [(r["outcome"], r["duration_ms"]) for r in job["runs"]] == [("error", 7), ("ok", 42)]
    assert job["runs"][0]["error"] == f"database gone {EVIL}"
    assert {j["name"] for j in body["jobs"]} >= {"prober", "accrual", "payout_cycle"}
    trust = {n["id"]: n for n in body["nodes"]}
    assert trust[scene.node.id]["trust_level"] == "warned"
    assert trust[money.other_node.id]["pay_percent"] == "0%"
    (discrepancy,) = body["discrepancies"]
    assert discrepancy["kind"] == "unreceipted_claim" and discrepancy["claimed"] == 2 * GB
    assert EVIL in discrepancy["evidence"] and discrepancy["owner"] == "Fay"
    assert [p["outcome"] for p in body["probe_failures"]] == ["timeout"]
    page = scene.browser(scene.admin).get("/dashboard/operator").text
    assert f"database gone {EVIL_ESCAPED}" in page and EVIL not in page
    assert 'action="/dashboard/operator/economics"' in page


def test_the_public_leaderboard_leaves_out_penalised_nodes(money: MoneyWorld):
    board = money.scene.api.client.get("/api/v1/dashboards/public").json()["leaderboard"]
    assert money.penalised_name not in {e["display_name"] for e in board}
    assert money.penalised_name not in money.scene.browser().get("/").text


@pytest.fixture
def economics_client(backend: str, request: pytest.FixtureRequest, tmp_path: Any):
    """A coordinator of its own: changing the economics must not change other tests' money."""
    url = None
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_server").create_database()
    settings = make_settings(tmp_path, url, run_background_jobs=False)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_operators_change_the_economics_through_the_form(economics_client: TestClient):
    api = Api(economics_client)
    admin, friend = api.make_admin(), api.register("friend")
    browser = Browser(economics_client)
    assert browser.login(admin.email).status_code == 303
    url = "/dashboard/operator/economics"
    good = {"rate_usd": "0.07", "platform_fee_percent": "12.5", "note": "winter rates"}
    assert "CSRF" in html_error(browser.post(url, data=good), 403)
    outsider = Browser(economics_client)
    outsider.login(friend.email)
    html_error(outsider.post(url, data={**good, "csrf_token": outsider.csrf()}), 403)

    csrf = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/dashboard/operator").text)
    assert csrf is not None
    token = csrf.group(1)
    bad = browser.post(
        url, data={"csrf_token": token, "rate_usd": "lots", "vetting_pay_percent": "x"}
    )
    message = html_error(bad, 400)
    assert "rate usd must be US dollars per GB" in message and "vetting pay percent" in message
    too_much = browser.post(url, data={"csrf_token": token, "platform_fee_percent": "150"})
    assert "platform_fee_bps is 15000; it must be from 0 to 10000" in html_error(too_much, 422)
    same = browser.post(url, data={"csrf_token": token, "rate_usd": "0.05"})
    assert "Nothing to change" in html_error(same, 422)
    view = economics_client.get("/api/v1/admin/economics", headers=admin.headers).json()
    assert view["history"] == [], "nothing was changed by the refused forms"

    response = browser.post(url, data={"csrf_token": token, **good})
    assert response.status_code == 303 and response.headers["location"].endswith("#economics")
    current = economics_client.get("/api/v1/admin/economics", headers=admin.headers).json()
    current = current["current"]
    assert current["rate_micro_usd_per_gb"] == 70_000 and current["platform_fee_bps"] == 1_250
    assert current["minimum_payout_micro_usd"] == 1_000_000 and current["note"] == "winter rates"
    shown = browser.get("/api/v1/dashboards/operator").json()["economics"]
    assert (shown["rate_per_gb"], shown["platform_fee_percent"], shown["rate_usd"]) == (
        "$0.07",
        "12.5%",
        "0.07",
    )


@pytest.mark.parametrize(
    ("text", "micro"),
    [("0.05", 50_000), ("$1,000", 1_000_000_000), (" 12.5 ", 12_500_000), ("0.000001", 1)],
)
def test_dollar_amounts_parse_exactly(text: str, micro: int):
    assert parse_usd(text) == micro and type(parse_usd(text)) is int
    assert parse_usd(plain_usd(micro)) == micro


@pytest.mark.parametrize("text", ["", "-1", "1.0000001", "1e6", "nan", "inf", "1.2.3", "٣"])
def test_bad_dollar_amounts_are_refused(text: str):
    with pytest.raises(ValueError, match="not a dollar amount"):
        parse_usd(text)


def test_percentages_and_basis_points():
    assert parse_percent("10") == 1_000 and parse_percent("12.5 %") == 1_250
    assert parse_percent("0.01") == 1 and bps_percent(1_250) == "12.5%"
    assert bps_percent(10_000) == "100%" and bps_percent(5) == "0.05%"
    for bad in ("", "-1", "1.001", "1000", "x"):
        with pytest.raises(ValueError, match="not a percentage"):
            parse_percent(bad)
    assert percent(0.7999) == "79%", "never rounded up across the warning line"
