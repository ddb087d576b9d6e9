"""A friend node's relay throughput, against nginx serving the same live segments.

    .venv/bin/python bench/node_relay/run.py [--duration 10] [--rounds 3] [--quick]

(every option: --help). docs/benchmarks.md has the figures and what they mean.

In one run, side by side, with wrk and the same requests (bench/node_relay/viewers.lua):

* ``nginx``: Debian's nginx, one process (``master_process off``, ``worker_processes 1``),
  ``sendfile`` and keep-alive on, serving the segment files and the playlist from disk (the
  page cache, after the first read): the baseline, what the origin itself does;
* ``node``: the node's own serving path (``NodeApp`` on ``HttpServer``, node_server.py) in its
  own process, with the same segments in its in-memory window, signed by a throwaway key.

The segments are real: the test card (H.264 at 2.5 Mbit/s + AAC, a keyframe every 2 s, the
settings of streamr_ingest/testcard.py) encoded once into 2-second MPEG-TS segments, about
650 KB each at 1280x720. nginx serves the node's own rendered playlist, so both send the same
bytes. Three loads, each measured on both servers:

* ``segments``: every request a random one of the six listed segments;
* ``segments with sessions``: the same, each request with a viewer session token
  (``?session=``, one of ``--sessions``), so the node checks the token (cached after the first
  time) and journals the response for accounting, as with every real viewer; nginx gets the
  very same URLs and ignores the query;
* ``playlist``: only ``index.m3u8``, small and bound by the cost of a request.

Before anything is timed, every segment and the playlist are fetched from both servers and
compared with the files (SHA-256); with a session token too. The servers are pinned to core 0
and wrk to core 1 (``taskset``); rounds are interleaved (nginx, then the node, for each load)
and the table shows medians over the rounds; the ratio is taken within each round, then the
median of those.

CPU time is read from /proc around every measurement: the server's, wrk's, the kernel's
interrupts and softirqs (where loopback TCP's receive path runs), and what is left, which is
other processes. From the server's CPU time per request comes a second ratio, nginx's cost per
request over the node's: the throughput ratio to expect where the server's core is the limit.
On a machine shared with other work, the rounds in which other processes stayed under a
quarter of a core are summarised separately.

The exit status is non-zero when something fails to start, a body is wrong, or wrk sees errors
or non-2xx answers; never because of the timings.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from streamr_ingest.testcard import ffmpeg_command
from streamr_protocol.playlist import parse

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from tests.servers import free_port, wait_for_port  # noqa: E402

STREAM = "bench"
TARGET_RATIO = 0.5
AIM_RATIO = 0.8
QUIET_CORES = 0.25  # other processes' CPU below which a round counts as undisturbed


class BenchError(Exception):
    """Something the benchmark needs did not work (not a slow result)."""


# ---------------------------------------------------------------- segments


def encode_segments(directory: Path, args: argparse.Namespace) -> list[Path]:
    """The test card as 2-second HLS segments (testcard.py's encoder settings, not real time),
    listed in ``source.m3u8``; the segment files in order."""
    directory.mkdir(parents=True)
    command = ffmpeg_command("unused", args.seconds, args.size, args.fps, args.kbps)
    command = [part for part in command if part != "-re"]
    command = command[: command.index("flv") - 1]  # its output, "-f flv URL", is replaced
    command += ["-f", "hls", "-hls_time", "2", "-hls_list_size", "0"]
    command += ["-hls_segment_filename", str(directory / "%d.ts"), str(directory / "source.m3u8")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise BenchError(f"encoding the test card failed: {result.stderr.strip()[-500:]}")
    playlist = parse((directory / "source.m3u8").read_text())
    return [directory / segment.uri for segment in playlist.segments]


# ---------------------------------------------------------------- servers


@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid  # taskset execs the server: the same process

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, timeout_s=60, process=self.process)
        except (RuntimeError, TimeoutError) as exc:
            raise BenchError(f"{self.name} did not start: {exc}\n{self.log_tail()}") from exc

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise BenchError(f"{self.name} exited\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"  | {line}" for line in text[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


NGINX_CONF = """\
{user}
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log stderr warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    server_tokens off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65s;
    # The node never closes a keep-alive connection by count; nor does nginx here.
    keepalive_requests 1000000;
    default_type application/octet-stream;
    types {{
        application/vnd.apple.mpegurl m3u8;
        video/mp2t ts;
    }}
    client_body_temp_path {work}/tmp/client_body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;

    # What ingest-server/nginx.conf's origin sends with each answer, on the same files.
    server {{
        listen 127.0.0.1:{port};
        location = /hls/{stream}/index.m3u8 {{
            alias {segments}/index.m3u8;
            add_header Cache-Control "no-cache" always;
            add_header Access-Control-Allow-Origin "*" always;
            add_header Access-Control-Expose-Headers "Content-Length, Content-Range, ETag" always;
        }}
        location /hls/{stream}/ {{
            alias {segments}/;
            add_header Cache-Control "public, max-age=60";
            add_header Access-Control-Allow-Origin "*" always;
            add_header Access-Control-Expose-Headers "Content-Length, Content-Range, ETag" always;
        }}
    }}
}}
"""


def nginx_server(work: Path, segments: Path, pin: list[str]) -> Server:
    work.mkdir(parents=True)
    (work / "tmp").mkdir()
    port = free_port()
    # As root, nginx would hand its work to 'nobody', who cannot read a private temp directory
    # (ingest-server/streamr_ingest/nginx.py does the same).
    user = "user root root;" if os.geteuid() == 0 else ""
    conf = NGINX_CONF.format(user=user, work=work, port=port, stream=STREAM, segments=segments)
    (work / "nginx.conf").write_text(conf)
    command = [*pin, "nginx", "-p", str(work), "-c", str(work / "nginx.conf"), "-e", "stderr"]
    return Server("nginx", command, port, work / "server.log")


def node_server(work: Path, segments: Path, pin: list[str], args: argparse.Namespace) -> Server:
    work.mkdir(parents=True)
    port = free_port()
    command = [
        *pin,
        sys.executable,
        str(HERE / "node_server.py"),
        "--segments",
        str(segments),
        "--stream",
        STREAM,
        "--port",
        str(port),
        "--tokens-out",
        str(work / "tokens.txt"),
        "--sessions",
        str(args.sessions),
    ]
    return Server("node", command, port, work / "server.log")


# ---------------------------------------------------------------- checks


def check_bodies(servers: list[Server], files: dict[str, Path], token: str) -> None:
    """Every path from every server, byte for byte the file (SHA-256), before any timing."""
    with httpx.Client(timeout=30, trust_env=False) as http:
        for server in servers:
            for path, file in files.items():
                expected = hashlib.sha256(file.read_bytes()).hexdigest()
                queries = [""] if path.endswith(".m3u8") else ["", f"?session={token}"]
                for query in queries:
                    answer = http.get(server.base_url + path + query)
                    if answer.status_code != 200:
                        raise BenchError(f"{server.name}: GET {path}: {answer.status_code}")
                    if hashlib.sha256(answer.content).hexdigest() != expected:
                        raise BenchError(f"{server.name}: GET {path} sent other bytes than {file}")


# ---------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests: int
    bytes: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]
    cpu_s: float  # the server's CPU time during the measurement
    wrk_cpu_s: float  # wrk's
    softirq_s: float  # interrupt and softirq time on all cores (loopback TCP's receive path)
    other_cpu_s: float  # everything else on the machine: other processes

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6

    @property
    def cpu_share(self) -> float:
        return self.cpu_s / self.seconds

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_s / max(1, self.requests) * 1e6


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads included (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_seconds() -> tuple[float, float]:
    """CPU time all cores have spent busy since boot, and of it in interrupts and softirqs
    (/proc/stat; idle and iowait are not busy)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:9]]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - fields[3] - fields[4]) / tick, (fields[5] + fields[6]) / tick


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    pin: list[str],
    server: Server,
    paths_file: Path,
    tokens_file: Path | None,
    seconds: int,
    args: argparse.Namespace,
) -> WrkResult:
    command = [
        *pin,
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(HERE / "viewers.lua"),
        server.base_url,
        "--",
        str(paths_file),
        *([str(tokens_file)] if tokens_file else []),
    ]
    cpu_before, wrk_before, busy_before = (
        cpu_seconds(server.pid),
        children_cpu_seconds(),
        busy_seconds(),
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    cpu = cpu_seconds(server.pid) - cpu_before
    wrk_cpu = children_cpu_seconds() - wrk_before
    busy_after = busy_seconds()
    busy, softirq = (busy_after[0] - busy_before[0], busy_after[1] - busy_before[1])
    if result.returncode != 0:
        raise BenchError(f"wrk failed ({result.returncode}): {result.stderr.strip()}")
    match = re.search(r"^RESULT (.*)$", result.stdout, re.M)
    if not match:
        raise BenchError(f"cannot read wrk's output:\n{result.stdout}\n{result.stderr}")
    values = {key: int(value) for key, value in (p.split("=") for p in match[1].split())}
    return WrkResult(
        requests=values["requests"],
        bytes=values["bytes"],
        seconds=values["duration_us"] / 1e6,
        p50_ms=values["p50_us"] / 1000,
        p99_ms=values["p99_us"] / 1000,
        errors={k: values[k] for k in ("status", "connect", "read", "write", "timeout")},
        cpu_s=cpu,
        wrk_cpu_s=wrk_cpu,
        softirq_s=softirq,
        other_cpu_s=max(0.0, busy - softirq - cpu - wrk_cpu),
    )


# ---------------------------------------------------------------- the run


@dataclass
class Load:
    label: str
    paths_file: Path
    tokens_file: Path | None
    results: dict[str, list[WrkResult]] = field(default_factory=dict)


def measure(load: Load, server: Server, pin: list[str], args: argparse.Namespace) -> None:
    server.check_alive()
    if args.warmup:  # connections, caches, the node's session cache, the page cache
        run_wrk(pin, server, load.paths_file, load.tokens_file, args.warmup, args)
    result = run_wrk(pin, server, load.paths_file, load.tokens_file, args.duration, args)
    load.results.setdefault(server.name, []).append(result)
    print(
        f"  {load.label}, {server.name}: {result.rps:,.0f} req/s, {result.mb_per_s:,.0f} MB/s, "
        f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
        f"server CPU {result.cpu_share:.0%}",
        flush=True,
    )


def median(results: list[WrkResult]) -> WrkResult:
    ordered = sorted(results, key=lambda r: r.rps)
    return ordered[(len(ordered) - 1) // 2]


def round_ratios(load: Load, server: Server) -> list[float]:
    """The server's req/s over nginx's, round by round (each pair measured back to back)."""
    return [
        result.rps / nginx.rps
        for result, nginx in zip(load.results[server.name], load.results["nginx"], strict=True)
    ]


def cost_ratio(load: Load, server: Server) -> float:
    """nginx's CPU time per request over the server's (medians of the rounds): the throughput
    ratio to expect where the server's core, not the load generator, is the limit."""
    nginx = statistics.median(r.cpu_us_per_request for r in load.results["nginx"])
    return nginx / statistics.median(r.cpu_us_per_request for r in load.results[server.name])


def report(loads: list[Load], servers: list[Server], args: argparse.Namespace) -> list[str]:
    problems = []
    rounds = f"median of {args.rounds} rounds" if args.rounds > 1 else "1 round"
    print(
        f"\nRelay throughput: {rounds} of {args.duration} s, {args.connections} connections, "
        f"{args.threads} wrk thread(s)\n"
    )
    print(
        "| load | server | req/s | MB/s | p50 | p99 | server CPU | CPU per request "
        "| req/s ratio | CPU cost ratio |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for load in loads:
        for server in servers:
            results = load.results[server.name]
            result = median(results)
            print(
                f"| {load.label} | {server.name} | {result.rps:,.0f} | {result.mb_per_s:,.0f} | "
                f"{result.p50_ms:.2f} ms | {result.p99_ms:.2f} ms | "
                f"{statistics.median(r.cpu_share for r in results):.0%} | "
                f"{statistics.median(r.cpu_us_per_request for r in results):,.0f} µs | "
                f"{statistics.median(round_ratios(load, server)):.2f} | "
                f"{cost_ratio(load, server):.2f} |"
            )
    print(
        "\nreq/s ratio: the median over the rounds of node/nginx in each round. CPU cost ratio:"
        "\nnginx's CPU time per request over the node's.\n"
        "\nEach measurement (req/s ratio to nginx in the same round; CPU of the server, of wrk, "
        "\nof interrupts and softirqs, and of every other process on the machine, in cores):"
    )
    for load in loads:
        for server in servers:
            ratios = round_ratios(load, server)
            for number, result in enumerate(load.results[server.name], 1):
                print(
                    f"  {load.label}, {server.name}, round {number}: {result.rps:,.0f} req/s "
                    f"({ratios[number - 1]:.2f}), {result.mb_per_s:,.0f} MB/s, "
                    f"p99 {result.p99_ms:.2f} ms; CPU server {result.cpu_share:.2f}, "
                    f"wrk {result.wrk_cpu_s / result.seconds:.2f}, "
                    f"softirq {result.softirq_s / result.seconds:.2f}, "
                    f"other {result.other_cpu_s / result.seconds:.2f}"
                )
                errors = {k: v for k, v in result.errors.items() if v}
                if errors:
                    problems.append(f"{load.label}, {server.name}: wrk counted errors {errors}")
    node = next(s for s in servers if s.name == "node")
    print(
        f"\nRounds in which other processes used under {QUIET_CORES} of a core during both "
        "measurements:"
    )
    for load in loads:
        ratios = round_ratios(load, node)
        quiet = [
            ratio
            for ratio, mine, nginx in zip(
                ratios, load.results["node"], load.results["nginx"], strict=True
            )
            if max(mine.other_cpu_s / mine.seconds, nginx.other_cpu_s / nginx.seconds) < QUIET_CORES
        ]
        summary = (
            f"median req/s ratio {statistics.median(quiet):.2f} "
            f"(from {min(quiet):.2f} to {max(quiet):.2f})"
            if quiet
            else "none"
        )
        print(f"  {load.label}: {len(quiet)} of {len(ratios)}; {summary}")
    segment_loads = [load for load in loads if load.label.startswith("segments")]
    worst = min(statistics.median(round_ratios(load, node)) for load in segment_loads)
    worst_cost = min(cost_ratio(load, node) for load in segment_loads)

    def verdict(value: float) -> str:
        if value >= AIM_RATIO:
            return f"{value:.2f}, met (and the aim of {AIM_RATIO:.2f})"
        return f"{value:.2f}, " + ("met" if value >= TARGET_RATIO else "NOT met")

    print(
        f"\nTarget node/nginx >= {TARGET_RATIO:.2f} on segments (lowest of the segment loads): "
        f"req/s {verdict(worst)}; CPU cost {verdict(worst_cost)}"
    )
    return problems


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


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = []
    for command in (["nginx", "-v"], ["wrk", "-v"]):
        with contextlib.suppress(OSError):
            out = subprocess.run(command, capture_output=True, text=True, timeout=10)
            versions.append((out.stdout + out.stderr).splitlines()[0].strip())
    return (
        f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, "
        f"Python {platform.python_version()}; " + "; ".join(versions)
    )


@contextlib.contextmanager
def stopping(servers: list[Server]) -> Iterator[None]:
    try:
        yield
    finally:
        for server in reversed(servers):
            server.stop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="A node's relay throughput against nginx on the same live segments."
    )
    parser.add_argument("--duration", type=int, default=6, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up before each")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; medians shown")
    parser.add_argument("--sessions", type=int, default=64, help="viewer session tokens")
    parser.add_argument("--seconds", type=int, default=24, help="test card to encode (12 segs)")
    parser.add_argument("--size", default="1280x720", help="test card frame size")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--kbps", type=int, default=2500, help="video bitrate")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument(
        "--quick", action="store_true", help="a sanity run: 1 round of 3 s, 1 s warm-up"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds, args.seconds = 3, 1, 1, 14
    if args.duration < 1 or args.warmup < 0 or args.rounds < 1:
        parser.error("need --duration >= 1, --warmup >= 0 and --rounds >= 1")
    if args.connections < args.threads or args.sessions < 1:
        parser.error("need a connection per wrk thread and at least one session")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("wrk", "nginx", "ffmpeg"):
        if shutil.which(tool) is None:
            print(f"run.py: {tool} is missing; run scripts/bootstrap.sh", file=sys.stderr)
            return 1
    print(machine())
    busy = cpu_busy()
    print(f"CPU busy before the run: {busy:.0%} of all cores")
    if busy > 0.15:
        print("  warning: something else is using the CPU; the figures will be noisier")
    pin_server: list[str] = []
    pin_load: list[str] = []
    if not args.no_pin and shutil.which("taskset") and len(os.sched_getaffinity(0)) >= 2:
        first, second = sorted(os.sched_getaffinity(0))[:2]
        pin_server, pin_load = ["taskset", "-c", str(first)], ["taskset", "-c", str(second)]
        print(f"pinning: servers on core {first}, wrk on core {second}")
    else:
        print("pinning: off")

    problems: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="streamr-bench-")))
            started = time.monotonic()
            files = encode_segments(tmp / "segments", args)
            sizes = [f.stat().st_size for f in files]
            print(
                f"encoded {len(files)} segments in {time.monotonic() - started:.0f} s: "
                f"{min(sizes) / 1000:.0f}-{max(sizes) / 1000:.0f} KB, "
                f"mean {statistics.mean(sizes) / 1000:.0f} KB"
            )
            servers = [node_server(tmp / "node", tmp / "segments", pin_server, args)]
            stack.enter_context(stopping(servers))
            for server in servers:
                server.start()
            # nginx serves the node's own playlist, so both send the same bytes.
            playlist_path = f"/hls/{STREAM}/index.m3u8"
            playlist = httpx.get(servers[0].base_url + playlist_path, timeout=10, trust_env=False)
            if playlist.status_code != 200:
                raise BenchError(f"the node's playlist: {playlist.status_code} {playlist.text}")
            (tmp / "segments" / "index.m3u8").write_bytes(playlist.content)
            nginx = nginx_server(tmp / "nginx", tmp / "segments", pin_server)
            servers.insert(0, nginx)
            nginx.start()

            listed = [s.uri for s in parse(playlist.text).segments]
            segment_paths = [f"/hls/{STREAM}/{name}" for name in listed]
            checked = {f"/hls/{STREAM}/{name}": tmp / "segments" / name for name in listed}
            checked[playlist_path] = tmp / "segments" / "index.m3u8"
            tokens_file = tmp / "node" / "tokens.txt"
            token = tokens_file.read_text().split()[0]
            check_bodies(servers, checked, token)
            listed_sizes = [checked[p].stat().st_size for p in segment_paths]
            print(
                f"bodies checked (SHA-256) on {', '.join(s.name for s in servers)}: "
                f"{len(listed)} listed segments (mean {statistics.mean(listed_sizes) / 1000:.0f} "
                f"KB) and the playlist ({len(playlist.content)} bytes), with and without a "
                "session token"
            )

            (tmp / "segments.txt").write_text("\n".join(segment_paths) + "\n")
            (tmp / "playlist.txt").write_text(playlist_path + "\n")
            loads = [
                Load("segments", tmp / "segments.txt", None),
                Load("segments with sessions", tmp / "segments.txt", tokens_file),
                Load("playlist", tmp / "playlist.txt", None),
            ]
            for number in range(1, args.rounds + 1):
                print(f"round {number} of {args.rounds}", flush=True)
                for load in loads:
                    for server in servers:
                        measure(load, server, pin_load, args)
            problems = report(loads, servers, args)
            node = servers[1]
            stats = httpx.get(node.base_url + "/stats", timeout=10, trust_env=False).json()
            print(
                f"\nThe node's ledger: {stats['ledger']['segments']:,} segments and "
                f"{stats['ledger']['attributed_bytes'] / 1e9:,.2f} GB journaled to viewer "
                f"sessions, {stats['ledger']['unattributed_bytes'] / 1e9:,.2f} GB without; "
                f"answers by status {stats['by_status']}"
            )
            if stats["ledger"]["segments"] == 0:
                problems.append("the node journaled no segment to a session")
    except (BenchError, RuntimeError, OSError, subprocess.SubprocessError, httpx.HTTPError) as exc:
        print(f"run.py: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"run.py: FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
