"""How long after a segment is attested it can be fetched from a first- and a second-tier node.

    .venv/bin/python bench/propagation/run.py [--segments 60] [--size 1280x720]

(every option: --help). docs/benchmarks.md has the figures and what they mean.

A real coordinator, ingest and test card, and two real ``streamr-node`` processes
(bench/relay_stack.py): with ``origin_fanout=1`` the first node pulls from the origin and the
second from the first. For ``--segments`` segments attested after the measurement starts:

* **attested**: the coordinator's own record of when it signed the segment (``created_at`` of
  its row in the ``segments`` table, read from the coordinator's SQLite database every 0.5 s;
  the row is committed, and the entry fetchable, a few milliseconds later);
* **servable at a node**, measured from outside as a viewer would: a thread per node holds a
  blocking playlist reload (``index.m3u8?_HLS_msn=<next>``, which the node answers the moment
  its playlist lists that segment), records when the answer listing a new segment arrived, and
  then fetches the segment's bytes (the time they had all arrived is shown too). A node lists
  a segment only once it is in its window, verified and servable. The bytes are checked
  against the signed entry afterwards (size, SHA-256, Ed25519 signature);
* the node's own record (``servable_at`` in ``/stats``, polled every second) as a cross-check;
* for context, when the origin first listed the segment (the mtime of nginx-rtmp's playlist on
  disk, watched every 5 ms), as in bench/attestation/run.py.

The exit status is non-zero when something fails to start, a node sends bytes that do not
match the signed entry, a segment never becomes servable at a node, or nothing could be
measured; never because of the timings.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from streamr_protocol.attestation import AttestationError, SegmentEntry, verify_entry
from streamr_protocol.playlist import PlaylistError, parse

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.relay_stack import BenchError, Relay, encode_card, live_relay  # noqa: E402

TARGET_P50_MS = 300
TARGET_P99_MS = 1000
GIVE_UP_S = 30.0  # a segment not servable this long after its attestation counts as missing
SETUP_S = 90  # the card must outlast starting the stack and both nodes


# ---------------------------------------------------------------- watching


class Watch:
    """A daemon thread that runs ``step`` until stopped, keeping the first error."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._guarded, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self._thread.join(20)
        if self.error is not None:
            raise BenchError(f"{self.name} failed: {self.error!r}")

    def _guarded(self) -> None:
        try:
            self.run()
        except BaseException as exc:
            self.error = exc

    def run(self) -> None:
        raise NotImplementedError


class AttestationWatch(Watch):
    """Every segment row of the stream in the coordinator's database: name -> (entry, signed
    at). Read-only, every 0.5 s: rows are pruned after the retention, so reading once at the
    end could miss some."""

    def __init__(self, db_path: Path, stream: str) -> None:
        super().__init__("attestation watch")
        self.db_path = db_path
        self.stream = stream
        self.rows: dict[str, tuple[SegmentEntry, float]] = {}
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.read()
            self.stopping.wait(0.5)

    def read(self) -> None:
        uri = f"file:{self.db_path}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
            found = db.execute(
                "SELECT s.sequence, s.name, s.duration_ms, s.size, s.sha256, s.discontinuity, "
                "s.signature, s.created_at FROM segments s JOIN streams t ON s.stream_id = t.id "
                "WHERE t.name = ?",
                (self.stream,),
            ).fetchall()
        with self.lock:
            for sequence, name, duration, size, sha, disc, signature, created in found:
                if name in self.rows:
                    continue
                entry = SegmentEntry(
                    sequence=sequence,
                    name=name,
                    duration_ms=duration,
                    size=size,
                    sha256=sha,
                    discontinuity=bool(disc),
                    signature=signature,
                )
                self.rows[name] = (entry, _utc_seconds(created))

    def attested_since(self, mark: float) -> dict[str, tuple[SegmentEntry, float]]:
        with self.lock:
            return {name: row for name, row in self.rows.items() if row[1] >= mark}


