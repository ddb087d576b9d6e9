"""Kill -9 one coordinator replica in the middle of a live stream (issue 7, the first fault).

The production-shaped cluster (``streamr_coordinator.cluster.run.start_cluster``): PostgreSQL,
Redis, two replicas behind nginx, two workers, the ingest with a test card, two friend nodes
that heartbeat and report through the load balancer, and simulated viewers
(tests/simulated_viewers.py) that watch through it. One replica is killed outright while all
of that runs, then started again. Nothing may show: no viewer misses a segment, no node drops
out of presence (heartbeats every second, presence for three), every usage report is counted
(each node's own count equals the coordinator's), every receipt the viewers made is stored,
the ingest's segment reports leave no gap in the signed index, and the replica serves again.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time

import httpx
import pytest

from streamr_coordinator.cluster.run import Cluster, start_cluster
from streamr_node.config import load
from streamr_protocol.attestation import AttestationKey, public_key_from
from tests.nodes import wait_until
from tests.simulated_viewers import Swarm, Viewer

VIEWERS = 3
NODES = 2
SETTINGS = {
    # Beats every second and presence for three: a node whose beats were lost for longer than
    # that would drop out of presence, which is what this test watches for.
    "heartbeat_interval_s": 1,
    "presence_ttl_s": 3,
    "usage_report_interval_s": 1,
    "assignment_refresh_s": 1,
    # Random probes would keep adding bytes to the nodes' counts; none here.
    "probe_interval_s": 86_400,
}


class WatchingSwarm:
    """Simulated viewers in a thread of their own (their own event loop)."""

    def __init__(self, cluster: Cluster, viewers: int) -> None:
        key = AttestationKey.model_validate(
            httpx.get(f"{cluster.url}/api/v1/attestation/key", timeout=10).json()
        )
        self.base, self.stream, self.key = cluster.url, cluster.stream.name, public_key_from(key)
        self.count = viewers
        self.ready = threading.Event()
        self.results: list[object] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(30)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()

        async def main() -> None:
            self.swarm = Swarm(self.base, self.stream, self.key)
            self.viewers = [Viewer(n, self.swarm) for n in range(self.count)]
            self.ready.set()
            self.results = await asyncio.gather(
                *(v.run() for v in self.viewers), return_exceptions=True
            )

        self.loop.run_until_complete(main())
        self.loop.close()

    def every_viewer_got(self, segments: int, since: float = 0.0) -> bool:
        """As many segments as ``segments`` for each viewer were fetched since ``since``
        (time.monotonic()); fetches do not name their viewer, so counted together."""
        ok = [f for f in list(self.swarm.fetches) if f.outcome == "ok" and f.done_at >= since]
        return len(ok) >= segments * self.count

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.swarm.stop.set)
        self.thread.join(60)
        assert not self.thread.is_alive(), "the viewers did not stop"


class PresenceWatch:
    """How many of the stream's nodes were online, sampled through the load balancer."""

    def __init__(self, cluster: Cluster) -> None:
        self.url = f"{cluster.url}/api/v1/streams/{cluster.stream.name}/nodes"
        self.samples: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self._stop.wait(0.2):
                try:
                    answer = http.get(self.url)
                except httpx.HTTPError as exc:
                    self.failures.append(type(exc).__name__)
                    continue
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code} {answer.text[:200]}")
                else:
                    self.samples.append(int(answer.json()["online"]))

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()


def node_credentials(cluster: Cluster) -> list[tuple[str, str]]:
    found = []
    for node_dir in cluster.node_dirs:
        config = load(node_dir, environ={})
        assert config.node_id and config.node_token
        found.append((str(config.node_id), config.node_token.get_secret_value()))
    return found


