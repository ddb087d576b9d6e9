"""Offload: how much of what viewers receive friends' nodes serve, and what the origin still sends.

    .venv/bin/python bench/offload/run.py [--viewers 50] [--nodes 3] [--seconds 60]

(every option: --help). docs/benchmarks.md has the figures and what they mean.

A real `streamr demo` (coordinator, nginx-rtmp ingest, the ffmpeg test card at 640x360 and
``--nodes`` `streamr-node` processes; bench/offload/demo_network.py starts it on free loopback
ports) and a swarm of simulated viewers in this process (tests/simulated_viewers.py: each an
async HLS client on its own httpx connection pool that does what the watch page's loader does).

Viewers join evenly over ``--ramp`` seconds; after ``--warmup`` seconds more, the measurement
runs for ``--seconds``. Counted in it: the bytes of every response each viewer received, by
source (a fetch counts when it ends inside the window), and each node's ``/stats``
(``bytes.fetched_from_upstream`` and ``bytes.served_to_sessions``) read at both ends. The
origin's egress is what the viewers fetched from it plus what the nodes whose upstream is the
origin fetched from it.

Side by side in one run, the same swarm against a demo with ``--nodes 0`` (the origin alone),
unless ``--no-origin-only``.

The exit status is non-zero when the demo fails to start or stop cleanly, a viewer fails, any
source sends bytes that do not match the signed index, or nothing was measured; never because
of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from streamr_protocol.attestation import (
    AttestationError,
    AttestationKey,
    public_key_from,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.offload.demo_network import (  # noqa: E402
    STREAM,
    BenchError,
    DemoNetwork,
    run_demo,
)
from tests.simulated_viewers import Swarm, Viewer, ViewerFailed  # noqa: E402

TARGET_SHARE = 0.95


# ---------------------------------------------------------------- one measured run


@dataclass
class Result:
    label: str
    viewers: int
    nodes: int
    seconds: float
    ok: dict[str, int]  # verified bytes delivered to viewers, by source kind
    received: dict[str, int]  # every body byte viewers received, by source kind
    by_node: dict[str, int]  # verified bytes, by node name
    outcomes: Counter[str]
    fetch_s: dict[str, list[float]]  # ok fetches' durations, by source kind
    nodes_from_origin: int  # bytes nodes whose upstream is the origin fetched from it
    nodes_from_nodes: int
    nodes_served: int  # the nodes' own count of bytes served to sessions
    upstreams: dict[str, str]
    missed: int
    mismatches: list[str]
    first_source: dict[str, int]
    receipts_stored: int
    receipts_refused: int

    @property
    def delivered(self) -> int:
        return sum(self.ok.values())

    @property
    def node_share(self) -> float:
        return self.ok["node"] / self.delivered if self.delivered else 0.0

    @property
    def origin_egress(self) -> int:
        return self.received["origin"] + self.nodes_from_origin


async def snapshot(demo: DemoNetwork) -> dict[str, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as http:
        answers = await asyncio.gather(*(http.get(f"{n['base_url']}/stats") for n in demo.nodes))
    return {n["name"]: a.json() for n, a in zip(demo.nodes, answers, strict=True)}


async def measure(demo: DemoNetwork, args: argparse.Namespace, label: str) -> Result:
    async with httpx.AsyncClient(timeout=10) as http:
        key = (await http.get(f"{demo.coordinator}/api/v1/attestation/key")).json()
    swarm = Swarm(
        coordinator=demo.coordinator, stream=STREAM, key=public_key_from(AttestationKey(**key))
    )
    tasks: list[asyncio.Task[None]] = []
    for number in range(args.viewers):
        tasks.append(asyncio.create_task(Viewer(number, swarm).run()))
        await asyncio.sleep(args.ramp / max(1, args.viewers))
    await asyncio.sleep(args.warmup)
    demo.check_alive()
    before = await snapshot(demo)
    t0 = time.monotonic()
    await asyncio.sleep(args.seconds)
    t1 = time.monotonic()
    after = await snapshot(demo)
    demo.check_alive()
    swarm.stop.set()
    crashed = [r for r in await asyncio.gather(*tasks, return_exceptions=True) if r is not None]
    if crashed:
        raise BenchError(f"{len(crashed)} viewers failed, first: {crashed[0]!r}")

    names = {n["node_id"]: n["name"] for n in demo.nodes}
    measured = [f for f in swarm.fetches if t0 <= f.done_at < t1]
    ok: dict[str, int] = {"node": 0, "origin": 0}
    received: dict[str, int] = {"node": 0, "origin": 0}
    by_node: Counter[str] = Counter()
    fetch_s: dict[str, list[float]] = {"node": [], "origin": []}
    for fetch in measured:
        received[fetch.kind] += fetch.bytes
        if fetch.outcome == "ok":
            ok[fetch.kind] += fetch.bytes
            fetch_s[fetch.kind].append(fetch.seconds)
            if fetch.node_id:
                by_node[names.get(fetch.node_id, fetch.node_id)] += fetch.bytes

    def delta(name: str, field_name: str) -> int:
        return after[name]["bytes"][field_name] - before[name]["bytes"][field_name]

    upstreams = {name: after[name]["upstream"]["kind"] for name in after}
    changed = [n for n in after if before[n]["upstream"] != after[n]["upstream"]]
    if changed:
        print(f"  note: upstream changed during the measurement for {changed}")
    return Result(
        label=label,
        viewers=args.viewers,
        nodes=len(demo.nodes),
        seconds=t1 - t0,
        ok=ok,
        received=received,
        by_node=dict(by_node),
        outcomes=Counter(f.outcome for f in measured),
        fetch_s=fetch_s,
        nodes_from_origin=sum(
            delta(n, "fetched_from_upstream") for n in after if upstreams[n] == "origin"
        ),
        nodes_from_nodes=sum(
            delta(n, "fetched_from_upstream") for n in after if upstreams[n] != "origin"
        ),
        nodes_served=sum(delta(n, "served_to_sessions") for n in after),
        upstreams=upstreams,
        missed=len(swarm.missed),
        mismatches=[
            f"{f.kind} {names.get(f.node_id or '', '')} #{f.sequence}"
            for f in swarm.fetches
            if f.outcome == "mismatch"
        ],
        first_source={names.get(k, k): v for k, v in sorted(swarm.first_source.items(), key=str)},
        receipts_stored=swarm.receipts_stored,
        receipts_refused=swarm.receipts_refused,
    )


def run_one(args: argparse.Namespace, nodes: int, label: str) -> Result:
    with tempfile.TemporaryDirectory(prefix="streamr-offload-") as workdir:
        print(f"[{label}] starting streamr demo --nodes {nodes} ...", flush=True)
        started = time.monotonic()
        with run_demo(
            Path(workdir), nodes=nodes, viewer_sessions_per_minute=args.viewers * 20 + 100
        ) as demo:
            print(
                f"[{label}] ready after {time.monotonic() - started:.0f} s; {args.viewers} "
                f"viewers join over {args.ramp:.0f} s, warm up {args.warmup:.0f} s, measure "
                f"{args.seconds:.0f} s",
                flush=True,
            )
            result = asyncio.run(measure(demo, args, label))
        print(f"[{label}] done; the demo stopped cleanly", flush=True)
        return result


# ---------------------------------------------------------------- report


def mb(value: float) -> str:
    return f"{value / 1e6:,.1f} MB"


def kbps(value_bytes: float, seconds: float) -> str:
    return f"{8 * value_bytes / seconds / 1000:,.0f} kbit/s"


def pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def quantile(values: list[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{1000 * ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]:.0f} ms"


def report(results: list[Result]) -> None:
    rows: list[tuple[str, list[str]]] = []

    def row(name: str, value) -> None:
        rows.append((name, [value(r) for r in results]))

    row("viewers", lambda r: str(r.viewers))
    row("friend nodes", lambda r: str(r.nodes))
    row("measured", lambda r: f"{r.seconds:.1f} s")
    row("verified bytes to viewers", lambda r: mb(r.delivered))
    row("  from friends' nodes", lambda r: f"{mb(r.ok['node'])} ({pct(r.ok['node'], r.delivered)})")
    row("  from the origin", lambda r: f"{mb(r.ok['origin'])} ({pct(r.ok['origin'], r.delivered)})")
    row("stream rate per viewer", lambda r: kbps(r.delivered / r.viewers, r.seconds))
    row("origin egress to viewers", lambda r: mb(r.received["origin"]))
    row("origin egress to nodes", lambda r: mb(r.nodes_from_origin))
    row("origin egress, total", lambda r: mb(r.origin_egress))
    row(
        "origin egress per viewer",
        lambda r: (
            f"{kbps(r.origin_egress / r.viewers, r.seconds)} "
            f"({pct(r.origin_egress, r.delivered)} of a stream each)"
        ),
    )
    row("node-to-node bytes", lambda r: mb(r.nodes_from_nodes))
    row("nodes' own count, served to sessions", lambda r: mb(r.nodes_served))
    row("fetches: outcomes", lambda r: ", ".join(f"{k} {v}" for k, v in sorted(r.outcomes.items())))
    row(
        "ok fetch time p50 / p99, node",
        lambda r: f"{quantile(r.fetch_s['node'], 0.5)} / {quantile(r.fetch_s['node'], 0.99)}",
    )
    row(
        "ok fetch time p50 / p99, origin",
        lambda r: f"{quantile(r.fetch_s['origin'], 0.5)} / {quantile(r.fetch_s['origin'], 0.99)}",
    )
    row("segments no source delivered", lambda r: str(r.missed))
    row("receipts stored / refused", lambda r: f"{r.receipts_stored} / {r.receipts_refused}")
    width = max(len(name) for name, _ in rows)
    cols = [max(len(r.label), *(len(v[i]) for _, v in rows)) for i, r in enumerate(results)]
    print()
    labels = [r.label.ljust(c) for r, c in zip(results, cols, strict=True)]
    print(" " * width + " | " + " | ".join(labels))
    print("-" * width + "-+-" + "-+-".join("-" * c for c in cols))
    for name, values in rows:
        cells = [v.ljust(c) for v, c in zip(values, cols, strict=True)]
        print(name.ljust(width) + " | " + " | ".join(cells))
    for r in results:
        if r.nodes:
            print(f"\n[{r.label}] verified bytes by node: {r.by_node}")
            print(f"[{r.label}] node upstreams: {r.upstreams}")
            print(f"[{r.label}] viewers' first source: {r.first_source}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--nodes", type=int, default=3, choices=range(1, 11), metavar="1-10")
    parser.add_argument("--seconds", type=float, default=60, help="measured (default 60)")
    parser.add_argument("--ramp", type=float, default=10, help="viewers join over this")
    parser.add_argument("--warmup", type=float, default=10, help="after the last join")
    parser.add_argument(
        "--no-origin-only", action="store_true", help="skip the run against --nodes 0"
    )
    args = parser.parse_args()
    print(
        f"offload: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}"
    )
    try:
        results = [run_one(args, args.nodes, f"{args.nodes} nodes")]
        if not args.no_origin_only:
            results.append(run_one(args, 0, "origin only"))
    except (BenchError, ViewerFailed, AttestationError, subprocess.SubprocessError) as exc:
        print(f"offload: FAILED: {exc}", file=sys.stderr)
        return 1
    report(results)
    failures = []
    for r in results:
        if r.mismatches:
            failures.append(f"{r.label}: bytes that did not match the signed index: {r.mismatches}")
        if r.delivered == 0:
            failures.append(f"{r.label}: the viewers received nothing")
    with_nodes = results[0]
    verdict = "met" if with_nodes.node_share >= TARGET_SHARE else "NOT met"
    print(
        f"\nTarget ({TARGET_SHARE:.0%} of viewer bytes from nodes, {with_nodes.nodes} nodes, "
        f"{with_nodes.viewers} viewers): {verdict}: {with_nodes.node_share:.2%}; origin egress "
        f"{pct(with_nodes.origin_egress, with_nodes.delivered)} of what the viewers received"
        + (
            f" (origin alone: {pct(results[1].origin_egress, results[1].delivered)})"
            if len(results) > 1
            else ""
        )
    )
    if failures:
        print("offload: FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
