"""Cheating friend nodes, end to end: real nginx-rtmp ingest, coordinator (with its worker's
prober, reconciliation, trust and accrual jobs in-process), ffmpeg test card, simulated viewers
that do what the watch page does (tests/simulated_viewers.py), an honest `streamr-node` and
two real nodes with one dishonest patch each (tests/cheating_node.py):

- ``inflate`` reports four times the bytes it served;
- ``nothing`` answers every segment with 404 and still reports the bytes as served.

What must hold, from the coordinator's own records (reconciliations, probes, trust, ledger):

- no node is ever paid for more bytes than viewers and probes verifiably received from it;
- the inflating node's claims are recorded as discrepancies and it loses trust;
- the node that serves nothing is paid nothing, fails probes and loses trust;
- the honest node is paid for (nearly) everything it delivered and keeps its good standing;
- the ledger balances, and every friend's earnings follow their paid bytes.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.coordinator import STREAMR
from tests.nodes import STREAMR_NODE, NodeProcess, invite, run_node, wait_until
from tests.simulated_viewers import Swarm, Viewer
from tests.stack import Stack, run_stack

pytestmark = pytest.mark.timeout(420)

STREAM = "fraud"
VIEWERS = 6
WATCH_S = 70.0
ADMIN = ("operator@example.com", "operator's long passphrase")
SETTINGS: dict[str, Any] = {
    "origin_fanout": 3,  # every node pulls from the origin: no cheater upstream of another
    # Reconciliation allows one report interval of claims to be ahead of their receipts; the
    # watch page's receipts trail by up to 5 s, so reports may not come faster than that (the
    # default is 10 s), or an honest node's first seconds look unreceipted.
    "usage_report_interval_s": 5,
    "assignment_refresh_s": 1,
    "viewer_sessions_per_minute": 1000,  # every viewer and the prober come from 127.0.0.1
    "probe_interval_s": 4,
    "probe_segments": 2,
    "reconcile_interval_s": 10,
    # Viewers send receipts every 5 s (as the watch page does): an interval is reconciled only
    # once they are in, or an honest node's last seconds would look unreceipted.
    "reconcile_grace_s": 8,
    "verification_jobs_interval_s": 3,
    "trust_vetting_min_probes": 2,
    "trust_vetting_min_s": 0,
    "trust_warning_grace_s": 5,
    "stats_interval_s": 5,
}
BUDGET_MICRO_USD = 5_000_000  # $5: far more than a few minutes of test card


@dataclass
class Network:
    stack: Stack
    admin: dict[str, str]
    honest: NodeProcess
    inflate: NodeProcess
    nothing: NodeProcess
    delivered: Counter[str]  # verified bytes viewers received, by node id
    outcomes: dict[str, Counter[str]]  # viewers' fetch outcomes, by node id
    watched_until: datetime

    def get(self, path: str, **params: object) -> Any:
        answer = self.stack.api.http.get(path, params=params, headers=self.admin)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def reconciliations(self, node: NodeProcess) -> list[dict[str, Any]]:
        return self.get(f"/api/v1/nodes/{node.node_id}/reconciliations", limit=500)[
            "reconciliations"
        ]

    def probes(self, node: NodeProcess) -> list[dict[str, Any]]:
        return self.get(f"/api/v1/nodes/{node.node_id}/probes", limit=500)["probes"]

    def standing(self, node: NodeProcess) -> dict[str, Any]:
        return self.get(f"/api/v1/nodes/{node.node_id}/trust")["standing"]

    def paid(self, node: NodeProcess) -> int:
        return sum(r["paid_bytes"] for r in self.reconciliations(node))

    def verified(self, node: NodeProcess) -> int:
        """Bytes that provably reached a client from this node: the viewers' verified fetches
        and the prober's (a probe's ``ok`` is a size and SHA-256 match, like a viewer's)."""
        probed = sum(p["bytes"] for p in self.probes(node) if p["outcome"] == "ok")
        return self.delivered[node.node_id] + probed


