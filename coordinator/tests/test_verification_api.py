"""Reconciliation and trust through the database and the API: a viewer that really played and
one that never asked for its sources, a node's claims for both, one interval reconciled once
(however often it is run), discrepancies with evidence, trust from it, and the routes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from streamr_coordinator.database import utcnow
from streamr_coordinator.verification.models import (
    Discrepancy,
    Reconciliation,
    ReconciliationSession,
    TrustState,
    Watermark,
)
from streamr_coordinator.verification.reconcile_service import (
    WATERMARK,
    WatermarkMoved,
    interval_start,
    reconcile_due,
    reconcile_interval,
)
from streamr_coordinator.verification.trust_service import SETTLE_S, update_trust

from .conftest import Account, Api, Node, assert_error
from .verification_app import attest, from_address, vclient  # noqa: F401 - fixture

SEGMENTS = [(seq, os.urandom(1000)) for seq in range(1, 4)]


@dataclass
class Scene:
    api: Api
    owner: Account
    friend: Account
    stream: str
    node: Node
    player: dict
    idle: dict


def receipts_body(node: Node) -> dict:
    return {
        "batch_id": os.urandom(8).hex(),
        "receipts": [
            {
                "source_kind": "node",
                "node_id": node.id,
                "segment": f"{seq}.ts",
                "sequence": seq,
                "bytes": len(data),
                "ttfb_ms": 20,
                "download_ms": 200,
                "outcome": "ok",
            }
            for seq, data in SEGMENTS
        ],
    }


@pytest.fixture
def scene(vclient) -> Scene:  # noqa: F811
    api = Api(vclient)
    owner, friend = api.register(), api.register("friend")
    stream, _ = api.create_stream(owner)
    api.set_status(owner, stream, "LIVE")
    attest(vclient, stream, SEGMENTS)
    with from_address(vclient, "198.51.100.7"):  # the node's own network
        node = api.register_node(friend, api.invite(owner, stream))
    player, idle = api.open_session(stream), api.open_session(stream)
    polled = vclient.get(
        f"/api/v1/sessions/{player['session_id']}/sources",
        headers={"X-Streamr-Session": player["token"]},
    )
    assert polled.status_code == 200
    for session in (player, idle):  # the idle one never asked for its sources: no playback
        sent = vclient.post(
            f"/api/v1/sessions/{session['session_id']}/receipts",
            json=receipts_body(node),
            headers={"X-Streamr-Session": session["token"]},
        )
        assert sent.status_code == 200, sent.text
    total = sum(len(d) for _, d in SEGMENTS)
    with from_address(vclient, "198.51.100.7"):
        report = api.usage_report(
            stream,
            sessions=[
                {"session_id": s["session_id"], "bytes": total, "segments": 3, "requests": 3}
                for s in (player, idle)
            ],
        )
        sent = vclient.post(f"/api/v1/nodes/{node.id}/usage", json=report, headers=node.headers)
        assert sent.status_code == 200, sent.text
    return Scene(api, owner, friend, stream, node, player, idle)


def call(scene: Scene, fn):
    return scene.api.client.portal.call(fn)


def reconcile(scene: Scene) -> dict:
    """Reconcile this scene's intervals. An earlier test may have run the watermark ahead of the
    clock, so it is set back first: intervals already done for other nodes are skipped (the
    unique key), this scene's node is new in them."""
    ctx = scene.api.client.app.state.ctx
    now = utcnow()

    async def run() -> dict:
        async with ctx.sessions() as session:
            await session.execute(
                update(Watermark)
                .where(Watermark.name == WATERMARK)
                .values(position=interval_start(now - timedelta(seconds=60), 10))
            )
            await session.commit()
        return await reconcile_due(ctx, now + timedelta(seconds=30))

    return call(scene, run)


def rows(scene: Scene, query):
    async def run():
        async with scene.api.client.app.state.ctx.sessions() as session:
            return list(await session.scalars(query))

    return call(scene, run)


def test_an_interval_is_reconciled_once_and_pays_only_what_a_real_viewer_receipted(scene):
    ctx = scene.api.client.app.state.ctx
    result = reconcile(scene)
    assert result["intervals"] >= 1, result
    mine = rows(scene, select(Reconciliation).where(Reconciliation.node_id == scene.node.id))
    total = sum(len(d) for _, d in SEGMENTS)
    assert sum(r.claimed_bytes for r in mine) == 2 * total
    assert sum(r.receipted_bytes for r in mine) == total
    assert sum(r.paid_bytes for r in mine) == total, "the viewer that played, and no more"
    assert sum(r.excluded_sessions for r in mine) == 1
    assert sum(r.viewer_ok for r in mine) == 3
    kinds = rows(scene, select(Discrepancy).where(Discrepancy.node_id == scene.node.id))
    no_playback = [d for d in kinds if d.kind == "no_playback"]
    assert [d.session_id for d in no_playback] == [scene.idle["session_id"]]
    assert no_playback[0].claimed == total and no_playback[0].evidence["receipted_if_counted"]
    totals = rows(
        scene,
        select(ReconciliationSession).where(ReconciliationSession.node_id == scene.node.id),
    )
    by_session = {t.session_id: t for t in totals}
    assert by_session[scene.player["session_id"]].paid == total
    assert by_session[scene.idle["session_id"]].excluded_reason == "no_playback"

    # Running again, or a second worker redoing the interval, writes nothing more.
    call(scene, lambda: reconcile_due(ctx, utcnow() + timedelta(seconds=30)))
    start = interval_start(mine[0].interval_start, ctx.settings.reconcile_interval_s)
    with pytest.raises(WatermarkMoved):
        call(scene, lambda: reconcile_interval(ctx, start))
    again = rows(scene, select(Reconciliation).where(Reconciliation.node_id == scene.node.id))
    assert [r.id for r in again] == [r.id for r in mine]
    count = rows(
        scene,
        select(func.count()).select_from(Discrepancy).where(Discrepancy.node_id == scene.node.id),
    )
    assert count == [len(kinds)]