def counted(cluster: Cluster, node_id: str, token: str) -> int:
    answer = httpx.get(
        f"{cluster.url}/api/v1/nodes/{node_id}/usage",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return int(answer.json()["counted_bytes"])


def served(cluster: Cluster, number: int) -> int:
    stats = httpx.get(f"{cluster.nodes[number].url}/stats", timeout=10).json()
    return int(stats["bytes"]["served_to_sessions"])


def psql(cluster: Cluster, sql: str) -> str:
    done = subprocess.run(
        [
            "psql",
            *("-h", "127.0.0.1", "-p", str(cluster.postgres.port)),
            *("-U", cluster.postgres.user, "-d", "streamr", "-Atc", sql),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def node_events(cluster: Cluster, *events: str) -> list[str]:
    found = []
    for node in cluster.nodes:
        for line in node.log().splitlines():
            found += [f"{node.name}: {line}" for event in events if f'"{event}"' in line]
    return found


@pytest.fixture
def cluster(tmp_path):
    with start_cluster(
        tmp_path, replicas=2, workers=2, nodes=NODES, test_card=True, settings=SETTINGS
    ) as cluster:
        yield cluster


def test_killing_a_replica_mid_stream_loses_nothing_viewers_or_nodes_can_see(cluster):
    stream = cluster.stream.name
    api = httpx.Client(base_url=cluster.url, timeout=10)
    wait_until(
        lambda: api.get(f"/api/v1/streams/{stream}/nodes").json()["online"] == NODES,
        "both nodes are online",
        timeout_s=60,
    )
    wait_until(
        lambda: (
            len(
                api.get(f"/api/v1/streams/{stream}/segments", params={"limit": 6}).json()[
                    "segments"
                ]
            )
            >= 6
        ),
        "six signed segments (a player's first playlist)",
        timeout_s=60,
    )
    credentials = node_credentials(cluster)
    presence = PresenceWatch(cluster)
    viewers = WatchingSwarm(cluster, VIEWERS)
    try:
        wait_until(lambda: viewers.every_viewer_got(3), "the viewers play", timeout_s=60)

        victim = cluster.replicas[0]
        killed_at = time.monotonic()
        victim.kill()
        wait_until(
            lambda: viewers.every_viewer_got(5, since=killed_at),
            "the viewers play on with one replica",
            timeout_s=60,
        )
        assert not victim.running
        # The kill happened under traffic: nginx found the replica gone and went to the other.
        assert "while connecting to upstream" in cluster.lb.log(), cluster.lb.log()

        victim.start()
        health = httpx.get(f"{victim.url}/health", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok", health.text
        direct = httpx.get(f"{victim.url}/api/v1/streams/{stream}/nodes", timeout=10)
        assert direct.json()["online"] == NODES, direct.text
        restarted_at = time.monotonic()
        wait_until(
            lambda: viewers.every_viewer_got(3, since=restarted_at),
            "the viewers play on with both replicas",
            timeout_s=60,
        )
    finally:
        viewers.stop()
        presence.stop()

    # No viewer-visible failure.
    failures = [r for r in viewers.results if isinstance(r, BaseException)]
    assert not failures, failures
    assert viewers.swarm.missed == [], viewers.swarm.missed
    assert not [f for f in viewers.swarm.fetches if f.outcome == "mismatch"]

    # No receipt lost: every fetch made a receipt, every batch was acknowledged (stored, or a
    # duplicate of one stored before its answer was lost), and the database has them all.
    assert viewers.swarm.receipts_refused == 0
    for viewer in viewers.viewers:
        assert viewer.pending is None and viewer.receipts == [], viewer.number
    stored = psql(
        cluster,
        "SELECT count(*) FROM viewer_receipts r JOIN viewer_sessions s ON s.id = r.session_id "
        "WHERE NOT s.is_probe",
    )
    assert int(stored) == len(viewers.swarm.fetches)

    # No heartbeat lost: both nodes were online in every sample, and no beat failed.
    assert presence.failures == [], presence.failures
    assert presence.samples and min(presence.samples) == NODES, sorted(set(presence.samples))
    assert node_events(cluster, "heartbeat failed", "heartbeat refused") == []

    # No usage report lost: once the nodes have flushed, the coordinator counts exactly what
    # each node says it served to sessions.
    for number, (node_id, token) in enumerate(credentials):
        wait_until(
            lambda number=number, node_id=node_id, token=token: (
                counted(cluster, node_id, token) == served(cluster, number)
            ),
            f"node {number + 1}'s served bytes are all counted",
            timeout_s=30,
        )
    assert sum(served(cluster, number) for number in range(NODES)) > 0, "viewers used nodes"
    assert node_events(cluster, "usage report set aside") == []

    # The ingest's segment reports, through the load balancer too, left no gap.
    index = api.get(f"/api/v1/streams/{stream}/segments", params={"since": -1, "limit": 500})
    sequences = [s["sequence"] for s in index.json()["segments"]]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    api.close()
