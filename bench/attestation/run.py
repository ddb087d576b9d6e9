"""Attestation delay: from nginx-rtmp finishing a segment to its signed index entry being served.

    .venv/bin/python bench/attestation/run.py [--streams 3] [--seconds 130]

(every option: --help). docs/benchmarks.md has the figures and what they mean.

What runs: a real ``streamr coordinator`` (SQLite, the embedded default) and a real
``streamr-ingest`` (Debian's nginx-rtmp, the origin watcher, the reconciler) on loopback, with
their default settings, started the way the end-to-end tests start them (tests/coordinator.py,
tests/ingest.py). ``--streams`` streams are published at once, like OBS would, from a test card
encoded beforehand (the test card's own settings: H.264 + AAC, a keyframe every 2 s) and sent
in real time with ``ffmpeg -re -c copy``, so the publishers cost almost no CPU. By default the
streams start ``2 s / streams`` apart, so their segments do not all end at the same moment;
``--aligned`` starts them together (every stream's segment finishes within a few milliseconds
of the others', the worst case for the watcher).

What is measured, for every segment of every stream:

* start: the moment nginx-rtmp finished the segment, taken as the modification time of the
  first playlist that lists it. nginx-rtmp closes the segment file, then writes the playlist
  aside and renames it into place, so that mtime is the instant the segment became complete in
  the only sense the watcher may use (it never opens an unlisted file). The segment file's own
  mtime (its last write, slightly earlier) is reported too, for comparison;
* end: the moment ``GET /api/v1/streams/{name}/segments?since=`` first returns the segment's
  signed entry. A thread per stream checks the playlist on disk every 2 ms (a ``stat``); from
  the moment a new segment is listed it polls the coordinator until the entry is there, and
  takes the time the answer arrived: an upper bound, at most one poll interval plus one request
  late. The polls of all streams together are spaced ``--poll-ms`` (5 ms) apart, so the
  benchmark never adds more than 200 requests a second to the coordinator's load (one stream
  waiting is polled every 5 ms, three waiting at once each every 15 ms). Every entry is then
  checked (Ed25519 signature, size, SHA-256 of the file on disk);
* the watcher's own figure, ``lag_ms`` of its "segments registered" log events (playlist
  mtime to the coordinator's answer, inside the ingest);
* CPU time of the ingest's runner process (origin watcher, registrar, reconciler and nginx's
  log reader; hashing threads included) from /proc/<pid>/stat, while idle with the streams
  created and over the run, divided by the number of streams; nginx and the coordinator too.

The exit status is non-zero when something fails to start (a server, ffmpeg) or no segment
could be measured at all; never because of the timings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from streamr_ingest.testcard import KEYFRAME_INTERVAL_S, ffmpeg_command
from streamr_protocol.attestation import (
    AttestationError,
    AttestationKey,
    SegmentIndex,
    public_key_from,
    verify_segment,
)
from streamr_protocol.playlist import PlaylistError, parse

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.coordinator import CoordinatorProcess, run_coordinator  # noqa: E402
from tests.ingest import IngestProcess, run_ingest  # noqa: E402

PASSWORD = "correct horse battery staple"  # noqa: S105 - a throwaway benchmark account
TARGET_P99_MS = 200
STAT_EVERY_S = 0.002  # how often each stream's playlist is checked by this benchmark
GIVE_UP_S = 60.0  # a segment not attested by then is reported as missing


class BenchError(Exception):
    """Something the benchmark needs did not work (not a slow result)."""


# ---------------------------------------------------------------- measuring one stream


@dataclass
class Segment:
    stream: str
    sequence: int
    name: str
    listed_at: float  # mtime of the first playlist listing it: nginx finished the segment
    file_mtime: float  # the segment file's last write
    seen_at: float  # when this benchmark noticed the playlist listing it
    available_at: float | None = None  # when GET /segments first returned its signed entry
    polls: int = 0  # GET /segments calls until it was there
    problem: str | None = None

    @property
    def delay_ms(self) -> float:
        assert self.available_at is not None
        return (self.available_at - self.listed_at) * 1000

    @property
    def from_file_ms(self) -> float:
        assert self.available_at is not None
        return (self.available_at - self.file_mtime) * 1000


class Pacer:
    """Spaces the benchmark's GET /segments calls at least ``interval_s`` apart in total, over
    all streams: the polling adds at most one request per interval to the coordinator's load,
    however many streams wait at once (with N waiting, each is polled every N intervals)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval_s
        time.sleep(slot - now)