def make_admin(stack: Stack) -> dict[str, str]:
    made = subprocess.run(
        [STREAMR, "admin", "create", "--email", ADMIN[0], "--password-stdin"],
        input=ADMIN[1],
        text=True,
        env=stack.coordinator.env,
        capture_output=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    login = stack.api.http.post(
        "/api/v1/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]}
    )
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def watch(stack: Stack, seconds: float) -> tuple[Counter[str], dict[str, Counter[str]]]:
    """``VIEWERS`` simulated viewers watch for ``seconds``; verified bytes and outcomes by node."""
    swarm = Swarm(coordinator=stack.coordinator.url, stream=STREAM, key=stack.api.public_key)

    async def main() -> None:
        viewers = [asyncio.create_task(Viewer(n, swarm).run()) for n in range(VIEWERS)]
        await asyncio.sleep(seconds)
        swarm.stop.set()
        failed = [r for r in await asyncio.gather(*viewers, return_exceptions=True) if r]
        assert not failed, failed

    asyncio.run(main())
    delivered: Counter[str] = Counter()
    outcomes: dict[str, Counter[str]] = {}
    for fetch in swarm.fetches:
        if fetch.node_id is None:
            continue
        outcomes.setdefault(fetch.node_id, Counter())[fetch.outcome] += 1
        if fetch.outcome == "ok":
            delivered[fetch.node_id] += fetch.bytes
    return delivered, outcomes


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> Iterator[Network]:
    workdir = tmp_path_factory.mktemp("fraud")
    with run_stack(workdir, **SETTINGS) as stack:
        admin = make_admin(stack)
        key = stack.api.create_stream(STREAM)
        funded = stack.api.http.post(
            f"/api/v1/streams/{STREAM}/budget",
            json={"amount_micro_usd": BUDGET_MICRO_USD},
            headers=stack.api.auth,
        )
        assert funded.status_code == 201, funded.text
        stack.publish(key, 400)
        stack.wait_status(STREAM, "LIVE")
        stack.wait_listed(STREAM, 2)
        code = invite(stack.api.http, stack.api.auth, STREAM)
        url = stack.coordinator.url
        with (
            run_node(url, code, workdir, "honest") as honest,
            run_node(url, code, workdir, "inflate", cheat="inflate") as inflate,
            run_node(url, code, workdir, "nothing", cheat="nothing") as nothing,
        ):
            for node in (honest, inflate, nothing):
                wait_until(
                    lambda node=node: node.stats()["window"]["segments"] >= 2,
                    f"{node.name} holds segments",
                    timeout_s=60,
                )
            delivered, outcomes = watch(stack, WATCH_S)
            watched_until = datetime.now(UTC)
            net = Network(
                stack, admin, honest, inflate, nothing, delivered, outcomes, watched_until
            )
            yield net


def settled(net: Network) -> None:
    """Until the reconciler has passed the end of the watch (with its grace, so every report
    and receipt batch of it is in). It reconciles intervals in order for every node at once,
    and the prober keeps the honest node busy, so a row of the honest node's that starts after
    the watch means every node's intervals of the watch are done."""
    after = net.watched_until + timedelta(seconds=SETTINGS["reconcile_interval_s"])

    def done() -> bool:
        rows = net.reconciliations(net.honest)
        return bool(rows) and datetime.fromisoformat(rows[0]["interval_start"]) >= after

    wait_until(done, "the watch is reconciled", timeout_s=120, every_s=2)


def test_no_node_is_paid_for_more_than_it_delivered(network):
    settled(network)
    for node in (network.honest, network.inflate, network.nothing):
        paid, verified = network.paid(node), network.verified(node)
        assert paid <= verified, (node.name, paid, verified)
    # Bytes did reach viewers or probes from both (nothing would be proven otherwise).
    assert network.verified(network.honest) > 0
    assert network.verified(network.inflate) > 0
    # Viewers themselves were sent to the honest node, not only probes: routing found it.
    assert network.delivered[network.honest.node_id] > 0, network.delivered


def test_the_honest_node_is_paid_for_what_it_delivered_and_keeps_its_standing(network):
    settled(network)
    node = network.honest
    paid, verified = network.paid(node), network.verified(node)
    assert paid >= 0.9 * verified, (paid, verified)
    rows = network.reconciliations(node)
    # Every interval agrees, the first with viewers too: their opening bursts (three segments
    # at once) may be claimed before the interval ends and receipted after it.
    assert not [r for r in rows if r["outcome"] == "disagree"], rows
    standing = wait_until(
        lambda: (s := network.standing(node))["level"] in ("good", "vetting") and s,
        "the honest node's trust is updated",
    )
    assert standing["score"] >= 0.9, standing
    assert all(p["outcome"] == "ok" for p in network.probes(node)), network.probes(node)


def test_an_inflating_node_is_paid_only_what_viewers_confirm_and_loses_trust(network):
    settled(network)
    node = network.inflate
    rows = [r for r in network.reconciliations(node) if r["outcome"] != "idle"]
    claimed = sum(r["claimed_bytes"] for r in rows)
    receipted = sum(r["receipted_bytes"] for r in rows)
    assert claimed >= 3 * receipted > 0, (claimed, receipted)
    assert any(r["outcome"] == "disagree" for r in rows), rows
    assert any(r["discrepancies"] for r in rows), "no discrepancy recorded with its evidence"
    standing = wait_until(
        lambda: (s := network.standing(node))["level"] in ("warned", "penalised") and s,
        "the inflating node is warned",
        timeout_s=90,
        every_s=2,
    )
    assert standing["score"] < network.standing(network.honest)["score"]
    assert standing["message"], "the friend is told why"


def test_a_node_that_serves_nothing_is_paid_nothing_and_fails_probes(network):
    settled(network)
    node = network.nothing
    assert network.delivered[node.node_id] == 0
    rows = network.reconciliations(node)
    assert sum(r["claimed_bytes"] for r in rows) > 0, "it did claim bytes; nothing proven"
    assert network.paid(node) == 0
    probes = network.probes(node)
    assert probes and all(p["outcome"] != "ok" for p in probes), probes
    wait_until(
        lambda: network.standing(node)["level"] in ("warned", "penalised"),
        "the node that serves nothing is warned",
        timeout_s=90,
        every_s=2,
    )


def test_the_ledger_balances_and_earnings_follow_paid_bytes(network):
    settled(network)
    nodes = (network.honest, network.inflate, network.nothing)

    def accruals() -> dict[str, list[dict[str, Any]]]:
        lines = network.get("/api/v1/statements/operator", limit=100_000)["accruals"]
        by_node: dict[str, list[dict[str, Any]]] = {node.node_id: [] for node in nodes}
        for line in lines:
            by_node.setdefault(line["node_id"], []).append(line)
        return by_node

    def caught_up() -> dict[str, list[dict[str, Any]]] | None:
        found = accruals()
        for node in nodes:
            accrued = {line["reconciliation_id"] for line in found[node.node_id]}
            paying = {r["id"] for r in network.reconciliations(node) if r["paid_bytes"]}
            if not paying <= accrued:
                return None
        return found

    found = wait_until(caught_up, "every paid interval is accrued", timeout_s=60, every_s=2)
    for node in nodes:
        # Each line is exactly its interval's paid bytes, priced: nothing more.
        paid = {r["id"]: r["paid_bytes"] for r in network.reconciliations(node)}
        for line in found[node.node_id]:
            assert line["paid_bytes"] == paid[line["reconciliation_id"]], line
            assert line["gross_micro_usd"] == line["net_micro_usd"] + line["fee_micro_usd"]
    assert sum(line["net_micro_usd"] for line in found[network.honest.node_id]) > 0
    assert all(line["gross_micro_usd"] == 0 for line in found[network.nothing.node_id])
    operator = network.get("/api/v1/statements/operator")
    assert operator["totals"]["ledger_sum_micro_usd"] == 0, operator["totals"]
    budget = network.get(f"/api/v1/streams/{STREAM}/budget")
    spent = sum(line["gross_micro_usd"] for lines in found.values() for line in lines)
    assert budget["balance_micro_usd"] == BUDGET_MICRO_USD - spent, budget


def node_status(node: NodeProcess) -> str:
    status = subprocess.run(
        [STREAMR_NODE, "status"], env=node.env, capture_output=True, text=True, timeout=30
    )
    assert status.returncode == 0, status.stderr
    return status.stdout


def test_streamr_node_status_warns_the_cheater_and_shows_the_honest_friend_earnings(network):
    node = network.nothing
    wait_until(
        lambda: network.standing(node)["level"] in ("warned", "penalised"),
        "the node that serves nothing is warned",
        timeout_s=120,
        every_s=2,
    )
    assert "WARNING:" in node_status(node)
    settled(network)
    honest = node_status(network.honest)
    assert "WARNING" not in honest, honest
    owed = re.search(r"earnings: +\$(\d+)\.(\d{6}) owed", honest)
    assert owed is not None, honest
    balance = network.get(f"/api/v1/nodes/{network.honest.node_id}/earnings")["node"]
    assert int(owed[1]) * 1_000_000 + int(owed[2]) <= balance["balance_micro_usd"]
