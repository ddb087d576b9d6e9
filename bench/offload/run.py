"""Offload: how much of what viewers receive friends' nodes serve, and what the origin still sends.

    .venv/bin/python bench/offload/run.py [--viewers 50] [--nodes 3] [--seconds 60]

(every option: --help). docs/benchmarks.md has the figures and what they mean.

A real `streamr demo` (coordinator, nginx-rtmp ingest, the ffmpeg test card at 640x360 and
``--nodes`` `streamr-node` processes; bench/offload/demo_network.py starts it on free loopback
ports) and a swarm of simulated viewers in this process, each an async HLS client on its own
httpx connection pool that does what the watch page's loader does (viewers/static/*.js):

* opens a viewer session (``POST /api/v1/streams/demo/sessions``; the demo runs with
  ``STREAMR_VIEWER_SESSIONS_PER_MINUTE`` raised, since every viewer comes from 127.0.0.1);
* follows the live playlist as the page does, from the coordinator's signed index
  (``GET /api/v1/streams/demo/segments``; every entry's Ed25519 signature is checked), starting
  three segments behind the live edge like hls.js (``liveSyncDurationCount: 3``) and then
  fetching each new segment once it is listed, in real time; the index is asked again after
  one segment duration when it grew, half of one when it did not (hls.js's live reload);
* fetches each segment from its sources in order — the first node (with the session token as
  ``?session=``), the other nodes, the origin last — with the page's rules: a node's 404 is
  asked again 4 times 300 ms apart, no first byte or no progress for 3 s or longer than twice
  the segment's duration is a stall, and a node that failed is skipped for 30 s; the bytes
  must match the signed entry (size and SHA-256) or they count as a mismatch;
* asks for its sources every ``refresh_s`` (``GET /api/v1/sessions/{id}/sources``) and sends
  receipts in batches (every 5 s, 10 receipts, or at once for a failure), as the page does.

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
import contextlib
import hashlib
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from streamr_protocol.attestation import (
    AttestationError,
    AttestationKey,
    SegmentEntry,
    public_key_from,
    verify_entry,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.offload.demo_network import (  # noqa: E402
    STREAM,
    BenchError,
    DemoNetwork,
    run_demo,
)

TARGET_SHARE = 0.95
# The watch page's loader (viewers/static/loader.js, sources.js, receipts.js).
FIRST_BYTE_S = 3.0
PROGRESS_S = 3.0
NOT_YET_RETRIES = 4
NOT_YET_WAIT_S = 0.3
ROUND_WAIT_S = 1.0
LOAD_BUDGET_S = 20.0
FAILED_NODE_PAUSE_S = 30.0
LIVE_SYNC_SEGMENTS = 3
FIRST_PLAYLIST = 6
RECEIPTS_EVERY_S = 5.0
RECEIPTS_AT = 10


# ---------------------------------------------------------------- one simulated viewer


@dataclass
class Fetch:
    """One GET of one segment from one source."""

    done_at: float  # time.monotonic()
    kind: str  # "node" or "origin"
    node_id: str | None
    sequence: int
    bytes: int  # body bytes received, whatever the outcome
    outcome: str  # ok, mismatch, error, stall
    seconds: float


@dataclass
class Swarm:
    demo: DemoNetwork
    key: Ed25519PublicKey
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    fetches: list[Fetch] = field(default_factory=list)
    missed: list[tuple[int, int]] = field(default_factory=list)  # (viewer, sequence)
    first_source: Counter[str] = field(default_factory=Counter)  # node id or "origin"
    receipts_stored: int = 0
    receipts_refused: int = 0


class Viewer:
    def __init__(self, number: int, swarm: Swarm) -> None:
        self.number = number
        self.swarm = swarm
        self.base = swarm.demo.coordinator
        self.session: dict[str, Any] = {}
        self.sources: list[dict[str, Any]] = []
        self.refresh_s = 2.0
        self.skip_until: dict[str, float] = {}
        self.receipts: list[dict[str, Any]] = []
        self.pending: dict[str, Any] | None = None
        self.urgent = asyncio.Event()

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
        async with httpx.AsyncClient(limits=limits, timeout=10) as self.http:
            opened = await self.http.post(f"{self.base}/api/v1/streams/{STREAM}/sessions")
            if opened.status_code != 201:
                raise BenchError(f"viewer {self.number}: no session: {opened.text}")
            self.session = opened.json()
            self.sources = self.session["sources"]
            first = self.sources[0]
            self.swarm.first_source[first["node_id"] or "origin"] += 1
            helpers = [
                asyncio.create_task(self._follow_sources()),
                asyncio.create_task(self._send_receipts()),
            ]
            try:
                await self._play()
            finally:
                for task in helpers:
                    task.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)
                with contextlib.suppress(httpx.HTTPError):
                    await self._flush()

    # -- the playlist, from the signed index

    async def _index(self, **params: object) -> list[SegmentEntry]:
        answer = await self.http.get(f"{self.base}/api/v1/streams/{STREAM}/segments", params=params)
        answer.raise_for_status()
        entries = [SegmentEntry(**entry) for entry in answer.json()["segments"]]
        for entry in entries:
            verify_entry(self.swarm.key, STREAM, entry)  # AttestationError: a failed run
        return entries

    async def _play(self) -> None:
        entries = await self._index(limit=FIRST_PLAYLIST)
        if not entries:
            raise BenchError(f"viewer {self.number}: the signed index is empty")
        queue = entries[-LIVE_SYNC_SEGMENTS:]
        last = entries[-1].sequence
        while not self.swarm.stop.is_set():
            while queue and not self.swarm.stop.is_set():
                await self._fetch_segment(queue.pop(0))
            grew = False
            while not grew and not self.swarm.stop.is_set():
                # hls.js reloads a live playlist after a target duration when it changed,
                # after half of one when it did not.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.swarm.stop.wait(), 1.0)
                try:
                    new = await self._index(since=last, limit=100)
                except httpx.HTTPError:
                    continue
                if new:
                    queue += new
                    last = new[-1].sequence
                    grew = True

    # -- segments, from the sources in order

    def _ordered(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            s
            for s in self.sources
            if s["kind"] == "origin" or self.skip_until.get(s["node_id"], 0.0) <= now
        ]

    async def _fetch_segment(self, entry: SegmentEntry) -> None:
        give_up = time.monotonic() + LOAD_BUDGET_S
        while time.monotonic() < give_up and not self.swarm.stop.is_set():
            for source in self._ordered():
                fetch = await self._fetch_from(source, entry)
                self.swarm.fetches.append(fetch)
                self._receipt(source, entry, fetch)
                if fetch.outcome == "ok":
                    return
                if source["kind"] == "node":
                    pause = math.inf if fetch.outcome == "mismatch" else FAILED_NODE_PAUSE_S
                    self.skip_until[source["node_id"]] = time.monotonic() + pause
            await asyncio.sleep(ROUND_WAIT_S)
        if not self.swarm.stop.is_set():
            self.swarm.missed.append((self.number, entry.sequence))

    async def _fetch_from(self, source: dict[str, Any], entry: SegmentEntry) -> Fetch:
        url = f"{source['base_url']}/hls/{STREAM}/{entry.name}"
        params = {"session": self.session["token"]} if source["kind"] == "node" else {}
        for attempt in range(NOT_YET_RETRIES + 1):
            started = time.monotonic()
            outcome, size = await self._get(url, params, entry)
            retry = outcome == "not-yet" and source["kind"] == "node"
            if not retry or attempt == NOT_YET_RETRIES or self.swarm.stop.is_set():
                break
            await asyncio.sleep(NOT_YET_WAIT_S)
        return Fetch(
            done_at=time.monotonic(),
            kind=source["kind"],
            node_id=source["node_id"],
            sequence=entry.sequence,
            bytes=size,
            outcome="error" if outcome == "not-yet" else outcome,
            seconds=time.monotonic() - started,
        )

    async def _get(self, url: str, params: dict[str, str], entry: SegmentEntry) -> tuple[str, int]:
        timeout = httpx.Timeout(FIRST_BYTE_S, read=PROGRESS_S)
        received = 0
        try:
            async with asyncio.timeout(max(4.0, 2 * entry.duration_ms / 1000)):
                request = self.http.stream("GET", url, params=params, timeout=timeout)
                async with request as response:
                    if response.status_code != 200:
                        return ("not-yet" if response.status_code == 404 else "error"), 0
                    digest = hashlib.sha256()
                    async for chunk in response.aiter_raw():
                        received += len(chunk)
                        if received > entry.size:
                            return "mismatch", received
                        digest.update(chunk)
        except (TimeoutError, httpx.TimeoutException):
            return "stall", received
        except httpx.HTTPError:
            return "error", received
        if received != entry.size or digest.hexdigest() != entry.sha256:
            return "mismatch", received
        return "ok", received

    # -- what the page sends back: sources, receipts

    async def _follow_sources(self) -> None:
        path = f"{self.base}/api/v1/sessions/{self.session['session_id']}/sources"
        headers = {"X-Streamr-Session": self.session["token"]}
        while True:
            await asyncio.sleep(self.refresh_s)
            with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                answer = await self.http.get(path, headers=headers)
                if answer.status_code == 200:
                    body = answer.json()
                    self.sources = body["sources"]
                    self.refresh_s = max(0.5, float(body["refresh_s"]))

    def _receipt(self, source: dict[str, Any], entry: SegmentEntry, fetch: Fetch) -> None:
        self.receipts.append(
            {
                "source_kind": source["kind"],
                "node_id": source["node_id"] if source["kind"] == "node" else None,
                "segment": entry.name,
                "sequence": entry.sequence,
                "bytes": fetch.bytes,
                "ttfb_ms": None,
                "download_ms": min(600_000, round(fetch.seconds * 1000)),
                "outcome": fetch.outcome,
            }
        )
        if fetch.outcome != "ok" or len(self.receipts) >= RECEIPTS_AT:
            self.urgent.set()

    async def _send_receipts(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.urgent.wait(), RECEIPTS_EVERY_S)
            self.urgent.clear()
            with contextlib.suppress(httpx.HTTPError):
                await self._flush()

    async def _flush(self) -> None:
        while self.pending is not None or self.receipts:
            if self.pending is None:
                batch, self.receipts = self.receipts[:100], self.receipts[100:]
                self.pending = {"batch_id": uuid.uuid4().hex, "receipts": batch}
            answer = await self.http.post(
                f"{self.base}/api/v1/sessions/{self.session['session_id']}/receipts",
                json=self.pending,
                headers={"X-Streamr-Session": self.session["token"]},
            )
            if answer.status_code == 429 or answer.status_code >= 500:
                return  # the same batch goes again later
            if answer.status_code == 200:
                ack = answer.json()
                self.swarm.receipts_stored += 0 if ack["duplicate"] else ack["receipts"]
            else:
                self.swarm.receipts_refused += len(self.pending["receipts"])
            self.pending = None


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
    swarm = Swarm(demo=demo, key=public_key_from(AttestationKey(**key)))
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
    except (BenchError, AttestationError, subprocess.SubprocessError) as exc:
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
