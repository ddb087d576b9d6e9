"""Usage reports: counted once per report id (also when sent twice at the same moment), only for
viewer sessions of the node's own stream, and added up for the people who may see them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from streamr_coordinator.usage.models import IntegrityFailure, UsageLine, UsageReport

from .conftest import Account, Api, Node, assert_error


@dataclass
class Relay:
    owner: Account
    friend: Account
    stream: str
    node: Node


@pytest.fixture
def relay(api: Api) -> Relay:
    owner, friend = api.register(), api.register("friend")
    name, _ = api.create_stream(owner)
    api.set_status(owner, name, "LIVE")
    return Relay(owner, friend, name, api.register_node(friend, api.invite(owner, name)))


def post(api: Api, node: Node, report: dict) -> dict:
    response = api.client.post(f"/api/v1/nodes/{node.id}/usage", json=report, headers=node.headers)
    assert response.status_code == 200, response.text
    return response.json()


def usage(api: Api, node: Node, headers: dict[str, str] | None = None) -> dict:
    response = api.client.get(f"/api/v1/nodes/{node.id}/usage", headers=headers or node.headers)
    assert response.status_code == 200, response.text
    return response.json()


def line(session_id: str, size: int) -> dict:
    return {"session_id": session_id, "bytes": size, "segments": 3, "requests": 4}


def count_rows(api: Api, model, **where) -> int:
    async def run() -> int:
        async with api.client.app.state.ctx.sessions() as session:
            query = select(func.count()).select_from(model)
            for column, value in where.items():
                query = query.where(getattr(model, column) == value)
            return await session.scalar(query) or 0

    return api.client.portal.call(run)


def test_known_sessions_are_counted_and_unknown_ones_kept_apart(api, relay):
    first, second = api.open_session(relay.stream), api.open_session(relay.stream)
    report = api.usage_report(
        relay.stream,
        sessions=[
            line(first["session_id"], 1_000_000),
            line(second["session_id"], 250_000),
            line("made-up-session", 7_000_000),
        ],
        unattributed_bytes=4_096,
        unattributed_requests=2,
    )
    ack = post(api, relay.node, report)
    assert ack == {
        "report_id": report["report_id"],
        "duplicate": False,
        "counted_bytes": 1_250_000,
        "counted_sessions": 2,
        "unknown_sessions": 1,
    }
    assert count_rows(api, UsageReport, node_id=relay.node.id, report_id=report["report_id"]) == 1
    assert count_rows(api, UsageLine, session_id="made-up-session", known=False) >= 1
    assert count_rows(api, UsageLine, session_id=first["session_id"], known=True) == 1

    totals = usage(api, relay.node)
    assert totals["node_id"] == relay.node.id and totals["stream"] == relay.stream
    assert totals["reports"] == 1 and totals["counted_bytes"] == 1_250_000
    assert totals["unattributed_bytes"] == 4_096 and totals["unknown_sessions"] == 1
    assert totals["last_report_at"] is not None
    assert totals["last_hour"] == {
        "reports": 1,
        "counted_bytes": 1_250_000,
        "unattributed_bytes": 4_096,
    }
    assert len(totals["days"]) == 7
    assert totals["days"][0]["day"] == datetime.now(UTC).date().isoformat()
    assert totals["days"][0]["counted_bytes"] == 1_250_000
    assert all(day["reports"] == 0 for day in totals["days"][1:])


def test_the_same_report_twice_counts_once(api, relay):
    session = api.open_session(relay.stream)
    report = api.usage_report(relay.stream, sessions=[line(session["session_id"], 500)])
    first = post(api, relay.node, report)
    again = post(api, relay.node, report)
    assert first["duplicate"] is False and again["duplicate"] is True
    assert {k: v for k, v in again.items() if k != "duplicate"} == {
        k: v for k, v in first.items() if k != "duplicate"
    }
    # Even a changed body under the same id is the same report: it was counted already.
    changed = {**report, "sessions": [line(session["session_id"], 999_999)]}
    assert post(api, relay.node, changed) == again
    totals = usage(api, relay.node)
    assert totals["reports"] == 1 and totals["counted_bytes"] == 500


def test_the_same_report_sent_concurrently_counts_once(api, relay):
    sessions = [api.open_session(relay.stream)["session_id"] for _ in range(3)]
    report = api.usage_report(relay.stream, sessions=[line(s, 1_000) for s in sessions])

    def send(_: int):
        return api.client.post(
            f"/api/v1/nodes/{relay.node.id}/usage", json=report, headers=relay.node.headers
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(send, range(16)))
    assert [r.status_code for r in responses] == [200] * 16, [r.text for r in responses]
    acks = [r.json() for r in responses]
    assert sum(not a["duplicate"] for a in acks) == 1
    assert all(a["counted_bytes"] == 3_000 and a["counted_sessions"] == 3 for a in acks)
    assert count_rows(api, UsageReport, node_id=relay.node.id) == 1
    assert usage(api, relay.node)["counted_bytes"] == 3_000


def test_the_same_report_id_from_two_nodes_is_two_reports(api, relay):
    other = api.register_node(relay.friend, api.invite(relay.owner, relay.stream))
    session = api.open_session(relay.stream)["session_id"]
    report = api.usage_report(relay.stream, sessions=[line(session, 10)])
    assert post(api, relay.node, report)["duplicate"] is False
    assert post(api, other, report)["duplicate"] is False


def test_a_session_of_another_stream_is_unknown(api, relay):
    other_owner = api.register()
    other_stream, _ = api.create_stream(other_owner)
    api.set_status(other_owner, other_stream, "LIVE")
    foreign = api.open_session(other_stream)["session_id"]
    ack = post(api, relay.node, api.usage_report(relay.stream, sessions=[line(foreign, 123)]))
    assert ack["counted_bytes"] == 0 and ack["unknown_sessions"] == 1


def test_a_report_for_another_stream_is_refused(api, relay):
    other_owner = api.register()
    other_stream, _ = api.create_stream(other_owner)
    response = api.client.post(
        f"/api/v1/nodes/{relay.node.id}/usage",
        json=api.usage_report(other_stream),
        headers=relay.node.headers,
    )
    error = assert_error(response, 400)
    assert error["code"] == "wrong_stream" and relay.stream in error["message"]
    assert count_rows(api, UsageReport, node_id=relay.node.id) == 0


def test_integrity_failures_are_kept(api, relay):
    failure = {
        "upstream_url": "http://198.51.100.9:8090/hls/x/7.ts",
        "upstream_node_id": "00000000-0000-4000-8000-000000000001",
        "segment": "7.ts",
        "sequence": 7,
        "reason": "sha256 does not match the signed index",
    }
    post(api, relay.node, api.usage_report(relay.stream, integrity_failures=[failure, failure]))
    assert count_rows(api, IntegrityFailure, node_id=relay.node.id) == 2
    assert usage(api, relay.node)["integrity_failures"] == 2


def test_node_timestamps_without_an_offset_are_read_as_utc(api, relay):
    report = api.usage_report(
        relay.stream, period_start="2026-01-01T00:00:00", period_end="2026-01-01T00:00:10"
    )
    assert post(api, relay.node, report)["duplicate"] is False


@pytest.mark.parametrize(
    ("fields", "status", "words"),
    [
        ({"period_start": "0001-01-01T00:00:00+05:00"}, 422, "period_start"),
        ({"period_end": "9999-12-31T23:59:59-05:00"}, 422, "period_end"),
        ({"period_end": "2025-12-31T23:59:59Z"}, 400, "period_end is before period_start"),
    ],
)
def test_impossible_periods_are_refused(api, relay, fields, status, words):
    response = api.client.post(
        f"/api/v1/nodes/{relay.node.id}/usage",
        json=api.usage_report(relay.stream, **fields),
        headers=relay.node.headers,
    )
    assert words in assert_error(response, status)["message"]


def test_who_sees_a_nodes_usage(api, relay):
    admin, stranger = api.make_admin(), api.register()
    for who in (relay.owner, relay.friend, admin):
        assert usage(api, relay.node, who.headers)["reports"] == 0
    path = f"/api/v1/nodes/{relay.node.id}/usage"
    assert_error(api.client.get(path, headers=stranger.headers), 403)
    assert_error(api.client.get(path), 401)