def _utc_seconds(text: str) -> float:
    """SQLite keeps the coordinator's UTC timestamps as text without an offset."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


class OriginWatch(Watch):
    """When nginx-rtmp first listed each segment: the mtime of the first playlist on disk that
    lists it (checked with a ``stat`` every 5 ms)."""

    def __init__(self, playlist: Path) -> None:
        super().__init__("origin watch")
        self.playlist = playlist
        self.listed_at: dict[str, float] = {}

    def run(self) -> None:
        signature = None
        while not self.stopping.is_set():
            with contextlib.suppress(FileNotFoundError):
                st = self.playlist.stat()
                if (st.st_mtime_ns, st.st_size, st.st_ino) != signature:
                    with contextlib.suppress(OSError, PlaylistError), self.playlist.open() as f:
                        st = os.fstat(f.fileno())
                        for segment in parse(f.read()).segments:
                            self.listed_at.setdefault(segment.uri, st.st_mtime_ns / 1e9)
                        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
            time.sleep(0.005)


@dataclass
class Seen:
    listed_at: float  # the blocking reload that listed it first arrived
    fetched_at: float | None = None  # all its bytes had arrived
    size: int = 0
    sha256: str = ""
    problem: str | None = None


class NodeWatch(Watch):
    """A viewer of one node: a blocking playlist reload held at all times, then each new
    segment fetched in full."""

    def __init__(self, tier: int, base_url: str, stream: str) -> None:
        super().__init__(f"tier {tier} viewer")
        self.tier = tier
        self.base_url = base_url
        self.playlist_url = f"{base_url}/hls/{stream}/index.m3u8"
        self.segment_base = f"{base_url}/hls/{stream}/"
        self.seen: dict[str, Seen] = {}
        self.reported: dict[str, float] = {}  # the node's own servable_at, from /stats
        self.cpu_pid: int | None = None

    def run(self) -> None:
        following: int | None = None
        with httpx.Client(timeout=30, trust_env=False) as http:
            while not self.stopping.is_set():
                params = {"_HLS_msn": str(following)} if following is not None else None
                answer = http.get(self.playlist_url, params=params)
                arrived = time.time()
                if answer.status_code != 200:
                    following = None
                    self.stopping.wait(0.2)
                    continue
                playlist = parse(answer.text)
                new = [s for s in playlist.segments if s.uri not in self.seen]
                for segment in new:
                    self.seen[segment.uri] = Seen(listed_at=arrived)
                for segment in new:
                    self._fetch(http, segment.uri)
                following = playlist.media_sequence + len(playlist.segments)
                if playlist.ended:
                    self.stopping.wait(0.2)

    def _fetch(self, http: httpx.Client, name: str) -> None:
        seen = self.seen[name]
        answer = http.get(self.segment_base + name)
        seen.fetched_at = time.time()
        if answer.status_code != 200:
            seen.problem = f"listed but GET answered {answer.status_code}"
            return
        seen.size = len(answer.content)
        seen.sha256 = hashlib.sha256(answer.content).hexdigest()

    def poll_stats(self, http: httpx.Client) -> None:
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            for item in http.get(f"{self.base_url}/stats").json()["window"]["recent"]:
                self.reported.setdefault(str(item["name"]), float(item["servable_at"]))


class StatsWatch(Watch):
    """Every node's /stats once a second (its window.recent keeps the newest ten)."""

    def __init__(self, watches: list[NodeWatch]) -> None:
        super().__init__("stats watch")
        self.watches = watches

    def run(self) -> None:
        with httpx.Client(timeout=5, trust_env=False) as http:
            while not self.stopping.is_set():
                for watch in self.watches:
                    watch.poll_stats(http)
                self.stopping.wait(1.0)


