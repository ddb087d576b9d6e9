"""Fault: Redis restarts under running coordinator replicas (issue 7).

The production-shaped cluster (``start_cluster``: PostgreSQL, Redis, two ``streamr coordinator``
replicas behind nginx), nodes heartbeating (plain HTTP heartbeaters, tests/fault_support.py)
to the replicas in turns, as the load balancer spreads them. Redis is stopped and started again
on the same port without persistence, so every presence record is gone. While it is away,
requests that need it get each replica's clean 503 with Retry-After, promptly (never a hang,
never a 500), and requests that need only the database keep working; once it is back, presence
is whole again within one heartbeat interval, and routing (a viewer's sources) within that and
the routing inputs' second, with no restart of any replica. Through nginx a viewer gets the
same clean 503, and nginx marks no replica down for it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from streamr_coordinator.cluster.run import Cluster, start_cluster
from streamr_coordinator.cluster.services import ServerMissing
from tests.fault_support import (
    ANSWER_DEADLINE_S,
    Heartbeaters,
    HttpNode,
    assert_retryable,
    health_host,
    live_stream_with_nodes,
    timed,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(120)]

HEARTBEAT_S = 2.0
ROUTING_INPUTS_TTL_S = 1.0  # the cluster's default
MARGIN_S = 1.0  # for the beat in flight and the poll itself
NODES = 3


@dataclass
class Setup:
    cluster: Cluster
    http: httpx.Client
    stream: str
    nodes: list[HttpNode]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Iterator[Setup]:
    workdir: Path = tmp_path_factory.mktemp("fault-redis")
    settings = {
        "heartbeat_interval_s": HEARTBEAT_S,
        "presence_ttl_s": HEARTBEAT_S * 3,
        "viewer_sessions_per_minute": 10_000,  # every viewer here comes from 127.0.0.1
    }
    try:
        with ExitStack() as stack:
            cluster = stack.enter_context(
                start_cluster(
                    workdir, replicas=2, workers=0, nodes=0, ingest=False, settings=settings
                )
            )
            health_url = stack.enter_context(health_host())
            http = stack.enter_context(
                httpx.Client(base_url=cluster.url, timeout=ANSWER_DEADLINE_S)
            )
            stream, nodes = live_stream_with_nodes(http, health_url, NODES)
            yield Setup(cluster, http, stream, nodes)
    except ServerMissing as exc:
        pytest.fail(str(exc))


class Turns:
    """Requests taking turns among the replicas, as the load balancer sends them (each answer
    is a replica's own, without nginx's passive health checks in between)."""

    def __init__(self, urls: list[str]) -> None:
        self.clients = [httpx.Client(base_url=url, timeout=ANSWER_DEADLINE_S) for url in urls]
        self.turn = 0

    def _next(self) -> httpx.Client:
        self.turn += 1
        return self.clients[self.turn % len(self.clients)]

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self._next().get(path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self._next().post(path, **kwargs)

    def close(self) -> None:
        for client in self.clients:
            client.close()


def routed(http: httpx.Client | Turns, stream: str) -> set[str]:
    """The nodes a new viewer session is sent to (empty when the session cannot be opened)."""
    opened = http.post(f"/api/v1/streams/{stream}/sessions")
    if opened.status_code != 201:
        return set()
    return {s["node_id"] for s in opened.json()["sources"] if s["kind"] == "node"}


def present_in_redis(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return sum(1 for _ in client.scan_iter("streamr:presence:node:*"))
    finally:
        client.close()


def rebuilt(setup: Setup, http: Turns, since: float) -> None:
    """Presence whole again within one heartbeat interval of ``since``; routing too, but for
    the routing inputs a replica may have gathered up to a second before the last node's beat
    (STREAMR_ROUTING_INPUTS_TTL_S)."""
    while present_in_redis(setup.cluster.redis.url) != NODES:
        assert time.monotonic() - since < HEARTBEAT_S + MARGIN_S, (
            "presence was not whole again within one heartbeat interval: "
            f"{present_in_redis(setup.cluster.redis.url)} of {NODES} nodes"
        )
        time.sleep(0.05)
    everyone = {node.node_id for node in setup.nodes}
    while (listed := routed(http, setup.stream)) != everyone:
        assert time.monotonic() - since < HEARTBEAT_S + MARGIN_S + ROUTING_INPUTS_TTL_S, (
            f"routing did not list every node again: {listed} of {everyone}"
        )
        time.sleep(0.05)


def test_redis_restart_503_while_away_then_presence_and_routing_rebuild(setup: Setup):
    stream, nodes = setup.stream, setup.nodes
    everyone = {node.node_id for node in nodes}
    replicas = [replica.url for replica in setup.cluster.replicas]
    http = Turns(replicas)
    beaters = Heartbeaters(replicas, nodes, HEARTBEAT_S)
    beaters.start()
    try:
        deadline = time.monotonic() + 3 * HEARTBEAT_S
        while routed(http, stream) != everyone:
            assert time.monotonic() < deadline, "the nodes were never routed before the fault"
            time.sleep(0.2)
        viewer = http.post(f"/api/v1/streams/{stream}/sessions").json()
        sources_path = f"/api/v1/sessions/{viewer['session_id']}/sources"
        viewer_auth = {"X-Streamr-Session": viewer["token"]}

        # ---- Redis away: everything in it is lost (no persistence).
        setup.cluster.redis.stop()
        away_from = time.monotonic()
        # Each replica, twice: the first call may find a pooled connection, the second not.
        for replica in [*http.clients, *http.clients]:
            opened, took = timed(replica.post, f"/api/v1/streams/{stream}/sessions")
            assert_retryable(opened, "a viewer session while Redis is away")
            assert took < ANSWER_DEADLINE_S
            sources, took = timed(replica.get, sources_path, headers=viewer_auth)
            assert_retryable(sources, "a viewer's sources while Redis is away")
            assert took < ANSWER_DEADLINE_S
            health = replica.get("/health")
            assert health.status_code == 503, health.text
            assert health.json()["checks"]["redis"].startswith("unreachable")
            assert health.json()["checks"]["database"] == "ok"
            # What needs only the database keeps working: the signed index viewers play from.
            index = replica.get(f"/api/v1/streams/{stream}/segments")
            assert index.status_code == 200, index.text
        time.sleep(HEARTBEAT_S * 1.5)  # heartbeats arrive during the outage too

        # ---- Redis back on the same port, empty.
        setup.cluster.redis.start()
        back_at = time.monotonic()
        rebuilt(setup, http, back_at)
        # The other replica may still route from inputs it gathered up to a second ago
        # (STREAMR_ROUTING_INPUTS_TTL_S), when fewer nodes had beaten again.
        while True:
            sources = http.get(sources_path, headers=viewer_auth)
            assert sources.status_code == 200, sources.text
            listed = {s["node_id"] for s in sources.json()["sources"] if s["kind"] == "node"}
            if listed == everyone:
                break
            assert time.monotonic() - back_at < HEARTBEAT_S + MARGIN_S + ROUTING_INPUTS_TTL_S, (
                f"a viewer's sources did not list every node again: {listed} of {everyone}"
            )
            time.sleep(0.05)
        for replica in http.clients:
            assert replica.get("/health").status_code == 200

        # ---- A quick restart between two beats: nothing is waiting to be written, so only the
        # nodes' next heartbeats can bring presence back.
        last = beaters.beats[-1].at
        while beaters.beats[-1].at == last:
            time.sleep(0.02)
        time.sleep(0.5)  # that round is in Redis (written behind within 0.25 s)
        assert present_in_redis(setup.cluster.redis.url) == NODES
        setup.cluster.redis.restart()
        restarted_at = time.monotonic()
        assert present_in_redis(setup.cluster.redis.url) == 0
        rebuilt(setup, http, restarted_at)

        # The coordinator was never restarted, and no heartbeat hung or failed with a 500.
        time.sleep(2 * HEARTBEAT_S)
    finally:
        beaters.stop()
        http.close()
    assert all(replica.running for replica in setup.cluster.replicas), "a replica died"
    during = [b for b in beaters.since(away_from) if b.at < back_at]
    assert during, "no heartbeat was sent while Redis was away"
    for beat in beaters.beats:
        assert beat.status is not None, f"a heartbeat got no answer: {beat.error}"
        assert beat.status in (200, 503), beat
        if beat.status == 503:
            assert beat.retry_after is not None and beat.retry_after.isdigit(), beat
    after = beaters.since(back_at + MARGIN_S)
    assert after and all(b.status == 200 for b in after), after
    for replica in setup.cluster.replicas:
        assert "internal_error" not in replica.log(), replica.name


def test_through_the_load_balancer_a_redis_outage_is_the_same_clean_503(setup: Setup):
    sessions = f"/api/v1/streams/{setup.stream}/sessions"
    setup.cluster.redis.stop()
    try:
        for _ in range(3):
            opened, took = timed(setup.http.post, sessions)
            assert_retryable(opened, "a viewer session through nginx while Redis is away")
            assert took < ANSWER_DEADLINE_S
    finally:
        setup.cluster.redis.start()
    # Once Redis is back, nginx passes requests on at once: no replica left marked down.
    assert setup.http.post(sessions).status_code == 201
