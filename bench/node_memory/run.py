"""A friend node's resident memory over a long live stream, with viewers coming and going.

    .venv/bin/python bench/node_memory/run.py [--minutes 10] [--viewers 6]

(every option: --help). docs/benchmarks.md has the figures and what they mean.

A real coordinator, ingest and test card and two real ``streamr-node`` processes, the second
pulling from the first (bench/relay_stack.py). The card (two minutes, encoded once) is
published over and over as one long broadcast. Viewers are threads that behave like players:
each opens a viewer session at the coordinator (``POST /api/v1/streams/{name}/sessions``),
follows one node's playlist with blocking reloads and fetches every new segment with its
session token (so the node checks the token and journals every response for the usage
reports), and after ``--watch-s`` leaves and comes back as a new viewer with a new session.
The viewers are spread over the nodes.

Every ``--every-s`` seconds the resident set size of each node (VmRSS in /proc/<pid>/status)
is read. After ``--warmup-s`` (the window full, every code path run at least once), the
benchmark reports for each node: RSS at the start of the measurement, the highest, at the end,
the slope (least squares, MB per minute), and the growth after warm-up against the size of the
node's window (``/stats``): memory is flat when growth stays under one window plus
``--slack-mb``. ``/stats`` is read only at the start and the end, since reading it also tidies
the node's list of recent viewers.

The exit status is non-zero when something fails to start or a viewer gets errors; never
because of the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from streamr_protocol.playlist import parse

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.relay_stack import BenchError, encode_card, live_relay  # noqa: E402

CARD_S = 120  # the card is published over and over: encoding 10 minutes would take minutes
MB = 1_000_000


class Viewer:
    """A player in a thread: sessions one after another, each watching for ``watch_s``."""

    def __init__(
        self, number: int, coordinator_url: str, node_url: str, stream: str, watch_s: float
    ) -> None:
        self.number = number
        self.watch_s = watch_s
        self.coordinator_url = coordinator_url
        self.playlist_url = f"{node_url}/hls/{stream}/index.m3u8"
        self.segment_base = f"{node_url}/hls/{stream}/"
        self.stream = stream
        self.sessions = 0
        self.segments = 0
        self.bytes = 0
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._guarded, name=f"viewer {number}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self._thread.join(30)

    def _guarded(self) -> None:
        try:
            self._run()
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _run(self) -> None:
        with (
            httpx.Client(base_url=self.coordinator_url, timeout=10, trust_env=False) as api,
            httpx.Client(timeout=30, trust_env=False) as http,
        ):
            while not self.stopping.is_set():
                opened = api.post(f"/api/v1/streams/{self.stream}/sessions")
                if opened.status_code != 201:
                    self.errors.append(f"session: {opened.status_code} {opened.text[:200]}")
                    self.stopping.wait(5)
                    continue
                self.sessions += 1
                self._watch(http, opened.json()["token"], time.monotonic() + self.watch_s)

    def _watch(self, http: httpx.Client, token: str, until: float) -> None:
        seen: set[str] = set()
        following: int | None = None
        first = True
        while not self.stopping.is_set() and time.monotonic() < until:
            params = {"session": token}
            if following is not None:
                params["_HLS_msn"] = str(following)
            answer = http.get(self.playlist_url, params=params)
            if answer.status_code != 200:
                self.errors.append(f"playlist: {answer.status_code} {answer.text[:200]}")
                self.stopping.wait(1)
                continue
            playlist = parse(answer.text)
            new = [s.uri for s in playlist.segments if s.uri not in seen]
            if first:  # a player starts near the live edge: the newest three segments
                new, first = new[-3:], False
            for name in new:
                got = http.get(self.segment_base + name, params={"session": token})
                if got.status_code != 200:
                    self.errors.append(f"{name}: {got.status_code} {got.text[:200]}")
                    continue
                self.segments += 1
                self.bytes += len(got.content)
            seen.update(s.uri for s in playlist.segments)
            following = playlist.media_sequence + len(playlist.segments)
            if playlist.ended:
                self.stopping.wait(1)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def slope_per_minute(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time, in MB per minute."""
    times = [t for t, _ in samples]
    values = [v for _, v in samples]
    mean_t, mean_v = statistics.fmean(times), statistics.fmean(values)
    spread = sum((t - mean_t) ** 2 for t in times)
    if spread == 0:
        return 0.0
    slope = sum((t - mean_t) * (v - mean_v) for t, v in samples) / spread
    return slope * 60 / MB