class StreamWatch:
    """Follows one stream's playlist on disk and the coordinator's index of it, in a thread."""

    def __init__(
        self,
        stream: str,
        hls_dir: Path,
        base_url: str,
        public_key: Ed25519PublicKey,
        pacer: Pacer,
    ) -> None:
        self.stream = stream
        self.directory = hls_dir / stream
        self.base_url = base_url
        self.public_key = public_key
        self.pacer = pacer
        self.segments: list[Segment] = []
        self.error: BaseException | None = None
        self._finish = threading.Event()
        self._thread = threading.Thread(target=self._guarded, name=f"watch-{stream}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self, timeout_s: float) -> None:
        """Stop once every segment listed so far has its entry (or was given up)."""
        self._finish.set()
        self._thread.join(timeout_s)
        if self.error is not None:
            raise BenchError(f"watching {self.stream} failed: {self.error!r}")

    def _guarded(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc

    def _run(self) -> None:
        playlist_path = self.directory / "index.m3u8"
        signature: tuple[int, int, int] | None = None
        known: set[int] = set()
        pending: dict[int, Segment] = {}
        with httpx.Client(base_url=self.base_url, timeout=10, trust_env=False) as http:
            while not (self._finish.is_set() and not pending):
                with contextlib.suppress(FileNotFoundError):
                    st = playlist_path.stat()
                    if (st.st_mtime_ns, st.st_size, st.st_ino) != signature:
                        signature = self._read(playlist_path, known, pending) or signature
                if pending:
                    self.pacer.wait()
                    self._poll(http, pending)
                else:
                    time.sleep(STAT_EVERY_S)

    def _read(
        self, path: Path, known: set[int], pending: dict[int, Segment]
    ) -> tuple[int, int, int] | None:
        seen_at = time.time()
        try:
            with path.open("rb") as handle:
                st = os.fstat(handle.fileno())  # the mtime of exactly the text read
                playlist = parse(handle.read().decode())
        except (OSError, PlaylistError):
            return None
        for segment in playlist.segments:
            if segment.sequence in known:
                continue
            known.add(segment.sequence)
            try:
                file_mtime = (self.directory / segment.uri).stat().st_mtime_ns / 1e9
            except FileNotFoundError:
                file_mtime = math.nan
            record = Segment(
                self.stream,
                segment.sequence,
                segment.uri,
                listed_at=st.st_mtime_ns / 1e9,
                file_mtime=file_mtime,
                seen_at=seen_at,
            )
            self.segments.append(record)
            pending[segment.sequence] = record
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _poll(self, http: httpx.Client, pending: dict[int, Segment]) -> None:
        for record in pending.values():
            record.polls += 1
        answer = http.get(
            f"/api/v1/streams/{self.stream}/segments",
            params={"since": min(pending) - 1, "limit": 500},
        )
        arrived = time.time()
        if answer.status_code != 200:
            raise BenchError(f"GET segments of {self.stream}: {answer.status_code} {answer.text}")
        for entry in SegmentIndex.model_validate(answer.json()).segments:
            record = pending.pop(entry.sequence, None)
            if record is None:
                continue
            record.available_at = arrived
            try:
                data = (self.directory / entry.name).read_bytes()
                if entry.name != record.name:
                    raise AttestationError(f"signed as {entry.name}, listed as {record.name}")
                verify_segment(self.public_key, self.stream, entry, data)
            except (OSError, AttestationError) as exc:
                record.problem = f"does not verify: {exc}"
        for sequence, record in list(pending.items()):
            if arrived - record.listed_at > GIVE_UP_S:
                record.problem = f"not attested within {GIVE_UP_S:g} s"
                del pending[sequence]


# ---------------------------------------------------------------- processes and CPU


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads included (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry.name}/stat") as stat:
            if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@dataclass
class CpuMeter:
    """CPU seconds of named processes between two readings."""

    pids: dict[str, list[int]]
    start: dict[str, float] = field(default_factory=dict)
    wall_start: float = 0.0

    def _read(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in self.pids.items()}

    def begin(self) -> None:
        self.start, self.wall_start = self._read(), time.monotonic()

    def end(self) -> tuple[float, dict[str, float]]:
        """(wall seconds, CPU seconds per name) since ``begin``."""
        now = self._read()
        return time.monotonic() - self.wall_start, {k: now[k] - self.start[k] for k in now}


def cpu_busy(seconds: float = 1.0) -> float:
    """The share of all cores that was busy over the next ``seconds`` (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields[:8]) - idle, sum(fields[:8])

    busy_before, total_before = sample()
    time.sleep(seconds)
    busy_after, total_after = sample()
    return (busy_after - busy_before) / max(1, total_after - total_before)


def encode_card(path: Path, args: argparse.Namespace) -> None:
    """The test card (testcard.py's exact encoder settings) as a file, encoded as fast as
    possible instead of in real time."""
    command = ffmpeg_command(str(path), args.seconds, args.size, args.fps)
    command = [part for part in command if part != "-re"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise BenchError(f"encoding the test card failed: {result.stderr.strip()[-500:]}")


def publisher(card: Path, rtmp_url: str, key: str) -> subprocess.Popen:
    """Sends the encoded card in real time, like OBS. The key is in ffmpeg's argv (visible
    in ps); these are throwaway streams on loopback."""
    command = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-i", str(card)]
    command += ["-c", "copy", "-f", "flv", f"{rtmp_url}/{key}"]
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def create_streams(base_url: str, count: int) -> tuple[dict[str, str], Ed25519PublicKey]:
    """A streamer and ``count`` streams over the API: {name: key}, and the attestation key."""
    with httpx.Client(base_url=base_url, timeout=30, trust_env=False) as http:

        def call(path: str, token: str | None = None, **body: object) -> dict:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            answer = http.post(path, json=body, headers=headers)
            if answer.status_code >= 300:
                raise BenchError(f"POST {path}: {answer.status_code} {answer.text[:300]}")
            return answer.json()

        token = call(
            "/api/v1/auth/register",
            email=f"bench-{uuid.uuid4().hex[:8]}@example.com",
            password=PASSWORD,
            display_name="Bench",
        )["access_token"]
        keys = {}
        for number in range(1, count + 1):
            name = f"bench-{number}"
            keys[name] = call("/api/v1/streams", token, name=name, title=name)["stream_key"]
        key = AttestationKey.model_validate(http.get("/api/v1/attestation/key").json())
    return keys, public_key_from(key)


def stream_states(base_url: str, names: list[str]) -> dict[str, str]:
    with httpx.Client(base_url=base_url, timeout=10, trust_env=False) as http:
        return {name: http.get(f"/api/v1/streams/{name}").json()["status"] for name in names}


def watcher_lags(ingest: IngestProcess, names: set[str]) -> list[float]:
    """``lag_ms`` of the watcher's "segments registered" events for new segments."""
    lags = []
    for line in ingest.log().splitlines():
        if '"event": "segments registered"' not in line:
            continue
        event = json.loads(line)
        if event["stream"] in names and event["accepted"]:
            lags.append(float(event["lag_ms"]))
    return lags


# ---------------------------------------------------------------- the report


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p % of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def row(label: str, values: list[float]) -> str:
    if not values:
        return f"| {label} | 0 | | | | |"
    cells = " | ".join(f"{percentile(values, p):.1f} ms" for p in (50, 90, 99))
    return f"| {label} | {len(values)} | {cells} | {max(values):.1f} ms |"


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = []
    for command in (["nginx", "-v"], ["ffmpeg", "-version"]):
        with contextlib.suppress(OSError):
            out = subprocess.run(command, capture_output=True, text=True, timeout=10)
            versions.append(" ".join((out.stdout + out.stderr).split()[:3]))
    return (
        f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, "
        f"Python {platform.python_version()}; " + "; ".join(versions)
    )


def report(
    watches: list[StreamWatch],
    lags: list[float],
    idle: tuple[float, dict[str, float]],
    busy: tuple[float, dict[str, float]],
    args: argparse.Namespace,
) -> list[str]:
    """Prints the tables; returns the problems found (missing or unverifiable segments)."""
    segments = [s for w in watches for s in w.segments]
    done = [s for s in segments if s.available_at is not None and s.problem is None]
    problems = [f"{s.stream} segment {s.sequence}: {s.problem}" for s in segments if s.problem]
    start = "all at once" if args.aligned else f"{KEYFRAME_INTERVAL_S / args.streams:.2f} s apart"
    print(
        f"\nAttestation delay: {args.streams} streams x {args.seconds:g} s ({start}), "
        f"{args.size} {args.fps} fps test card, coordinator polled every {args.poll_ms:g} ms "
        "(over all streams waiting); "
        f"{len(done)} segments measured\n"
    )
    print("| from -> to | segments | p50 | p90 | p99 | max |")
    print("|---|---:|---:|---:|---:|---:|")
    print(row("playlist lists it -> signed entry served (all streams)", [s.delay_ms for s in done]))
    for watch in watches:
        mine = [s.delay_ms for s in done if s.stream == watch.stream]
        print(row(f"playlist lists it -> signed entry served ({watch.stream})", mine))
    files = [s.from_file_ms for s in done if not math.isnan(s.file_mtime)]
    print(row("segment file's last write -> signed entry served", files))
    print(row("playlist lists it -> the watcher has the coordinator's answer (lag_ms)", lags))
    noticed = [(s.seen_at - s.listed_at) * 1000 for s in done]
    print(row("playlist lists it -> this benchmark noticed (its own delay)", noticed))
    slowest = sorted(done, key=lambda s: s.delay_ms, reverse=True)[:3]
    print(
        "\nSlowest: "
        + ", ".join(f"{s.stream} #{s.sequence} {s.delay_ms:.1f} ms" for s in slowest)
        + " (#0 is a stream's first segment)"
    )
    first_poll = sum(1 for s in done if s.polls == 1)
    print(
        f"Entries already there at the benchmark's first poll (their delay is an upper "
        f"bound set by the benchmark's own noticing): {first_poll} of {len(done)}"
    )

    (idle_wall, idle_cpu), (wall, cpu) = idle, busy
    runner = cpu["ingest runner"]
    per_stream = runner / wall / args.streams * 100
    print(
        f"\nCPU over the {wall:.0f} s run (% of one core; idle = the {idle_wall:.0f} s before, "
        "streams created, nothing published):"
    )
    print("| process | idle | run | run, per stream |")
    print("|---|---:|---:|---:|")
    for name in cpu:
        print(
            f"| {name} | {idle_cpu[name] / idle_wall * 100:.2f} % | {cpu[name] / wall * 100:.2f} % "
            f"| {cpu[name] / wall / args.streams * 100:.2f} % |"
        )
    if done:
        print(
            f"\nOrigin watcher (the ingest's runner process): {per_stream:.2f} % of one core per "
            f"stream, {runner / len(done) * 1000:.1f} ms of CPU per segment."
        )
        p99 = percentile([s.delay_ms for s in done], 99)
        verdict = "met" if p99 < TARGET_P99_MS else "NOT met"
        print(f"Target p99 < {TARGET_P99_MS} ms: {verdict} (p99 {p99:.1f} ms)")
    if len(done) < 60:
        print(f"note: only {len(done)} segments; the target asks for at least 60")
    return problems


# ---------------------------------------------------------------- the run


@contextlib.contextmanager
def ending(processes: list[subprocess.Popen]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def run(args: argparse.Namespace, tmp: Path) -> int:
    card = tmp / "card.flv"
    print(f"encoding {args.seconds:g} s of test card ({args.size}, {args.fps} fps)", flush=True)
    encode_card(card, args)
    data_dir = tmp / "data"
    settings = {"log_level": args.log_level}
    with contextlib.ExitStack() as stack:
        try:
            coordinator: CoordinatorProcess = stack.enter_context(
                run_coordinator(data_dir, log_dir=tmp, **settings)
            )
            ingest: IngestProcess = stack.enter_context(
                run_ingest(coordinator.url, None, data_dir, **settings)
            )
        except (RuntimeError, TimeoutError) as exc:
            raise BenchError(f"a server did not start: {exc}") from exc
        keys, public_key = create_streams(coordinator.url, args.streams)
        nginx_master = int((ingest.work_dir / "nginx.pid").read_text())
        meter = CpuMeter(
            {
                "ingest runner": [ingest.process.pid],
                "nginx": [nginx_master, *children(nginx_master)],
                "coordinator": [coordinator.process.pid] if coordinator.process else [],
            }
        )
        print(f"coordinator {coordinator.url}, ingest {ingest.rtmp_url}; measuring idle CPU")
        meter.begin()
        time.sleep(args.idle)
        idle = meter.end()

        pacer = Pacer(args.poll_ms / 1000)
        watches = [
            StreamWatch(name, ingest.hls_dir, coordinator.url, public_key, pacer) for name in keys
        ]
        for watch in watches:
            watch.start()
        publishers: list[subprocess.Popen] = []
        stack.enter_context(ending(publishers))
        print(f"publishing {args.streams} streams for {args.seconds:g} s", flush=True)
        meter.begin()
        for number, key in enumerate(keys.values()):
            if number and not args.aligned:
                time.sleep(KEYFRAME_INTERVAL_S / args.streams)
            publishers.append(publisher(card, ingest.rtmp_url, key))
        time.sleep(3)
        states = stream_states(coordinator.url, list(keys))
        if any(state != "LIVE" for state in states.values()):
            raise BenchError(f"streams did not go live: {states}\n{ingest.log()[-2000:]}")
        for process in publishers:
            try:
                process.wait(timeout=args.seconds + 60)
            except subprocess.TimeoutExpired as exc:
                raise BenchError("a publisher did not finish in time") from exc
            if process.returncode != 0:
                assert process.stderr is not None
                message = process.stderr.read().decode(errors="replace").strip()
                raise BenchError(f"a publisher failed ({process.returncode}): {message}")
        time.sleep(1)  # nginx closes the last segments when the publishers leave
        for watch in watches:
            watch.finish(timeout_s=GIVE_UP_S + 10)
        busy = meter.end()
        lags = watcher_lags(ingest, set(keys))
    problems = report(watches, lags, idle, busy, args)
    for problem in problems:
        print(f"run.py: WARNING: {problem}", file=sys.stderr)
    if not any(s.available_at for w in watches for s in w.segments):
        print("run.py: no segment was attested at all", file=sys.stderr)
        return 1
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Delay from nginx-rtmp finishing a segment to its signed index entry.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--streams", type=int, default=3, help="streams published at once")
    parser.add_argument("--seconds", type=float, default=130, help="length of each stream")
    parser.add_argument("--size", default="1280x720", help="test card picture size")
    parser.add_argument("--fps", type=int, default=30, help="test card frame rate")
    parser.add_argument(
        "--poll-ms", type=float, default=5, help="interval between polls of the coordinator"
    )
    parser.add_argument("--idle", type=float, default=5, help="seconds of idle CPU measurement")
    parser.add_argument("--aligned", action="store_true", help="start every stream at once")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING"],
        help="coordinator and ingest (the watcher's lag_ms needs INFO)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.streams <= 10:
        parser.error("--streams must be 1 to 10")
    if not 10 <= args.seconds <= 3600:
        parser.error("--seconds must be 10 to 3600")
    if not 1 <= args.poll_ms <= 1000 or not 1 <= args.idle <= 60:
        parser.error("--poll-ms must be 1 to 1000 and --idle 1 to 60")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("ffmpeg", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"run.py: {tool} is missing; run scripts/bootstrap.sh", file=sys.stderr)
            return 1
    print(f"machine: {machine()}")
    busy = cpu_busy()
    print(f"CPU busy before the run: {busy:.0%} of all cores")
    if busy > 0.15:
        print("  warning: something else is using the CPU; the figures will be noisier")
    try:
        with tempfile.TemporaryDirectory(prefix="streamr-bench-attestation-") as tmp:
            return run(args, Path(tmp))
    except (BenchError, OSError, subprocess.SubprocessError, httpx.HTTPError) as exc:
        print(f"run.py: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
