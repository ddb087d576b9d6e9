"""Who may call what: every route against every kind of caller, one test per cell.

Principals: anonymous, the stream's owner, another streamer, a friend (who owns the node), the
node itself (its own token) and an admin. Each cell builds a fresh stream, invite and node, so a
destructive call in one cell never affects another. Beyond the status, every refused call must
answer with the error shape and leave the scenario exactly as it was, and no answer may contain
the scenario's secrets.

Rules the table encodes:
- anonymous callers get 401 where an account is needed; an authenticated caller without the
  right gets 403; a node token on an account route is 403;
- public routes (stream list and detail, node counts, health, version, JWKS) answer 200 to
  everyone, a node token included (it is treated as anonymous there);
- register, login, refresh and logout take their credentials from the body, so whatever bearer
  token comes along does not matter;
- any account may run a node: the invite code is the permission, not the role. A streamer may
  relay a friend's stream (or their own), so streamers and admins register nodes too;
- heartbeats, assignments, usage reports and reachability checks need the node's own token: an
  account's valid access token is 403, not 401 (a 401 would only make a client refresh its token
  and retry in vain). A node's usage totals are seen by whoever may see the node;
- viewer sessions are anonymous: anyone may open one while the stream is on air.
- a viewer session's own routes (sources, receipts) take only that session's token, which no
  principal here holds: 401 without a credential, 403 with an account's or a node's.
- dashboards: the public one for everyone; the streamer's for streamers and admins, the friend's
  for every account, the operator's for admins. Their HTML pages (PAGES, below) take the cookie
  session only: without one they redirect to /login (303), whatever bearer token comes along.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from streamr_coordinator.accounts.models import Account as AccountRow
from streamr_coordinator.accounts.service import issue_tokens
from streamr_coordinator.dashboards.pages import router as pages_router
from streamr_coordinator.dashboards.sessions import csrf_for
from streamr_protocol.attestation import public_key_from
from streamr_protocol.viewer_sessions import decode_session_token

from .browser import Browser
from .conftest import PASSWORD, Account, Api, Node, assert_error

PRINCIPALS = ("anonymous", "owner", "other_streamer", "friend", "node", "admin")


@dataclass
class People:
    """Long-lived accounts, one set per backend (registration costs an Argon2 hash)."""

    owner: Account
    other: Account
    friend: Account
    second_friend: Account
    admin: Account


@dataclass
class Scenario:
    """What each cell gets fresh: a stream, an invite to it, and two friends' nodes in it."""

    client: TestClient
    people: People
    stream: str
    stream_key: str
    invite_id: str
    invite_code: str
    node: Node  # the friend's
    other_node: Node | None  # the second friend's, so "only your own nodes" can be checked
    session_id: str = "none"  # a viewer session of the stream, once one is opened

    def headers(self, principal: str) -> dict[str, str]:
        accounts = {
            "owner": self.people.owner,
            "other_streamer": self.people.other,
            "friend": self.people.friend,
            "admin": self.people.admin,
        }
        if principal == "anonymous":
            return {}
        if principal == "node":
            return self.node.headers
        return accounts[principal].headers

    @property
    def nodes(self) -> list[Node]:
        return [self.node] if self.other_node is None else [self.node, self.other_node]

    @property
    def secrets(self) -> dict[str, str]:
        found = {"stream key": self.stream_key, "invite code": self.invite_code}
        found.update({f"token of node {n.id}": n.token for n in self.nodes})
        return found


@pytest.fixture(scope="module")
def people(client: TestClient) -> People:
    api = Api(client)
    return People(
        owner=api.register("streamer"),
        other=api.register("streamer"),
        friend=api.register("friend"),
        second_friend=api.register("friend"),
        admin=api.make_admin(),
    )


def build_scenario(client: TestClient, people: People, second_node: bool = False) -> Scenario:
    api = Api(client)
    name, key = api.create_stream(people.owner)
    invite = client.post(
        f"/api/v1/streams/{name}/invites", json={"max_uses": 10}, headers=people.owner.headers
    )
    assert invite.status_code == 201, invite.text
    code = invite.json()["code"]
    return Scenario(
        client=client,
        people=people,
        stream=name,
        stream_key=key,
        invite_id=invite.json()["id"],
        invite_code=code,
        node=api.register_node(people.friend, code, name="friend's node"),
        other_node=(
            api.register_node(people.second_friend, code, name="second friend's node")
            if second_node
            else None
        ),
    )


