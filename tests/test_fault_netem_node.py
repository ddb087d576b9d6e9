"""Fault: a friend node behind packet loss and latency (issue 7): served correctly, trusted
correctly.

A real ``streamr-node`` runs in a network namespace this test creates, joined to the host by a
point-to-point link with 10.x addresses; everything the node sends is lost 5 % of the time and
delayed 40 ms: a veth pair with ``tc qdisc add dev ... root netem loss 5% delay 40ms`` where the
kernel has netem, else (this machine's kernel has no sch_netem, no tc actions, no netfilter) two
TUN devices joined by the same impairment in user space (tests/impaired_link.py).

The coordinator (with its prober and trust jobs) and the ingest's HLS origin listen on the
host's end of the link only, so the node, the viewers and the prober all reach them through it,
as they would over a network. Simulated viewers
(tests/simulated_viewers.py, the watch page's rules) watch through the node; then:

* every segment every viewer played matched its signed entry (verified bytes), none was
  missed, and they came from the node;
* the coordinator probed the node and it keeps a good standing (trust >= 0.9, not warned).

Needs root (``ip netns``); skipped with the reason otherwise. The namespace, the link and every
process are removed afterwards, also when the test fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import tomllib
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamr_coordinator.cluster.services import free_port
from tests.ingest import push_test_card
from tests.nodes import PASSWORD
from tests.simulated_viewers import Swarm, Viewer
from tests.stack import StreamerApi, wait_for

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parent.parent
STREAMR = str(ROOT / ".venv/bin/streamr")
STREAMR_INGEST = str(ROOT / ".venv/bin/streamr-ingest")
STREAMR_NODE = str(ROOT / ".venv/bin/streamr-node")
PYTHON = str(ROOT / ".venv/bin/python")

NETEM = ["netem", "loss", "5%", "delay", "40ms"]
STREAM = "netem"
VIEWERS = 3
WATCH_S = 40.0
SETTINGS: dict[str, Any] = {
    "allow_private_node_urls": "true",  # the node's URL is a 10.x address
    "usage_report_interval_s": 1,
    "assignment_refresh_s": 1,
    "viewer_sessions_per_minute": 1000,
    "probe_interval_s": 3,
    "probe_segments": 2,
    "verification_jobs_interval_s": 2,
    "trust_vetting_min_probes": 2,
    "trust_vetting_min_s": 0,
}


def run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")


@dataclass
class Namespace:
    name: str
    host_ip: str  # the host's end of the link
    node_ip: str  # the namespace's end
    link: str  # "netem" (tc on a veth pair) or "userspace" (tests/impaired_link.py)
    stats: Path | None = None  # the user-space link's counters

    def exec(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *command]

    def impairment(self) -> str:
        """Evidence that the impairment is in place and has worked on this traffic."""
        if self.link == "netem":
            shown = subprocess.run(self.exec("tc", "-s", "qdisc", "show"), capture_output=True)
            return shown.stdout.decode()
        assert self.stats is not None
        return self.stats.read_text()


def netem_available() -> bool:
    """Whether this kernel has the netem qdisc (probed in a throwaway namespace)."""
    probe = f"streamr-probe-{secrets.token_hex(3)}"
    run("ip", "netns", "add", probe)
    try:
        added = subprocess.run(
            ["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", *NETEM],
            capture_output=True,
            text=True,
        )
        return added.returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)


@contextmanager
def namespace(workdir: Path) -> Iterator[Namespace]:
    """A network namespace joined to the host by a point-to-point 10.x/30 link whose packets
    from the namespace are lost (5 %) and delayed (40 ms): a veth pair with tc netem on its far
    end, or, on a kernel without netem, TUN devices joined by tests/impaired_link.py."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns add); not root here")
    tag = secrets.token_hex(3)
    name, host_if, node_if = f"streamr-{tag}", f"vh{tag}", f"vn{tag}"
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    third = next(n for n in range(200, 256) if f"10.213.{n}." not in routes)
    host_ip, node_ip = f"10.213.{third}.1", f"10.213.{third}.2"
    try:
        run("ip", "netns", "add", name)
    except RuntimeError as exc:
        pytest.skip(f"cannot create a network namespace: {exc}")
    forwarder: subprocess.Popen | None = None
    try:
        if netem_available():
            ns = Namespace(name, host_ip, node_ip, "netem")
            run("ip", "link", "add", host_if, "type", "veth", "peer", "name", node_if)
        else:
            ns = Namespace(name, host_ip, node_ip, "userspace", workdir / "link-stats.json")
            forwarder = subprocess.Popen(
                [
                    *(PYTHON, "-m", "tests.impaired_link", host_if, node_if),
                    *("--loss", "0.05", "--delay-ms", "40", "--stats", str(ns.stats)),
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert forwarder.stdout is not None
            assert forwarder.stdout.readline().strip() == "ready", "the impaired link failed"
        run("ip", "link", "set", node_if, "netns", name)
        run("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        run(*ns.exec("ip", "addr", "add", f"{node_ip}/30", "dev", node_if))
        run(*ns.exec("ip", "link", "set", node_if, "up"))
        run(*ns.exec("ip", "link", "set", "lo", "up"))
        if ns.link == "netem":
            run(*ns.exec("tc", "qdisc", "add", "dev", node_if, "root", *NETEM))
        yield ns
    finally:
        # Anything still running in the namespace is ours: end it, then remove the namespace
        # (which takes a veth pair with it; TUN devices go with their forwarder).
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
        for pid in pids.stdout.split():
            with suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        if forwarder is not None:
            forwarder.terminate()
            try:
                forwarder.wait(timeout=10)
            except subprocess.TimeoutExpired:
                forwarder.kill()
                forwarder.wait()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def wait_listening(host: str, port: int, process: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"exited with status {process.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listened on {host}:{port} within {timeout_s} s"
                ) from exc
            time.sleep(0.05)


@contextmanager
def process(command: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """A process stopped with SIGTERM (SIGKILL after 20 s) afterwards."""
    with log_path.open("ab") as log:
        started = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    try:
        yield started
    finally:
        if started.poll() is None:
            started.send_signal(signal.SIGTERM)
        try:
            started.wait(timeout=20)
        except subprocess.TimeoutExpired:
            started.kill()
            started.wait()


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}


@dataclass
class Setup:
    ns: Namespace
    coordinator_url: str
    api: StreamerApi
    node_id: str
    node_url: str
    node_log: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Iterator[Setup]:
    workdir: Path = tmp_path_factory.mktemp("netem")
    data_dir = workdir / "data"
    with namespace(workdir) as ns, ExitStack() as stack:
        # The coordinator (SQLite, jobs in-process: the prober, trust) on the veth's host end.
        api_port, http_port, rtmp_port, hook_port = (free_port() for _ in range(4))
        coordinator_url = f"http://{ns.host_ip}:{api_port}"
        env = clean_env() | {
            "STREAMR_DATA_DIR": str(data_dir),
            "STREAMR_HOST": ns.host_ip,
            "STREAMR_PORT": str(api_port),
            "STREAMR_ORIGIN_URL": f"http://{ns.host_ip}:{http_port}",
        }
        env |= {f"STREAMR_{k.upper()}": str(v) for k, v in SETTINGS.items()}
        coordinator = stack.enter_context(
            process([STREAMR, "coordinator"], env, workdir / "coordinator.log")
        )
        wait_listening(ns.host_ip, api_port, coordinator)
        # The ingest: RTMP on loopback (the publisher is here), the HLS origin on the veth.
        ingest_env = clean_env() | {
            "STREAMR_INGEST_COORDINATOR_URL": coordinator_url,
            "STREAMR_INGEST_DATA_DIR": str(data_dir),
            "STREAMR_INGEST_HTTP_HOST": ns.host_ip,
            "STREAMR_INGEST_HTTP_PORT": str(http_port),
            "STREAMR_INGEST_RTMP_PORT": str(rtmp_port),
            "STREAMR_INGEST_HOOK_PORT": str(hook_port),
            "STREAMR_INGEST_RECONCILE_INTERVAL_S": "1",
        }
        ingest_log = workdir / "ingest.log"
        ingest = stack.enter_context(process([STREAMR_INGEST], ingest_env, ingest_log))
        wait_for(
            lambda: (
                ingest.poll() is not None
                or '"event": "ingest running"' in ingest_log.read_text(errors="replace")
            ),
            "the ingest runs",
        )
        assert ingest.poll() is None, ingest_log.read_text(errors="replace")

        api = StreamerApi(coordinator_url)
        stack.callback(api.close)
        key = api.create_stream(STREAM)
        publisher = push_test_card(f"rtmp://127.0.0.1:{rtmp_port}/live", key, 200)
        stack.callback(_interrupt, publisher)
        wait_for(lambda: api.status(STREAM) == "LIVE", "the stream is live")
        code = api.http.post(
            f"/api/v1/streams/{STREAM}/invites", json={"max_uses": 1}, headers=api.auth
        )
        assert code.status_code == 201, code.text

        # The friend node, inside the namespace: everything it sends goes through netem.
        node_port = free_port()
        node_url = f"http://{ns.node_ip}:{node_port}"
        node_env = clean_env() | {
            "STREAMR_NODE_DATA_DIR": str(workdir / "node"),
            "STREAMR_NODE_PASSWORD": PASSWORD,
            "STREAMR_NODE_HOST": ns.node_ip,
            "STREAMR_NODE_PORT": str(node_port),
            "STREAMR_NODE_PUBLIC_URL": node_url,
        }
        joined = subprocess.run(
            ns.exec(
                STREAMR_NODE,
                "join",
                coordinator_url,
                *("--invite", code.json()["code"], "--name", "lossy"),
                *("--email", f"lossy-{uuid.uuid4().hex[:6]}@example.com", "--create-account"),
            ),
            env=node_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert joined.returncode == 0, joined.stderr
        node_log = workdir / "node.log"
        node = stack.enter_context(
            process(ns.exec(STREAMR_NODE, "run", "--log-format", "json"), node_env, node_log)
        )
        wait_listening(ns.node_ip, node_port, node)
        node_id = tomllib.loads((workdir / "node" / "config.toml").read_text())["node_id"]
        wait_for(
            lambda: httpx.get(f"{node_url}/stats", timeout=5).json()["window"]["segments"] >= 2,
            "the node holds segments",
            timeout_s=60,
            every_s=0.5,
        )
        yield Setup(ns, coordinator_url, api, node_id, node_url, node_log)


def _interrupt(publisher: subprocess.Popen) -> None:
    if publisher.poll() is None:
        publisher.send_signal(signal.SIGINT)
    try:
        publisher.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        publisher.kill()
        publisher.communicate()


def watch(setup: Setup) -> Swarm:
    swarm = Swarm(coordinator=setup.coordinator_url, stream=STREAM, key=setup.api.public_key)

    async def main() -> None:
        viewers = [asyncio.create_task(Viewer(n, swarm).run()) for n in range(VIEWERS)]
        await asyncio.sleep(WATCH_S)
        swarm.stop.set()
        failed = [r for r in await asyncio.gather(*viewers, return_exceptions=True) if r]
        assert not failed, failed

    asyncio.run(main())
    return swarm


def test_node_behind_loss_and_latency_serves_correctly_and_keeps_its_standing(setup: Setup):
    before = setup.ns.impairment()
    swarm = watch(setup)
    outcomes = Counter((f.kind, f.outcome) for f in swarm.fetches)
    assert not swarm.missed, f"segments missed: {swarm.missed} ({outcomes})"
    assert all(f.outcome != "mismatch" for f in swarm.fetches), outcomes
    assert swarm.first_source == Counter({setup.node_id: VIEWERS}), swarm.first_source
    from_node = [f for f in swarm.fetches if f.kind == "node" and f.outcome == "ok"]
    assert from_node and all(f.node_id == setup.node_id for f in from_node)
    # Every segment every viewer played came from the node, verified (size and SHA-256 of the
    # signed entry, checked by the viewer before it counts as ok).
    assert all(f.kind == "node" and f.outcome == "ok" for f in swarm.fetches), outcomes
    # The link really dropped and delayed the node's packets meanwhile.
    after = setup.ns.impairment()
    if setup.ns.link == "netem":
        assert "netem" in after and "loss 5%" in after and "delay 40" in after, after
    else:
        dropped = json.loads(after)["dropped_from_node"] - json.loads(before)["dropped_from_node"]
        assert dropped > 0, (before, after)
    # Something was watched by everyone (not a vacuous pass).
    assert len(swarm.first_source) == 1 and len(from_node) >= 3 * VIEWERS, outcomes
    assert swarm.receipts_refused == 0

    # Probed through the same lossy link, and trusted: every probe delivered, standing good.
    auth = setup.api.auth
    http = setup.api.http

    def probes() -> list[dict[str, Any]]:
        answer = http.get(f"/api/v1/nodes/{setup.node_id}/probes", headers=auth)
        assert answer.status_code == 200, answer.text
        return answer.json()["probes"]

    wait_for(lambda: len(probes()) >= 3, "the node was probed", timeout_s=60, every_s=1)
    done = probes()
    assert all(p["outcome"] == "ok" for p in done), done

    def standing() -> dict[str, Any] | None:
        answer = http.get(f"/api/v1/nodes/{setup.node_id}/trust", headers=auth)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return body["standing"] if body["history"] else None

    now = wait_for(standing, "the node's trust is updated", timeout_s=30, every_s=1)
    assert now["score"] >= 0.9, now
    assert now["level"] in ("good", "vetting"), now
