"""A viewer session's own routes: receipts (validated, stored once per batch id, only with the
session's token) and the session's sources, which follow what receipts and presence say."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from streamr_coordinator.database import utcnow
from streamr_coordinator.verification.models import ReceiptTally
from streamr_coordinator.viewers.models import Receipt, ReceiptBatch
from streamr_coordinator.viewers.service import SESSION_CALLS_PER_MINUTE
from streamr_coordinator.viewers.signals import FAILING_SESSIONS
from streamr_protocol.viewer_sessions import SessionClaims, encode_session_token

from .conftest import Account, Api, Node, assert_error, fresh_rate_window


@dataclass
class Watch:
    owner: Account
    friend: Account
    stream: str
    code: str
    nodes: list[Node]


@pytest.fixture
def watch(api: Api, nodes_host) -> Watch:
    """A live stream with two working relays: ``nodes[0]`` has the most room."""
    owner, friend = api.register(), api.register("friend")
    name, _ = api.create_stream(owner)
    api.set_status(owner, name, "LIVE")
    code = api.invite(owner, name, max_uses=20)
    nodes = [api.register_node(friend, code, name=f"node {i}") for i in range(2)]
    api.relay(nodes[0], nodes_host, egress_bps=1_000_000, egress_cap_bps=50_000_000)
    api.relay(nodes[1], nodes_host, egress_bps=10_000_000, egress_cap_bps=50_000_000)
    return Watch(owner, friend, name, code, nodes)


def viewer(session: dict[str, Any]) -> dict[str, str]:
    return {"X-Streamr-Session": session["token"]}


def receipt(node: Node | None, outcome: str = "ok", sequence: int = 1, **fields: Any) -> dict:
    return {
        "source_kind": "origin" if node is None else "node",
        "node_id": None if node is None else node.id,
        "segment": f"{sequence}.ts",
        "sequence": sequence,
        "bytes": 500_000,
        "ttfb_ms": 20,
        "download_ms": 150,
        "outcome": outcome,
        **fields,
    }


def batch(*receipts: dict, batch_id: str | None = None) -> dict:
    return {"batch_id": batch_id or uuid.uuid4().hex, "receipts": list(receipts)}


def send(api: Api, session: dict, body: dict, headers: dict | None = None) -> Any:
    return api.client.post(
        f"/api/v1/sessions/{session['session_id']}/receipts",
        json=body,
        headers=viewer(session) if headers is None else headers,
    )


def stored(api: Api, session: dict, body: dict) -> dict:
    response = send(api, session, body)
    assert response.status_code == 200, response.text
    return response.json()


def sources(api: Api, session: dict) -> dict:
    response = api.client.get(
        f"/api/v1/sessions/{session['session_id']}/sources", headers=viewer(session)
    )
    assert response.status_code == 200, response.text
    return response.json()


def load(api: Api, host, node: Node, egress_bps: int, cap_bps: int) -> None:
    """A heartbeat from ``node`` (at its checked URL) reporting this load."""
    api.heartbeat(
        node, public_url=host.node_url(node.id), egress_bps=egress_bps, egress_cap_bps=cap_bps
    )


def node_order(answer: dict) -> list[str | None]:
    return [s["node_id"] for s in answer["sources"]]


def count(api: Api, model, **where) -> int:
    async def run() -> int:
        async with api.client.app.state.ctx.sessions() as session:
            query = select(func.count()).select_from(model)
            for column, value in where.items():
                query = query.where(getattr(model, column) == value)
            return await session.scalar(query) or 0

    return api.client.portal.call(run)


def age_receipts(api: Api, session_id: str, seconds: float) -> None:
    async def run() -> None:
        async with api.client.app.state.ctx.sessions() as session:
            await session.execute(
                update(Receipt)
                .where(Receipt.session_id == session_id)
                .values(received_at=utcnow() - timedelta(seconds=seconds))
            )
            await session.commit()

    api.client.portal.call(run)


# --- Receipts ------------------------------------------------------------------------------


def test_receipts_are_stored_with_what_the_viewer_measured(api, watch):
    session = api.open_session(watch.stream)
    body = batch(
        receipt(watch.nodes[0], sequence=7, bytes=812_345, ttfb_ms=12, download_ms=90),
        receipt(None, sequence=8),
    )
    ack = stored(api, session, body)
    assert ack == {"batch_id": body["batch_id"], "duplicate": False, "receipts": 2}

    async def rows() -> list[Receipt]:
        async with api.client.app.state.ctx.sessions() as db:
            found = await db.scalars(
                select(Receipt)
                .where(Receipt.session_id == session["session_id"])
                .order_by(Receipt.sequence)
            )
            return list(found)

    first, second = api.client.portal.call(rows)
    assert (first.node_id, first.source_kind, first.segment, first.sequence) == (
        watch.nodes[0].id,
        "node",
        "7.ts",
        7,
    )
    assert (first.bytes, first.ttfb_ms, first.download_ms, first.outcome) == (
        812_345,
        12,
        90,
        "ok",
    )
    assert second.node_id is None and second.source_kind == "origin"


def test_a_batch_sent_again_is_stored_once(api, watch):
    session = api.open_session(watch.stream)
    body = batch(receipt(watch.nodes[0]), receipt(watch.nodes[1], sequence=2))
    assert stored(api, session, body)["duplicate"] is False
    again = stored(api, session, body)
    assert again == {"batch_id": body["batch_id"], "duplicate": True, "receipts": 2}
    assert count(api, Receipt, session_id=session["session_id"]) == 2
    # ...and added to the receipt tallies once: one per node the batch names.
    tallies = tallies_of(api, session["session_id"])
    assert {t.node_id: t.ok_receipts + t.failures + t.mismatches for t in tallies} == {
        watch.nodes[0].id: 1,
        watch.nodes[1].id: 1,
    }
    bucket = api.client.app.state.ctx.settings.reconcile_interval_s
    assert {t.bucket_s for t in tallies} == {bucket}


def tallies_of(api: Api, session_id: str) -> list[ReceiptTally]:
    async def run() -> list[ReceiptTally]:
        async with api.client.app.state.ctx.sessions() as db:
            return list(await db.scalars(select(ReceiptTally).filter_by(session_id=session_id)))

    return api.client.portal.call(run)


def test_a_batch_sent_many_times_at_once_is_stored_once(api, watch):
    session = api.open_session(watch.stream)
    body = batch(*(receipt(watch.nodes[0], sequence=s) for s in range(5)))

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: send(api, session, body), range(16)))
    assert [r.status_code for r in responses] == [200] * 16, [r.text for r in responses]
    acks = [r.json() for r in responses]
    assert sum(not a["duplicate"] for a in acks) == 1
    assert all(a["receipts"] == 5 for a in acks)
    assert count(api, ReceiptBatch, session_id=session["session_id"]) == 1
    assert count(api, Receipt, session_id=session["session_id"]) == 5


def test_batch_ids_are_per_session(api, watch):
    first, second = api.open_session(watch.stream), api.open_session(watch.stream)
    body = batch(receipt(None))
    assert stored(api, first, body)["duplicate"] is False
    assert stored(api, second, body)["duplicate"] is False


def test_a_node_of_another_stream_is_refused_and_nothing_is_stored(api, watch):
    other_owner = api.register()
    other, _ = api.create_stream(other_owner)
    stranger = api.register_node(watch.friend, api.invite(other_owner, other))
    session = api.open_session(watch.stream)
    for node_id in (stranger.id, str(uuid.uuid4())):
        body = batch(receipt(watch.nodes[0]), {**receipt(watch.nodes[0]), "node_id": node_id})
        error = assert_error(send(api, session, body), 400)
        assert error["code"] == "unknown_node" and "receipts.1.node_id" in error["message"]
    assert count(api, ReceiptBatch, session_id=session["session_id"]) == 0


def test_a_node_that_left_still_gets_its_receipts(api, watch):
    session = api.open_session(watch.stream)
    gone = watch.nodes[1]
    assert api.client.delete(f"/api/v1/nodes/{gone.id}", headers=gone.headers).status_code == 204
    assert stored(api, session, batch(receipt(gone)))["receipts"] == 1


# --- Who may send them ---------------------------------------------------------------------


def test_the_token_works_as_header_and_as_bearer(api, watch):
    session = api.open_session(watch.stream)
    bearer = {"Authorization": f"Bearer {session['token']}"}
    assert send(api, session, batch(receipt(None)), headers=bearer).status_code == 200
    sources_path = f"/api/v1/sessions/{session['session_id']}/sources"
    assert api.client.get(sources_path, headers=bearer).status_code == 200


@pytest.mark.parametrize("route", ["receipts", "sources"])
def test_without_the_sessions_own_token_nothing_is_accepted(api, watch, route):
    session = api.open_session(watch.stream)
    other = api.open_session(watch.stream)
    ctx = api.client.app.state.ctx
    expired = encode_session_token(
        SessionClaims(
            session_id=session["session_id"],
            stream=watch.stream,
            expires_at=int(time.time()) - 5,
            key_id=ctx.signer.key_id,
        ),
        ctx.signer.sign_bytes,
    )
    payload, signature = session["token"].split(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature
    cases = [
        ({}, 401, "session's token"),
        ({"X-Streamr-Session": "nonsense"}, 401, "refused"),
        ({"X-Streamr-Session": forged}, 401, "refused"),
        ({"X-Streamr-Session": expired}, 401, "expired"),
        ({"Authorization": "Basic abc"}, 401, "session's token"),
        (watch.owner.headers, 403, "access token"),
        (watch.nodes[0].headers, 403, "node token"),
        (viewer(other), 403, "another viewer session"),
    ]
    for headers, status, words in cases:
        path = f"/api/v1/sessions/{session['session_id']}/{route}"
        if route == "receipts":
            response = api.client.post(path, json=batch(receipt(None)), headers=headers)
        else:
            response = api.client.get(path, headers=headers)
        assert words in assert_error(response, status)["message"], (headers, response.text)
    assert count(api, ReceiptBatch, session_id=session["session_id"]) == 0


def test_a_session_whose_stream_was_deleted_is_gone(api, watch):
    session = api.open_session(watch.stream)
    api.set_status(watch.owner, watch.stream, "OFFLINE")  # a live stream cannot be deleted
    deleted = api.client.delete(f"/api/v1/streams/{watch.stream}", headers=watch.owner.headers)
    assert deleted.status_code == 204
    assert (
        "no longer exists" in assert_error(send(api, session, batch(receipt(None))), 404)["message"]
    )
    response = api.client.get(
        f"/api/v1/sessions/{session['session_id']}/sources", headers=viewer(session)
    )
    assert "no longer exists" in assert_error(response, 404)["message"]


def test_a_session_may_call_its_routes_only_so_often(api, watch):
    session = api.open_session(watch.stream)
    path = f"/api/v1/sessions/{session['session_id']}/sources"
    fresh_rate_window()
    for _ in range(SESSION_CALLS_PER_MINUTE):
        assert api.client.get(path, headers=viewer(session)).status_code == 200
    refused = api.client.get(path, headers=viewer(session))
    assert "a minute" in assert_error(refused, 429)["message"]
    assert refused.headers["retry-after"] == "60"
    # Each route and each session has its own allowance.
    assert send(api, session, batch(receipt(None))).status_code == 200
    assert sources(api, api.open_session(watch.stream))["sources"]


# --- Sources: what routing makes of presence and receipts ------------------------------------


def test_sources_answer_with_the_stream_state_and_when_to_ask_again(api, watch):
    session = api.open_session(watch.stream)
    answer = sources(api, session)
    assert answer["session_id"] == session["session_id"] and answer["stream"] == watch.stream
    assert answer["status"] == "LIVE" and answer["on_air"] is True
    assert answer["refresh_s"] == 2.0
    assert node_order(answer) == [watch.nodes[0].id, watch.nodes[1].id, None]
    assert answer["sources"][0]["name"] == "node 0"
    api.set_status(watch.owner, watch.stream, "OFFLINE")
    answer = sources(api, session)
    assert answer["status"] == "OFFLINE" and answer["on_air"] is False


def test_mismatches_from_two_sessions_flag_the_node_for_every_viewer_until_the_penalty_ends(
    api, watch
):
    bad, good = watch.nodes
    reporter, second, bystander = (api.open_session(watch.stream) for _ in range(3))
    stored(api, reporter, batch(receipt(bad, "mismatch")))
    # One viewer's word is not enough (it could be a lie about a competitor): the reporter
    # leaves the node, the others keep it while a probe checks it (this node serves nothing
    # here, so the probe cannot confirm anything).
    assert node_order(sources(api, reporter)) == [good.id, None]
    assert node_order(sources(api, bystander)) == [bad.id, good.id, None]
    stored(api, second, batch(receipt(bad, "mismatch")))
    assert node_order(sources(api, bystander)) == [good.id, None]
    assert node_order(api.open_session(watch.stream)) == [good.id, None]
    # Once the penalty is over (STREAMR_VIEWER_FLAG_S), the node is routed to again.
    for session in (reporter, second):
        age_receipts(
            api, session["session_id"], api.client.app.state.ctx.settings.viewer_flag_s + 1
        )
    assert node_order(api.open_session(watch.stream)) == [bad.id, good.id, None]


@pytest.mark.parametrize("outcome", ["error", "stall"])
def test_a_failure_moves_the_session_at_once_and_enough_of_them_flag_the_node(api, watch, outcome):
    failing, other = watch.nodes
    sessions = [api.open_session(watch.stream) for _ in range(FAILING_SESSIONS)]
    stored(api, sessions[0], batch(receipt(failing, outcome)))
    assert node_order(sources(api, sessions[0])) == [other.id, None]
    # One viewer's trouble may be its own network: the others keep the node.
    assert node_order(sources(api, sessions[1]))[0] == failing.id
    for session in sessions[1:]:
        stored(api, session, batch(receipt(failing, outcome)))
    assert node_order(api.open_session(watch.stream)) == [other.id, None]
    # The session's avoidance and the flag both end with the failure window; the session
    # stays on the node it moved to.
    for session in sessions:
        age_receipts(api, session["session_id"], 31)
    assert node_order(sources(api, sessions[0])) == [other.id, failing.id, None]
    assert node_order(api.open_session(watch.stream)) == [failing.id, other.id, None]


def test_a_viewer_sticks_to_its_node_while_new_viewers_go_to_a_roomier_one(api, watch, nodes_host):
    first, second = watch.nodes
    session = api.open_session(watch.stream)
    assert node_order(session)[0] == first.id
    load(api, nodes_host, second, 0, 900_000_000)
    assert node_order(api.open_session(watch.stream))[0] == second.id
    assert node_order(sources(api, session))[0] == first.id, "moved for a better score"
    # Full: the viewer moves, and then sticks to where it went.
    load(api, nodes_host, first, 50_000_000, 50_000_000)
    assert node_order(sources(api, session)) == [second.id, None]
    load(api, nodes_host, first, 0, 5_000_000_000)
    assert node_order(sources(api, session))[0] == second.id


def test_measured_latency_orders_otherwise_equal_nodes(api, watch, nodes_host):
    slow, fast = watch.nodes
    for node in watch.nodes:
        load(api, nodes_host, node, 0, 50_000_000)
    measurer = api.open_session(watch.stream)
    stored(
        api,
        measurer,
        batch(
            *(receipt(slow, sequence=s, ttfb_ms=600) for s in range(3)),
            *(receipt(fast, sequence=s, ttfb_ms=15) for s in range(3)),
        ),
    )
    assert node_order(api.open_session(watch.stream)) == [fast.id, slow.id, None]


def test_a_node_that_leaves_is_gone_from_the_next_answer(api, watch):
    session = api.open_session(watch.stream)
    leaving = watch.nodes[0]
    assert node_order(sources(api, session))[0] == leaving.id
    response = api.client.delete(f"/api/v1/nodes/{leaving.id}/presence", headers=leaving.headers)
    assert response.status_code == 204
    assert node_order(sources(api, session)) == [watch.nodes[1].id, None]