def test_same_network_sessions_are_excluded(scene):
    api = scene.api
    with from_address(api.client, "198.51.100.200"):  # the node's /24
        neighbour = api.open_session(scene.stream)
    polled = api.client.get(
        f"/api/v1/sessions/{neighbour['session_id']}/sources",
        headers={"X-Streamr-Session": neighbour["token"]},
    )
    assert polled.status_code == 200
    sent = api.client.post(
        f"/api/v1/sessions/{neighbour['session_id']}/receipts",
        json=receipts_body(scene.node),
        headers={"X-Streamr-Session": neighbour["token"]},
    )
    assert sent.status_code == 200
    report = api.usage_report(
        scene.stream,
        sessions=[
            {"session_id": neighbour["session_id"], "bytes": 3000, "segments": 3, "requests": 3}
        ],
    )
    sent = api.client.post(
        f"/api/v1/nodes/{scene.node.id}/usage", json=report, headers=scene.node.headers
    )
    assert sent.status_code == 200
    reconcile(scene)
    found = rows(
        scene,
        select(Discrepancy).where(
            Discrepancy.node_id == scene.node.id, Discrepancy.session_id == neighbour["session_id"]
        ),
    )
    assert [d.kind for d in found] == ["same_network"]


def test_trust_and_the_routes_show_it(scene):
    ctx = scene.api.client.app.state.ctx
    api, node = scene.api, scene.node
    reconcile(scene)
    result = call(scene, lambda: update_trust(ctx, utcnow() + timedelta(seconds=SETTLE_S + 60)))
    assert result.get("reconciliations", 0) >= 1, result
    assert rows(scene, select(TrustState).where(TrustState.node_id == node.id))

    trust = api.client.get(f"/api/v1/nodes/{node.id}/trust", headers=scene.friend.headers)
    assert trust.status_code == 200, trust.text
    body = trust.json()
    assert body["standing"]["level"] == "vetting" and body["standing"]["pay_bps"] < 10_000
    assert {e["source"] for e in body["history"]} >= {"reconciliation", "viewers"}

    standing = api.client.get(f"/api/v1/nodes/{node.id}/standing", headers=node.headers)
    assert standing.status_code == 200, standing.text
    assert standing.json()["message"] and standing.json()["budget"]["state"]

    recs = api.client.get(
        f"/api/v1/nodes/{node.id}/reconciliations", headers=scene.owner.headers
    ).json()["reconciliations"]
    assert recs and any(d["kind"] == "no_playback" for r in recs for d in r["discrepancies"])
    admin = api.make_admin()
    overview = api.client.get("/api/v1/admin/verification/trust", headers=admin.headers).json()
    assert node.id in {n["node_id"] for n in overview["nodes"]}
    found = api.client.get(
        "/api/v1/admin/verification/discrepancies?kind=no_playback&limit=500",
        headers=admin.headers,
    ).json()["discrepancies"]
    assert scene.idle["session_id"] in {d["session_id"] for d in found}
    probes = api.client.get("/api/v1/admin/verification/probes", headers=admin.headers)
    assert probes.status_code == 200 and "probes" in probes.json()


ADMIN_PROBES = "/api/v1/admin/verification/probes"
ADMIN_DISCREPANCIES = "/api/v1/admin/verification/discrepancies"


@pytest.mark.parametrize(
    ("path", "query"),
    [
        (ADMIN_PROBES, "limit=0"),
        (ADMIN_PROBES, "limit=501"),
        (ADMIN_PROBES, "outcome=fine"),
        (ADMIN_DISCREPANCIES, "limit=many"),
        (ADMIN_DISCREPANCIES, "kind=" + "k" * 33),
        ("/api/v1/nodes/{node}/probes", "limit=-1"),
        ("/api/v1/nodes/{node}/reconciliations", "limit=1000"),
        ("/api/v1/nodes/{node}/trust", "limit=x"),
    ],
)
def test_bad_queries_are_4xx_with_a_message(scene, path, query):
    headers = (scene.api.make_admin() if "admin" in path else scene.friend).headers
    url = f"{path.format(node=scene.node.id)}?{query}"
    assert_error(scene.api.client.get(url, headers=headers), 422)


def test_unknown_node_is_404(scene):
    response = scene.api.client.get("/api/v1/nodes/not-a-node/trust", headers=scene.friend.headers)
    assert "No registered node" in assert_error(response, 404)["message"]