@dataclass
class NodeMemory:
    name: str
    pid: int
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, RSS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="A friend node's resident memory over a long live stream, with viewers."
    )
    parser.add_argument("--minutes", type=float, default=10, help="measured, after the warm-up")
    parser.add_argument("--warmup-s", type=float, default=60)
    parser.add_argument("--every-s", type=float, default=2, help="RSS sampling interval")
    parser.add_argument("--viewers", type=int, default=6, help="spread over the nodes")
    parser.add_argument("--watch-s", type=float, default=30, help="one session's length")
    parser.add_argument("--tiers", type=int, default=2, choices=[1, 2])
    parser.add_argument("--slack-mb", type=float, default=8, help="allowed beyond one window")
    parser.add_argument("--size", default="1280x720", help="test card frame size")
    parser.add_argument("--fps", type=int, default=30)
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.every_s <= 0 or args.viewers < 0:
        parser.error("--minutes and --every-s must be positive, --viewers at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"{os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}")
    problems: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="streamr-bench-")))
            started = time.monotonic()
            card = tmp / "card.flv"
            encode_card(card, CARD_S, args.size, args.fps)
            took = time.monotonic() - started
            print(f"encoded {CARD_S} s of test card ({args.size}) in {took:.0f} s", flush=True)
            relay = stack.enter_context(
                live_relay(
                    tmp / "stack",
                    card,
                    tiers=args.tiers,
                    loop=True,
                    # Viewers come back with new sessions more often than a person would.
                    coordinator_settings={"viewer_sessions_per_minute": 10_000},
                )
            )
            nodes = [NodeMemory(n.name, n.process.pid) for n in relay.nodes]
            viewers = [
                Viewer(
                    i,
                    relay.stack.coordinator.url,
                    relay.nodes[i % len(relay.nodes)].url,
                    relay.stream,
                    args.watch_s,
                )
                for i in range(args.viewers)
            ]
            for viewer in viewers:
                viewer.start()
            print(
                f"live: nodes {', '.join(n.name for n in relay.nodes)}; {args.viewers} viewers, "
                f"a new session each every {args.watch_s:g} s; warm-up {args.warmup_s:g} s, "
                f"then {args.minutes:g} min",
                flush=True,
            )
            zero = time.monotonic()
            end = zero + args.warmup_s + args.minutes * 60
            cpu_start: dict[str, float] = {}
            window_start: dict[str, dict] = {}
            next_print = zero + args.warmup_s
            while time.monotonic() < end:
                now = time.monotonic() - zero
                for node in nodes:
                    node.samples.append((now, rss_bytes(node.pid)))
                if not cpu_start and now >= args.warmup_s:
                    cpu_start = {n.name: cpu_seconds(n.pid) for n in nodes}
                    window_start = {n.name: n.stats()["window"] for n in relay.nodes}
                if time.monotonic() >= next_print:
                    print(
                        f"  {now:5.0f} s: "
                        + ", ".join(f"{n.name} {n.samples[-1][1] / MB:.1f} MB" for n in nodes)
                        + f"; {sum(v.segments for v in viewers)} segments to viewers",
                        flush=True,
                    )
                    next_print += 60
                if relay.publisher.poll() is not None:
                    raise BenchError("the publisher stopped before the end")
                time.sleep(args.every_s)
            measured_s = time.monotonic() - zero - args.warmup_s
            cpu = {n.name: cpu_seconds(n.pid) - cpu_start.get(n.name, 0.0) for n in nodes}
            for viewer in viewers:
                viewer.stop()
            final = {n.name: n.stats() for n in relay.nodes}

            print(
                f"\nResident memory (VmRSS), {args.minutes:g} min after {args.warmup_s:g} s of "
                f"warm-up, sampled every {args.every_s:g} s\n"
            )
            print(
                "| node | RSS at start | max | end | slope | growth after warm-up "
                "| window | flat? | CPU |"
            )
            print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
            for node in nodes:
                after = [(t, v) for t, v in node.samples if t >= args.warmup_s]
                start, end_rss = after[0][1], after[-1][1]
                top = max(v for _, v in after)
                window = max(
                    window_start.get(node.name, {}).get("bytes", 0),
                    final[node.name]["window"]["bytes"],
                )
                growth = top - start
                flat = growth <= window + args.slack_mb * MB
                print(
                    f"| {node.name} | {start / MB:.1f} MB | {top / MB:.1f} MB | "
                    f"{end_rss / MB:.1f} MB | {slope_per_minute(after):+.2f} MB/min | "
                    f"{growth / MB:+.1f} MB (end {(end_rss - start) / MB:+.1f} MB) | "
                    f"{window / MB:.1f} MB | {'yes' if flat else 'NO'} | "
                    f"{cpu[node.name] / measured_s:.1%} |"
                )
            first_rss = {n.name: n.samples[0][1] for n in nodes}
            print(
                "\nRSS when the node first served segments (before the warm-up): "
                + ", ".join(f"{name} {value / MB:.1f} MB" for name, value in first_rss.items())
            )
            served = sum(v.bytes for v in viewers)
            print(
                f"Viewers: {sum(v.sessions for v in viewers)} sessions, "
                f"{sum(v.segments for v in viewers):,} segments, {served / 1e9:.2f} GB"
            )
            for node in relay.nodes:
                stats = final[node.name]
                print(
                    f"  {node.name}: window {stats['window']['segments']} segments, "
                    f"{stats['bytes']['segments_to_sessions']:,} segments journaled to "
                    f"sessions, reports {stats['reports']}, errors {stats['errors']}"
                )
            for viewer in viewers:
                if viewer.errors:
                    problems.append(
                        f"viewer {viewer.number}: {len(viewer.errors)} errors, first: "
                        f"{viewer.errors[0]}"
                    )
    except (BenchError, RuntimeError, OSError, subprocess.SubprocessError, httpx.HTTPError) as exc:
        print(f"run.py: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"run.py: FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
