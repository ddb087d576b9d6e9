"""Fault: PostgreSQL restarts under running coordinator replicas and workers (issue 7).

The production-shaped cluster (``start_cluster``: PostgreSQL, Redis, two ``streamr coordinator``
replicas behind nginx, two ``streamr worker`` processes, the ingest with a test card, a real
``streamr-node``) and a viewer watching through the node. PostgreSQL is shut down the way an
operator's restart does it (fast shutdown: sessions are cut) and started again on the same port
and data. Meanwhile:

* requests in flight and arriving at the replicas during the outage are answered promptly (a
  deadline bounds a hang) with the coordinator's retryable error: 503, Retry-After, the usual
  error shape; never a 500;
* heartbeats, whose path is Redis (and a cached token lookup), are accepted or get the same
  retryable 503;
* the node's usage reports cannot be delivered: they stay in its ``pending/`` directory and are
  sent again afterwards, so the coordinator finally counts exactly the bytes the viewer received;
* the replicas and the workers recover by themselves (the pool pre-pings and reconnects): the
  same processes answer and run jobs again.

The requests go to the replicas themselves: through nginx a shared-storage outage currently
becomes nginx's own 502 (see tests/test_fault_redis_restart.py's expected failure).
"""

from __future__ import annotations

import asyncio
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from streamr_coordinator.cluster.run import Cluster, ClusterProcess, start_cluster
from streamr_coordinator.cluster.services import ServerMissing
from streamr_protocol.playlist import parse
from tests.fault_support import (
    ANSWER_DEADLINE_S,
    Heartbeaters,
    HttpNode,
    assert_retryable,
    health_host,
    live_stream_with_nodes,
)
from tests.nodes import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(240)]

SETTINGS = {
    "usage_report_interval_s": 1,
    "assignment_refresh_s": 1,
    "heartbeat_interval_s": 1,
    "presence_ttl_s": 30,  # presence outlives the outage: routing is not what is tested here
    "viewer_sessions_per_minute": 100_000,  # the callers open sessions in a loop
    "presence_reaper_interval_s": 1,  # a worker job that runs often: evidence of recovery
    # The workers' probes are viewer sessions the node counts too: none here (mean gap of a
    # day), so the node's counted bytes are exactly this test's viewer's.
    "probe_interval_s": 86_400,
}
OUTAGE_S = 6.0


@dataclass
class Setup:
    cluster: Cluster
    beater: HttpNode  # a plain-HTTP node of a stream of its own


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Iterator[Setup]:
    workdir: Path = tmp_path_factory.mktemp("fault-pg")
    try:
        with ExitStack() as stack:
            cluster = stack.enter_context(
                start_cluster(
                    workdir, replicas=2, workers=2, nodes=1, test_card=True, settings=SETTINGS
                )
            )
            health_url = stack.enter_context(health_host())
            with httpx.Client(base_url=cluster.url, timeout=ANSWER_DEADLINE_S) as http:
                _, (beater,) = live_stream_with_nodes(http, health_url, 1)
            yield Setup(cluster, beater)
    except ServerMissing as exc:
        pytest.fail(str(exc))


@dataclass
class Answer:
    path: str
    started: float
    took: float
    status: int | None
    retry_after: str | None
    code: str | None
    error: str | None = None


@dataclass
class Callers:
    """Threads that call database-backed routes in a loop, so that some requests are in
    flight when the database goes away; every answer recorded."""

    base_urls: list[str]  # the replicas, taken in turns
    paths: list[tuple[str, str]]  # (method, path)
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for method, path in self.paths:
            thread = threading.Thread(target=self._run, args=(method, path), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=ANSWER_DEADLINE_S * 2)

    def _run(self, method: str, path: str) -> None:
        turn = 0
        with httpx.Client(timeout=ANSWER_DEADLINE_S) as http:
            while not self._stop.is_set():
                base = self.base_urls[turn % len(self.base_urls)]
                turn += 1
                started = time.monotonic()
                try:
                    answer = http.request(method, f"{base}{path}")
                    code = None
                    if answer.status_code >= 400:
                        code = answer.json().get("error", {}).get("code")
                    self.answers.append(
                        Answer(
                            path,
                            started,
                            time.monotonic() - started,
                            answer.status_code,
                            answer.headers.get("retry-after"),
                            code,
                        )
                    )
                except (httpx.HTTPError, ValueError) as exc:
                    took = time.monotonic() - started
                    self.answers.append(Answer(path, started, took, None, None, None, repr(exc)))
                self._stop.wait(0.05)