@pytest.fixture
def scenario(client: TestClient, people: People) -> Scenario:
    return build_scenario(client, people, second_node=True)


def fresh_refresh_token(s: Scenario) -> str:
    """A new refresh token for the owner, issued directly (no Argon2 login needed)."""

    async def issue() -> str:
        ctx = s.client.app.state.ctx
        async with ctx.sessions() as session:
            account = await session.get(AccountRow, s.people.owner.id)
            assert account is not None
            return (await issue_tokens(ctx, session, account)).refresh_token

    return s.client.portal.call(issue)


# Extra checks on a successful answer, per route: what each principal may see.


def check_stream_detail(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    manager = principal in ("owner", "admin")
    assert ("owner_id" in body) is manager, body
    assert body["nodes"] == {"registered": len(s.nodes), "online": 0}


def check_stream_nodes(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert body["registered"] == len(s.nodes) == 2
    shown = body["nodes"]
    if principal in ("owner", "admin"):
        assert {n["id"] for n in shown} == {n.id for n in s.nodes}
    elif principal == "friend":
        assert [n["id"] for n in shown] == [s.node.id], "a friend sees only their own nodes"
        assert shown[0]["owner_id"] == s.people.friend.id
    else:  # anonymous, another streamer, a node: counts only
        assert not shown, f"{principal} must not see node details: {shown}"


def check_node_detail(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert body["id"] == s.node.id and body["owner_id"] == s.people.friend.id


def check_heartbeat(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert body["node_id"] == s.node.id


def check_me(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    expected = {"owner": "streamer", "other_streamer": "streamer", "friend": "friend"}
    assert body["role"] == expected.get(principal, principal)


def check_registered_node(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert body["stream"] == s.stream and body["node_token"].startswith("snt_")


def check_session(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    key = s.client.get("/api/v1/attestation/key").json()
    claims = decode_session_token(
        body["token"], {key["key_id"]: public_key_from(key["public_key"])}, stream=s.stream
    )
    assert claims.session_id == body["session_id"]
    assert body["sources"][-1]["kind"] == "origin"


def check_assignment(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert body["node_id"] == s.node.id and body["stream"] == s.stream
    assert body["upstream"]["kind"] == "origin"


def check_usage_ack(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert body["duplicate"] is False and body["unknown_sessions"] == 1


def check_usage(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert body["node_id"] == s.node.id and body["reports"] == 0


def check_standing(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert body["node_id"] == s.node.id and body["level"] == "vetting" and body["message"]


def check_trust(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert body["node_id"] == s.node.id and body["standing"]["level"] == "vetting"


def check_trust_overview(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert s.node.id in {n["node_id"] for n in body["nodes"]}


def check_reachability(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert body["status"] == "no_public_url" and body["advice"]


def beat(s: Scenario) -> None:
    """The node is online, so a refused call that took it out of routing would show."""
    response = s.client.post(
        f"/api/v1/nodes/{s.node.id}/heartbeat",
        json=Api(s.client).heartbeat_body(),
        headers=s.node.headers,
    )
    assert response.status_code == 200, response.text


def open_viewer_session(s: Scenario) -> None:
    """The stream on air and a viewer watching; nobody in the matrix holds that viewer's token."""
    go_live(s)
    response = s.client.post(f"/api/v1/streams/{s.stream}/sessions")
    assert response.status_code == 201, response.text
    s.session_id = response.json()["session_id"]


def _receipts(s: Scenario) -> dict[str, Any]:
    return {
        "batch_id": f"m-{uuid.uuid4().hex}",
        "receipts": [
            {
                "source_kind": "node",
                "node_id": s.node.id,
                "segment": "1.ts",
                "sequence": 1,
                "bytes": 10,
                "ttfb_ms": 5,
                "download_ms": 9,
                "outcome": "mismatch",
            }
        ],
    }


def go_live(s: Scenario) -> None:
    response = s.client.post(
        f"/api/v1/streams/{s.stream}/status",
        json={"status": "LIVE"},
        headers=s.people.owner.headers,
    )
    assert response.status_code == 200, response.text


def _usage_report(s: Scenario) -> dict[str, Any]:
    return {
        "report_id": f"m-{uuid.uuid4().hex}",
        "stream": s.stream,
        "period_start": "2026-01-01T00:00:00Z",
        "period_end": "2026-01-01T00:00:10Z",
        "sessions": [{"session_id": "unknown", "bytes": 10, "segments": 1, "requests": 1}],
    }


def check_public_dashboard(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert "@" not in str(body["leaderboard"]), "display names, never emails"


def check_streamer_dashboard(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert (s.stream in {x["name"] for x in body["streams"]}) is (principal == "owner")


def check_friend_dashboard(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert (s.node.id in {n["id"] for n in body["nodes"]}) is (principal == "friend")


def check_operator_dashboard(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert s.stream in {x["name"] for x in body["streams"]}
    assert s.node.id in {n["id"] for n in body["nodes"]}


def check_admin_jobs(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    from streamr_coordinator.jobs.catalog import CATALOG

    assert {job.name for job in CATALOG} <= {job["name"] for job in body["jobs"]}


def check_funding(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert body["stream"] == s.stream and body["budget"]["balance_micro_usd"] == 1_000


def check_budget(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert body["stream"] == s.stream and body["state"] == "exhausted"  # never funded


def check_earnings(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert body["node"]["node_id"] == s.node.id and body["node"]["balance_micro_usd"] == 0


def check_friend_statement(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert (s.node.id in {n["node_id"] for n in body["nodes"]}) is (principal == "friend")


def check_streamer_statement(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert (s.stream in {b["stream"] for b in body["budgets"]}) is (principal == "owner")


def check_operator_statement(s: Scenario, principal: str, body: dict[str, Any]) -> None:
    assert body["totals"]["ledger_sum_micro_usd"] == 0


# The economics the tests run with: an admin's change in the matrix changes nothing.
_ECONOMICS = {
    "rate_micro_usd_per_gb": 50_000,
    "platform_fee_bps": 1_000,
    "minimum_payout_micro_usd": 1_000_000,
    "vetting_pay_bps": 5_000,
    "payout_period_s": 86_400,
    "note": "authorization matrix",
}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    #        anonymous, owner, other_streamer, friend, node, admin
    expect: tuple[int, int, int, int, int, int]
    body: Callable[[Scenario], Any] | None = None
    check: Callable[[Scenario, str, dict[str, Any]], None] | None = None
    # A refused call to a route that can change the scenario must leave it untouched.
    mutates: bool = False
    second_node: bool = False  # the check needs a second friend's node in the stream
    prepare: Callable[[Scenario], None] | None = None  # e.g. put the stream on air first

    def url(self, s: Scenario) -> str:
        return self.path.format(
            name=s.stream, invite_id=s.invite_id, node_id=s.node.id, session_id=s.session_id
        )


def _new_email(_: Scenario) -> dict[str, Any]:
    return {
        "email": f"m-{uuid.uuid4().hex[:12]}@example.com",
        "password": PASSWORD,
        "display_name": "Matrix",
    }


# fmt: off
ROUTES = [
    # Accounts. Register, login, refresh and logout are authenticated by their bodies.
    Route("POST", "/api/v1/auth/register", (201, 201, 201, 201, 201, 201), body=_new_email),
    Route("POST", "/api/v1/auth/login", (200, 200, 200, 200, 200, 200),
          body=lambda s: {"email": s.people.owner.email, "password": PASSWORD}),
    Route("POST", "/api/v1/auth/refresh", (200, 200, 200, 200, 200, 200),
          body=lambda s: {"refresh_token": fresh_refresh_token(s)}),
    Route("POST", "/api/v1/auth/logout", (204, 204, 204, 204, 204, 204),
          body=lambda s: {"refresh_token": fresh_refresh_token(s)}),
    Route("GET", "/api/v1/auth/me", (401, 200, 200, 200, 403, 200), check=check_me),
    # Streams.
    Route("GET", "/api/v1/streams", (200, 200, 200, 200, 200, 200)),
    Route("POST", "/api/v1/streams", (401, 201, 201, 403, 403, 201),
          body=lambda s: {"name": Api(s.client).unique_name("m"), "title": "New"}),
    Route("GET", "/api/v1/streams/{name}", (200, 200, 200, 200, 200, 200),
          check=check_stream_detail),
    Route("PATCH", "/api/v1/streams/{name}", (401, 200, 403, 403, 403, 200),
          body=lambda s: {"title": "Renamed"}, mutates=True),
    Route("DELETE", "/api/v1/streams/{name}", (401, 204, 403, 403, 403, 204), mutates=True),
    Route("POST", "/api/v1/streams/{name}/rotate-key", (401, 200, 403, 403, 403, 200),
          mutates=True),
    Route("POST", "/api/v1/streams/{name}/status", (401, 200, 403, 403, 403, 200),
          body=lambda s: {"status": "TESTING"}, mutates=True),
    Route("GET", "/api/v1/streams/{name}/history", (401, 200, 403, 403, 403, 200)),
    # Invites.
    Route("POST", "/api/v1/streams/{name}/invites", (401, 201, 403, 403, 403, 201),
          body=lambda s: {"label": "more"}, mutates=True),
    Route("GET", "/api/v1/streams/{name}/invites", (401, 200, 403, 403, 403, 200)),
    Route("DELETE", "/api/v1/streams/{name}/invites/{invite_id}",
          (401, 204, 403, 403, 403, 204), mutates=True),
    # Nodes. Any account with a valid invite may attach a node; the node manages itself.
    Route("POST", "/api/v1/nodes/register", (401, 201, 201, 201, 403, 201),
          body=lambda s: {"invite_code": s.invite_code}, check=check_registered_node,
          mutates=True),
    Route("POST", "/api/v1/nodes/{node_id}/heartbeat", (401, 403, 403, 403, 200, 403),
          body=lambda s: Api(s.client).heartbeat_body(), check=check_heartbeat, mutates=True),
    Route("GET", "/api/v1/nodes/{node_id}", (401, 200, 403, 200, 200, 200),
          check=check_node_detail),
    Route("DELETE", "/api/v1/nodes/{node_id}", (401, 204, 403, 204, 204, 204), mutates=True),
    Route("GET", "/api/v1/streams/{name}/nodes", (200, 200, 200, 200, 200, 200),
          check=check_stream_nodes, second_node=True),
    Route("GET", "/api/v1/nodes/{node_id}/assignment", (401, 403, 403, 403, 200, 403),
          check=check_assignment),
    Route("POST", "/api/v1/nodes/{node_id}/reachability", (401, 403, 403, 403, 200, 403),
          body=lambda s: {}, check=check_reachability, mutates=True),
    Route("DELETE", "/api/v1/nodes/{node_id}/presence", (401, 403, 403, 403, 204, 403),
          mutates=True, prepare=beat),
    # Usage: reported by the node alone; seen by those who may see the node.
    Route("POST", "/api/v1/nodes/{node_id}/usage", (401, 403, 403, 403, 200, 403),
          body=_usage_report, check=check_usage_ack, mutates=True),
    Route("GET", "/api/v1/nodes/{node_id}/usage", (401, 200, 403, 200, 200, 200),
          check=check_usage),
    # Verification: a node's standing for the node alone; its trust, probes and reconciliations
    # for whoever may see the node; every node's, and all discrepancies and probes, for admins.
    Route("GET", "/api/v1/nodes/{node_id}/standing", (401, 403, 403, 403, 200, 403),
          check=check_standing),
    Route("GET", "/api/v1/nodes/{node_id}/trust", (401, 200, 403, 200, 200, 200),
          check=check_trust),
    Route("GET", "/api/v1/nodes/{node_id}/probes", (401, 200, 403, 200, 200, 200)),
    Route("GET", "/api/v1/nodes/{node_id}/reconciliations", (401, 200, 403, 200, 200, 200)),
    Route("GET", "/api/v1/admin/verification/trust", (401, 403, 403, 403, 403, 200),
          check=check_trust_overview),
    Route("GET", "/api/v1/admin/verification/discrepancies", (401, 403, 403, 403, 403, 200)),
    Route("GET", "/api/v1/admin/verification/probes", (401, 403, 403, 403, 403, 200)),
    # Viewers are anonymous: anyone may open a session of a stream on air.
    Route("POST", "/api/v1/streams/{name}/sessions", (201, 201, 201, 201, 201, 201),
          check=check_session, prepare=go_live),
    # A session's own routes take that session's viewer token only: an account's or a node's
    # valid token is a credential of another kind (403).
    Route("GET", "/api/v1/sessions/{session_id}/sources", (401, 403, 403, 403, 403, 403),
          prepare=open_viewer_session),
    Route("POST", "/api/v1/sessions/{session_id}/receipts", (401, 403, 403, 403, 403, 403),
          body=_receipts, mutates=True, prepare=open_viewer_session),
    # Attestation: public, it holds hashes and signatures only.
    Route("GET", "/api/v1/attestation/key", (200, 200, 200, 200, 200, 200)),
    Route("GET", "/api/v1/streams/{name}/segments", (200, 200, 200, 200, 200, 200)),
    # Ingest: only the ingest, with the shared secret; no bearer token of any kind will do.
    Route("POST", "/api/v1/ingest/hooks/authorize", (403, 403, 403, 403, 403, 403),
          mutates=True),
    Route("POST", "/api/v1/ingest/hooks/publish", (403, 403, 403, 403, 403, 403),
          mutates=True),
    Route("POST", "/api/v1/ingest/hooks/publish-done", (403, 403, 403, 403, 403, 403),
          mutates=True),
    Route("POST", "/api/v1/ingest/segments", (403, 403, 403, 403, 403, 403), mutates=True,
          body=lambda s: {"segments": [{"stream": s.stream, "sequence": 1, "name": "1.ts",
                                        "duration_ms": 2000, "size": 1, "sha256": "0" * 64}]}),
    Route("POST", "/api/v1/ingest/sync", (403, 403, 403, 403, 403, 403), mutates=True,
          body=lambda s: {"publishing": []}),
    # Dashboards' JSON: an access token or the dashboards' cookie session.
    Route("GET", "/api/v1/dashboards/public", (200, 200, 200, 200, 200, 200),
          check=check_public_dashboard),
    Route("GET", "/api/v1/dashboards/streamer", (401, 200, 200, 403, 403, 200),
          check=check_streamer_dashboard),
    Route("GET", "/api/v1/dashboards/friend", (401, 200, 200, 200, 403, 200),
          check=check_friend_dashboard),
    Route("GET", "/api/v1/dashboards/operator", (401, 403, 403, 403, 403, 200),
          check=check_operator_dashboard),
    # The worker's jobs (leases, recent runs): admins only.
    Route("GET", "/api/v1/admin/jobs", (401, 403, 403, 403, 403, 200), check=check_admin_jobs),
    # Payouts. Operators set the economics; streamers fund their streams' budgets, which
    # their friends may see; a node's earnings as its usage; statements per party.
    Route("GET", "/api/v1/admin/economics", (401, 403, 403, 403, 403, 200)),
    Route("POST", "/api/v1/admin/economics", (401, 403, 403, 403, 403, 201),
          body=lambda s: _ECONOMICS, mutates=True),
    Route("POST", "/api/v1/streams/{name}/budget", (401, 201, 403, 403, 403, 201),
          body=lambda s: {"amount_micro_usd": 1_000}, check=check_funding, mutates=True),
    Route("GET", "/api/v1/streams/{name}/budget", (401, 200, 403, 200, 403, 200),
          check=check_budget),
    Route("GET", "/api/v1/nodes/{node_id}/earnings", (401, 200, 403, 200, 200, 200),
          check=check_earnings),
    Route("GET", "/api/v1/statements/friend", (401, 200, 200, 200, 403, 200),
          check=check_friend_statement),
    Route("GET", "/api/v1/statements/streamer", (401, 200, 200, 403, 403, 200),
          check=check_streamer_statement),
    Route("GET", "/api/v1/statements/operator", (401, 403, 403, 403, 403, 200),
          check=check_operator_statement),
    # Service.
    Route("GET", "/health", (200, 200, 200, 200, 200, 200)),
    Route("GET", "/version", (200, 200, 200, 200, 200, 200)),
    Route("GET", "/.well-known/jwks.json", (200, 200, 200, 200, 200, 200)),
]
# fmt: on

CELLS = [
    pytest.param(route, principal, expected, id=f"{route.method} {route.path} as {principal}")
    for route in ROUTES
    for principal, expected in zip(PRINCIPALS, route.expect, strict=True)
]


def state_of(s: Scenario) -> dict[str, Any]:
    """Everything a refused call could have changed, as the owner sees it."""
    owner = s.people.owner.headers
    stream = s.client.get(f"/api/v1/streams/{s.stream}", headers=owner)
    invites = s.client.get(f"/api/v1/streams/{s.stream}/invites", headers=owner)
    nodes = s.client.get(f"/api/v1/streams/{s.stream}/nodes", headers=owner)
    assert stream.status_code == invites.status_code == nodes.status_code == 200
    return {
        "stream": stream.json(),
        "invites": invites.json(),
        "nodes": [(n["id"], n["online"], n["public_url"]) for n in nodes.json()["nodes"]],
    }


@pytest.mark.parametrize(("route", "principal", "expected"), CELLS)
def test_authorization_matrix(
    client: TestClient, people: People, route: Route, principal: str, expected: int
):
    s = build_scenario(client, people, second_node=route.second_node)
    if route.prepare is not None:
        route.prepare(s)
    refused = expected >= 400
    before = state_of(s) if refused and route.mutates else None

    response = s.client.request(
        route.method,
        route.url(s),
        json=route.body(s) if route.body else None,
        headers=s.headers(principal),
    )

    assert response.status_code == expected, response.text
    if refused:
        error = assert_error(response, expected)
        if expected == 401:
            assert response.headers.get("www-authenticate") == "Bearer", error
    elif route.check is not None:
        route.check(s, principal, response.json())
    for label, secret in s.secrets.items():
        assert secret not in response.text, f"the {label} leaked"
    if before is not None:
        assert state_of(s) == before, "a refused call changed something"


def test_matrix_covers_every_route(client: TestClient):
    """A new API route must get a row in the table."""
    served = {
        f"{method.upper()} {path}"
        for path, operations in client.app.openapi()["paths"].items()
        for method in operations
    }
    assert served == {f"{r.method} {r.path}" for r in ROUTES}


def test_another_nodes_token_cannot_act_for_a_node(scenario: Scenario):
    s = scenario
    assert s.other_node is not None
    other = s.other_node.headers
    beat = s.client.post(
        f"/api/v1/nodes/{s.node.id}/heartbeat",
        json=Api(s.client).heartbeat_body(),
        headers=other,
    )
    assert "different node" in assert_error(beat, 403)["message"]
    assert_error(s.client.get(f"/api/v1/nodes/{s.node.id}", headers=other), 403)
    assert_error(s.client.delete(f"/api/v1/nodes/{s.node.id}", headers=other), 403)
    assert_error(s.client.get(f"/api/v1/nodes/{s.node.id}/assignment", headers=other), 403)
    assert_error(s.client.get(f"/api/v1/nodes/{s.node.id}/usage", headers=other), 403)
    assert_error(s.client.delete(f"/api/v1/nodes/{s.node.id}/presence", headers=other), 403)
    for path, body in (("usage", _usage_report(s)), ("reachability", {})):
        response = s.client.post(f"/api/v1/nodes/{s.node.id}/{path}", json=body, headers=other)
        assert "different node" in assert_error(response, 403)["message"]
    assert s.client.get(f"/api/v1/nodes/{s.node.id}", headers=s.node.headers).status_code == 200


def test_second_friend_sees_only_their_own_node(scenario: Scenario):
    s = scenario
    listing = s.client.get(
        f"/api/v1/streams/{s.stream}/nodes", headers=s.people.second_friend.headers
    )
    assert s.other_node is not None
    assert [n["id"] for n in listing.json()["nodes"]] == [s.other_node.id]
    assert_error(
        s.client.get(f"/api/v1/nodes/{s.node.id}", headers=s.people.second_friend.headers), 403
    )


@pytest.mark.parametrize(
    "token", ["snt_not-a-real-node-token-at-all", "not-a-jwt", "eyJhbGciOiJub25lIn0.e30."]
)
def test_unknown_tokens_are_401_even_on_public_routes(scenario: Scenario, token: str):
    """A token that does not verify is an error everywhere (public routes included), except a
    node token on a public route, which is read as anonymous."""
    s = scenario
    headers = {"Authorization": f"Bearer {token}"}
    me = s.client.get("/api/v1/auth/me", headers=headers)
    node = s.client.get(f"/api/v1/nodes/{s.node.id}", headers=headers)
    assert_error(node, 401)
    public = s.client.get(f"/api/v1/streams/{s.stream}", headers=headers)
    if token.startswith("snt_"):
        assert_error(me, 403)
        assert public.status_code == 200
    else:
        assert_error(me, 401)
        assert_error(public, 401)


# --- The dashboards' HTML pages: the cookie session, not a bearer token ----------------------


@dataclass(frozen=True)
class Page:
    method: str
    path: str
    #        anonymous, owner, other_streamer, friend, node, admin
    expect: tuple[int, int, int, int, int, int]
    form: Callable[[Scenario], dict[str, str]] | None = None
    mutates: bool = False


# fmt: off
PAGES = [
    Page("GET", "/", (200, 200, 200, 200, 200, 200)),
    Page("GET", "/login", (200, 200, 200, 200, 200, 200)),
    Page("POST", "/login", (303, 303, 303, 303, 303, 303),
         form=lambda s: {"email": s.people.friend.email, "password": PASSWORD}),
    Page("POST", "/logout", (303, 303, 303, 303, 303, 303)),
    Page("GET", "/dashboard/streamer", (303, 200, 200, 403, 303, 200)),
    Page("GET", "/dashboard/friend", (303, 200, 200, 200, 303, 200)),
    Page("GET", "/dashboard/operator", (303, 403, 403, 403, 303, 200)),
    Page("POST", "/dashboard/streamer/streams/{name}/key", (303, 200, 403, 403, 303, 200),
         mutates=True),
    Page("POST", "/dashboard/streamer/streams/{name}/invites", (303, 200, 403, 403, 303, 200),
         form=lambda s: {"label": "from the page"}, mutates=True),
    Page("POST", "/dashboard/streamer/streams/{name}/budget", (303, 200, 403, 403, 303, 200),
         form=lambda s: {"amount": "1.00"}, mutates=True),
    # An empty form changes nothing (422 for the admin), so the shared economics stay as they are.
    Page("POST", "/dashboard/operator/economics", (303, 403, 403, 403, 303, 422)),
    Page("GET", "/dashboard/friend/statement.csv", (303, 200, 200, 200, 303, 200)),
    Page("GET", "/dashboard/streamer/statement.csv", (303, 200, 200, 403, 303, 200)),
    Page("GET", "/dashboard/operator/statement.csv", (303, 403, 403, 403, 303, 200)),
]
# fmt: on

PAGE_CELLS = [
    pytest.param(page, principal, expected, id=f"{page.method} {page.path} as {principal}")
    for page in PAGES
    for principal, expected in zip(PRINCIPALS, page.expect, strict=True)
]


def session_cookie(s: Scenario, principal: str) -> str:
    """A dashboard session for the principal, issued directly (no Argon2 login needed)."""
    account_id = {
        "owner": s.people.owner.id,
        "other_streamer": s.people.other.id,
        "friend": s.people.friend.id,
        "admin": s.people.admin.id,
    }[principal]

    async def issue() -> str:
        ctx = s.client.app.state.ctx
        async with ctx.sessions() as session:
            account = await session.get(AccountRow, account_id)
            assert account is not None
            return (await issue_tokens(ctx, session, account)).refresh_token

    return s.client.portal.call(issue)


@pytest.mark.parametrize(("page", "principal", "expected"), PAGE_CELLS)
def test_page_authorization(
    client: TestClient, people: People, page: Page, principal: str, expected: int
):
    s = build_scenario(client, people)
    browser = Browser(client)
    headers = s.headers(principal) if principal == "node" else {}  # no login for a node token
    form = page.form(s) if page.form else {}
    if principal not in ("anonymous", "node"):
        browser.cookies["streamr_session"] = session_cookie(s, principal)
        form["csrf_token"] = csrf_for(browser.cookies["streamr_session"])
    if page.path == "/login" and page.method == "POST":
        assert browser.get("/login").status_code == 200
        form["csrf_token"] = browser.cookies["streamr_login_csrf"]
    before = state_of(s) if page.mutates and expected != 200 else None

    response = browser.request(
        page.method,
        page.path.format(name=s.stream),
        data=form if page.method == "POST" else None,
        headers=headers,
    )

    assert response.status_code == expected, response.text
    if expected == 303 and page.path.startswith("/dashboard"):
        assert response.headers["location"].startswith("/login"), response.headers
    if expected == 403:
        assert response.headers["content-type"].startswith("text/html")
    for label, secret in s.secrets.items():
        assert secret not in response.text, f"the {label} leaked"
    if before is not None:
        assert state_of(s) == before, "a refused call changed something"


def test_page_table_covers_every_dashboard_page():
    """A new page of the dashboards must get a row in PAGES."""
    served = {
        f"{method} {route.path}"
        for route in pages_router.routes
        for method in getattr(route, "methods", set()) - {"HEAD"}
    }
    assert served == {f"{p.method} {p.path}" for p in PAGES}
