"""`streamr demo` as a subprocess on free loopback ports, for the benchmarks that need the whole
demo network: coordinator, nginx-rtmp ingest, the ffmpeg test card and ``--nodes`` friend nodes.

Started the way tests/conftest.py's ``start_demo`` starts it (``--node-port 0``, every
``STREAMR_*`` variable of the caller dropped, the ingest's ports chosen free), plus the settings
a benchmark passes (``viewer_sessions_per_minute=...`` becomes
``STREAMR_VIEWER_SESSIONS_PER_MINUTE``). Stopped with Ctrl-C (SIGINT), which must leave no
process behind.

Used by bench/offload/run.py and bench/startup/run.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.servers import free_port, wait_for_port  # noqa: E402

STREAMR = str(ROOT / ".venv/bin/streamr")
STREAM = "demo"
# The watch page's first playlist lists the newest 6 signed segments and hls.js may start with
# the oldest; a node that does not hold a segment answers 404 and the page leaves it for 30 s.
# Nodes started before the stream was live lose their first segments (their window restarts
# until their assignment says LIVE), so "ready" waits until every node holds more than that.
READY_NODE_SEGMENTS = 8

T = TypeVar("T")


class BenchError(Exception):
    """Something the benchmark needs did not work (not a slow result)."""


def wait_until(check: Callable[[], T], what: str, timeout_s: float, every_s: float = 0.5) -> T:
    """Call ``check`` until it returns something true; a deadline, never a measurement."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
        except (httpx.HTTPError, OSError, KeyError, ValueError, IndexError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise BenchError(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(every_s)


@dataclass
class DemoNetwork:
    process: subprocess.Popen[bytes]
    coordinator: str
    origin: str
    data_dir: Path
    log: Path
    nodes: list[dict[str, Any]] = field(default_factory=list)  # name, node_id, base_url

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"  | {line[:300]}" for line in text[-lines:])

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchError(f"streamr demo exited ({self.process.returncode})\n{self.log_tail()}")

    def node_stats(self) -> dict[str, dict[str, Any]]:
        """Every node's /stats, by name."""
        with httpx.Client(timeout=10) as http:
            return {n["name"]: http.get(f"{n['base_url']}/stats").json() for n in self.nodes}


@contextlib.contextmanager
def run_demo(workdir: Path, nodes: int = 3, **settings: object) -> Iterator[DemoNetwork]:
    """The demo network, ready: the demo stream LIVE with signed segments and every node online,
    routed to viewers and holding the segments a new viewer may ask for."""
    api, rtmp, origin, hooks = free_port(), free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}
    env |= {
        "STREAMR_DATA_DIR": str(workdir / "data"),
        "STREAMR_INGEST_RTMP_PORT": str(rtmp),
        "STREAMR_INGEST_HTTP_PORT": str(origin),
        "STREAMR_INGEST_HOOK_PORT": str(hooks),
        "STREAMR_INGEST_RTMP_URL": f"rtmp://127.0.0.1:{rtmp}/live",
        "STREAMR_LOG_LEVEL": "WARNING",
    }
    env |= {f"STREAMR_{name.upper()}": str(value) for name, value in settings.items()}
    log = workdir / "demo.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [STREAMR, "demo", "--port", str(api), "--node-port", "0", "--nodes", str(nodes)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    demo = DemoNetwork(
        process=process,
        coordinator=f"http://127.0.0.1:{api}",
        origin=f"http://127.0.0.1:{origin}",
        data_dir=workdir / "data",
        log=log,
    )
    try:
        try:
            wait_for_port(api, timeout_s=90, process=process)
            wait_for_port(origin, timeout_s=90, process=process)
        except (RuntimeError, TimeoutError) as exc:
            raise BenchError(f"streamr demo did not start: {exc}\n{demo.log_tail()}") from exc
        _wait_ready(demo, nodes)
        yield demo
    finally:
        _stop(process, workdir)


def _wait_ready(demo: DemoNetwork, nodes: int) -> None:
    base = demo.coordinator

    def on_air() -> bool:
        demo.check_alive()
        stream = httpx.get(f"{base}/api/v1/streams/{STREAM}", timeout=5).json()
        index = httpx.get(f"{base}/api/v1/streams/{STREAM}/segments", timeout=5).json()
        return stream["status"] == "LIVE" and len(index["segments"]) >= 3

    wait_until(on_air, "the demo stream is LIVE with signed segments", 120)
    if nodes == 0:
        return

    def online() -> bool:
        demo.check_alive()
        answer = httpx.get(f"{base}/api/v1/streams/{STREAM}/nodes", timeout=5).json()
        return answer["online"] == nodes

    wait_until(online, f"the {nodes} demo nodes are online", 90)

    def serving() -> list[dict[str, Any]]:
        """Each node's id and URL from the "node serving" line of its log (ports are free
        ones, chosen at start)."""
        found = []
        for number in range(1, nodes + 1):
            node_log = demo.data_dir / "demo-nodes" / f"node-{number}" / "node.log"
            for line in node_log.read_text(errors="replace").splitlines():
                if line.startswith("{") and '"node serving"' in line:
                    event = json.loads(line)
                    found.append(
                        {
                            "name": f"demo-node-{number}",
                            "node_id": event["node_id"],
                            "base_url": event["public_url"],
                        }
                    )
                    break
        return found if len(found) == nodes else []

    demo.nodes = wait_until(serving, "every demo node says where it serves", 60)

    def holding() -> bool:
        demo.check_alive()
        stats = demo.node_stats()
        return all(s["window"]["segments"] >= READY_NODE_SEGMENTS for s in stats.values())

    wait_until(holding, "every node holds the segments a new viewer may ask for", 90)


def _stop(process: subprocess.Popen[bytes], workdir: Path) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise BenchError("streamr demo did not stop within 30 s of Ctrl-C") from None
    deadline = time.monotonic() + 10
    while True:
        leftovers = subprocess.run(
            ["pgrep", "-af", str(workdir)], capture_output=True, text=True, check=False
        ).stdout
        if not leftovers or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if leftovers:
        raise BenchError(f"processes outlived the demo: {leftovers}")