class Viewer:
    """Fetches segments from a node with its session token, like a player; counts bytes."""

    def __init__(self, coordinator_url: str, stream: str) -> None:
        opened = httpx.post(f"{coordinator_url}/api/v1/streams/{stream}/sessions", timeout=10)
        assert opened.status_code == 201, opened.text
        self.token = opened.json()["token"]
        self.stream = stream
        self.seen: set[str] = set()
        self.received = 0

    def fetch_new(self, node: Node, last: int | None = 2) -> int:
        """Every listed segment (or the last ``last``) not fetched yet; how many."""
        playlist = parse(httpx.get(f"{node.url}/hls/{self.stream}/index.m3u8", timeout=10).text)
        segments = playlist.segments if last is None else playlist.segments[-last:]
        got = 0
        for segment in segments:
            if segment.uri in self.seen:
                continue
            answer = httpx.get(
                f"{node.url}/hls/{self.stream}/{segment.uri}",
                params={"session": self.token},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
            self.seen.add(segment.uri)
            self.received += len(answer.content)
            got += 1
        return got

    def watch(self, node: Node, segments: int) -> None:
        got = 0
        deadline = time.monotonic() + 60
        while got < segments:
            assert time.monotonic() < deadline, f"only {got} of {segments} segments"
            got += self.fetch_new(node)
            time.sleep(0.3)


@dataclass
class Node:
    """The cluster's friend node: its process and its data directory (settings, spool)."""

    process: ClusterProcess
    data_dir: Path

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def config(self) -> dict[str, Any]:
        return tomllib.loads((self.data_dir / "config.toml").read_text())

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/stats", timeout=5).json()


def counted(base_url: str, node: Node) -> int:
    config = node.config
    answer = httpx.get(
        f"{base_url}/api/v1/nodes/{config['node_id']}/usage",
        headers={"Authorization": f"Bearer {config['node_token']}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return int(answer.json()["counted_bytes"])


async def worker_runs_since(url: str, since: datetime) -> int:
    db = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return await db.fetchval(
            "SELECT count(*) FROM job_runs WHERE outcome = 'ok' AND started_at > $1", since
        )
    finally:
        await db.close()


def test_postgres_restart_retryable_errors_then_recovery_and_no_report_lost(setup: Setup):
    cluster = setup.cluster
    postgres, lb, stream = cluster.postgres, cluster.url, cluster.stream.name
    replicas = [replica.url for replica in cluster.replicas]
    pids = [p.process.pid for p in [*cluster.replicas, *cluster.workers] if p.process]
    node = Node(cluster.nodes[0], cluster.node_dirs[0])
    wait_until(
        lambda: node.stats()["window"]["segments"] >= 3, "the node has segments", timeout_s=60
    )
    viewer = Viewer(lb, stream)
    viewer.watch(node, 2)
    wait_until(lambda: counted(lb, node) == viewer.received, "counted before the fault")

    beaters = Heartbeaters(replicas, [setup.beater], 1.0)
    callers = Callers(
        replicas,
        [
            ("GET", f"/api/v1/streams/{stream}"),
            ("GET", f"/api/v1/streams/{stream}/segments"),
            ("POST", f"/api/v1/streams/{stream}/sessions"),
        ],
    )
    beaters.start()
    callers.start()
    try:
        time.sleep(0.5)
        # ---- the database goes away (sessions cut), for a while
        down_at = time.monotonic()
        postgres.stop()  # PostgreSQL's fast shutdown: every session is cut
        for replica in replicas:
            for method, path in callers.paths:
                assert_retryable(
                    httpx.request(method, f"{replica}{path}", timeout=ANSWER_DEADLINE_S),
                    f"{method} {path} while the database is away",
                )
        # The viewer keeps watching what the node has; its reports cannot be delivered.
        fetched_during = viewer.fetch_new(node, last=None)
        time.sleep(OUTAGE_S / 2)
        fetched_during += viewer.fetch_new(node, last=None)
        wait_until(
            lambda: node.stats()["reports"]["pending"] >= 1,
            "the node keeps its undelivered report in pending/",
            timeout_s=OUTAGE_S,
        )
        pending_during = node.stats()["reports"]["pending"]
        time.sleep(max(OUTAGE_S - (time.monotonic() - down_at), 0))
        up_wall = datetime.now(UTC)
        postgres.start()
        up_at = time.monotonic()
        # ---- recovery without restarting anything
        for replica in replicas:
            wait_until(
                lambda replica=replica: (
                    httpx.get(f"{replica}/api/v1/streams/{stream}").status_code == 200
                ),
                f"{replica} answers from the database again",
                timeout_s=15,
            )
        time.sleep(2)
    finally:
        callers.stop()
        beaters.stop()

    assert fetched_during >= 1, "the viewer fetched nothing from the node during the outage"
    assert pending_during >= 1
    viewer.watch(node, 2)  # new segments are signed and relayed again
    try:
        wait_until(
            lambda: counted(lb, node) == viewer.received,
            f"the coordinator counts the {viewer.received} bytes the viewer received",
            timeout_s=30,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}: counted {counted(lb, node)}, node {node.stats()}") from exc
    wait_until(lambda: node.stats()["reports"]["pending"] == 0, "pending/ drained")
    time.sleep(2.5)  # two more report intervals: nothing is counted twice
    assert counted(lb, node) == viewer.received
    assert not list((node.data_dir / "spool" / "pending").glob("*.json"))

    # Every answer came within the deadline: 2xx, or the retryable 503; never a 500.
    answers = callers.answers
    during = [a for a in answers if down_at <= a.started < up_at]
    assert during, "no request was made during the outage"
    for answer in answers:
        when = f"{answer.started - down_at:.2f} s after the shutdown ({up_at - down_at:.1f} s)"
        assert answer.status is not None, f"no answer within {ANSWER_DEADLINE_S} s {when}: {answer}"
        assert answer.took < ANSWER_DEADLINE_S
        assert answer.status < 300 or answer.status == 503, answer
        if answer.status == 503:
            assert answer.code == "storage_unavailable" and (answer.retry_after or "").isdigit()
    assert any(a.status == 503 for a in during), "the outage was never seen"
    assert all(a.status is not None and a.status < 300 for a in answers if a.started > up_at + 2)

    # Accepted while the replica's cached token lookup lasts (node_token_cache_ttl_s), a 503
    # after: both seen here, depending on where the outage falls.
    beats_during = [b for b in beaters.beats if down_at <= b.at < up_at]
    assert beats_during, "no heartbeat during the outage"
    for beat in beaters.beats:
        assert beat.status in (200, 503), beat
        if beat.status == 503:
            assert (beat.retry_after or "").isdigit(), beat

    # The same replicas and workers, never restarted, serve and run jobs again.
    processes = [*cluster.replicas, *cluster.workers]
    assert all(p.running for p in processes), [p.name for p in processes if not p.running]
    assert [p.process.pid for p in processes if p.process] == pids
    wait_until(
        lambda: asyncio.run(worker_runs_since(cluster.database_url, up_wall)) > 0,
        "the workers run jobs again",
        timeout_s=20,
    )
    for replica in cluster.replicas:
        assert "internal_error" not in replica.log(), replica.name