# ---------------------------------------------------------------- the report


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p % of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def row(label: str, values: list[float]) -> str:
    if not values:
        return f"| {label} | 0 | | | | | |"
    cells = " | ".join(f"{percentile(values, p):.1f} ms" for p in (50, 90, 95, 99))
    return f"| {label} | {len(values)} | {cells} | {max(values):.1f} ms |"


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(
    measured: dict[str, tuple[SegmentEntry, float]],
    origin: OriginWatch,
    watches: list[NodeWatch],
    relay: Relay,
) -> list[str]:
    problems = []
    names = sorted(measured, key=lambda n: measured[n][0].sequence)
    first, last = measured[names[0]][0].sequence, measured[names[-1]][0].sequence
    print(f"\nPropagation: {len(names)} segments (sequences {first}-{last}), nearest-rank\n")
    print("| from → to | n | p50 | p90 | p95 | p99 | max |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(
        row(
            "origin lists the segment → attested (context)",
            [(measured[n][1] - origin.listed_at[n]) * 1000 for n in names if n in origin.listed_at],
        )
    )
    verdicts = []
    for watch in watches:
        listed, fetched, reported = [], [], []
        for name in names:
            entry, signed_at = measured[name]
            seen = watch.seen.get(name)
            if seen is None:
                problems.append(f"tier {watch.tier}: {name} never became servable")
                continue
            if seen.problem:
                problems.append(f"tier {watch.tier}: {name}: {seen.problem}")
                continue
            try:
                if (seen.size, seen.sha256) != (entry.size, entry.sha256):
                    raise AttestationError("other bytes than the signed entry")
                verify_entry(relay.public_key, relay.stream, entry)
            except AttestationError as exc:
                problems.append(f"tier {watch.tier}: {name} does not verify: {exc}")
                continue
            listed.append((seen.listed_at - signed_at) * 1000)
            if seen.fetched_at is not None:
                fetched.append((seen.fetched_at - signed_at) * 1000)
            if name in watch.reported:
                reported.append((watch.reported[name] - signed_at) * 1000)
        print(row(f"attested → **servable at tier {watch.tier}** (listed)", listed))
        print(row(f"attested → its bytes fetched from tier {watch.tier}", fetched))
        print(row(f"attested → tier {watch.tier}'s own servable_at (/stats)", reported))
        if listed:
            p50, p99 = percentile(listed, 50), percentile(listed, 99)
            met = p50 < TARGET_P50_MS and p99 < TARGET_P99_MS
            verdicts.append(
                f"tier {watch.tier}: p50 {p50:.0f} ms, p99 {p99:.0f} ms: "
                + ("met" if met else "NOT met")
            )
    if len(watches) > 1:
        hops = [
            (watches[1].seen[n].listed_at - watches[0].seen[n].listed_at) * 1000
            for n in names
            if n in watches[0].seen and n in watches[1].seen
        ]
        print(row("servable at tier 1 → servable at tier 2", hops))
    print(f"\nTarget p50 < {TARGET_P50_MS} ms and p99 < {TARGET_P99_MS} ms per tier:")
    for verdict in verdicts:
        print(f"  {verdict}")
    return problems


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Attestation to servable at a first- and a second-tier friend node."
    )
    parser.add_argument("--segments", type=int, default=60, help="segments to measure (2 s each)")
    parser.add_argument("--size", default="1280x720", help="test card frame size")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--tiers", type=int, default=2, choices=[1, 2, 3])
    args = parser.parse_args(argv)
    if args.segments < 1:
        parser.error("--segments must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(machine())
    seconds = 2 * args.segments + SETUP_S
    problems: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="streamr-bench-")))
            started = time.monotonic()
            card = tmp / "card.flv"
            encode_card(card, seconds, args.size, args.fps)
            took = time.monotonic() - started
            print(f"encoded {seconds} s of test card ({args.size}) in {took:.0f} s")
            relay = stack.enter_context(live_relay(tmp / "stack", card, tiers=args.tiers))
            print(
                f"live: stream {relay.stream!r}, nodes "
                + ", ".join(f"{n.name} ({n.url})" for n in relay.nodes)
            )
            attestations = AttestationWatch(relay.db_path, relay.stream)
            origin = OriginWatch(relay.stack.ingest.hls_dir / relay.stream / "index.m3u8")
            viewers = [
                NodeWatch(tier, node.url, relay.stream) for tier, node in enumerate(relay.nodes, 1)
            ]
            watches: list = [attestations, origin, *viewers, StatsWatch(viewers)]
            for watch in watches:
                watch.start()
            time.sleep(3)  # every watcher has seen the current playlists
            mark = time.time()
            cpu_before = {n.name: cpu_seconds(n.process.pid) for n in relay.nodes}
            print(f"measuring {args.segments} segments attested from now on", flush=True)

            def enough() -> bool:
                done = sorted(attestations.attested_since(mark).values(), key=lambda r: r[1])
                if len(done) < args.segments:
                    return False
                last_signed = done[args.segments - 1][1]
                return time.time() > last_signed + 5  # let the last reach every tier

            deadline = time.monotonic() + 2 * args.segments + 120
            while not enough():
                if time.monotonic() > deadline:
                    raise BenchError("the stream did not produce the segments in time")
                if relay.publisher.poll() is not None:
                    raise BenchError("the publisher stopped before enough segments")
                for watch in watches:
                    if watch.error is not None:
                        raise BenchError(f"{watch.name} failed: {watch.error!r}")
                time.sleep(1)
            elapsed = time.time() - mark
            cpu = {n.name: cpu_seconds(n.process.pid) - cpu_before[n.name] for n in relay.nodes}
            for watch in watches:
                watch.stop()
            rows = attestations.attested_since(mark)
            names = sorted(rows, key=lambda n: rows[n][0].sequence)[: args.segments]
            measured = {n: rows[n] for n in names}
            problems = report(measured, origin, viewers, relay)
            print(
                "\nNode CPU while relaying (one viewer each, percent of one core): "
                + ", ".join(f"{name} {seconds / elapsed:.1%}" for name, seconds in cpu.items())
            )
            for node in relay.nodes:
                stats = node.stats()
                print(
                    f"  {node.name}: upstream {stats['upstream']['kind']}, errors {stats['errors']}"
                )
    except (BenchError, RuntimeError, OSError, subprocess.SubprocessError, httpx.HTTPError) as exc:
        print(f"run.py: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"run.py: FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
