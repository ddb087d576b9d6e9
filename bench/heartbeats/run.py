"""Heartbeats per second one coordinator process sustains, against the framework's ceiling.

    .venv/bin/python bench/heartbeats/run.py [--duration 8] [--connections 32] [--rounds 3]

(every option: --help). docs/benchmarks.md has the figures and what they mean.

In one run, side by side, with wrk and the same request bytes (bench/heartbeats/heartbeat.lua):

* ``bare``: a FastAPI endpoint that parses the JSON body and does nothing (bare_app.py), under
  the same FastAPI, uvicorn and uvicorn options as ``streamr coordinator``: the ceiling;
* ``streamr coordinator`` on SQLite, on PostgreSQL, and on PostgreSQL with presence in Redis,
  each seeded through the HTTP API with one stream and ``--nodes`` registered nodes; wrk sends
  every request as a random one of those nodes, with its own token.

Every server is a separate process with one uvicorn worker. With two or more cores, the server
under test is pinned to core 0 and wrk, PostgreSQL and Redis to core 1 (``taskset``), so the
load generator does not steal the server's CPU. PostgreSQL and Redis are throwaway servers on
127.0.0.1 (tests/servers.py starts them the same way for the test suite).

Besides speed it checks that heartbeats write no database row each: row writes (and, on
PostgreSQL, every SQL statement, from pg_stat_statements) are counted during each measurement
and must stay within one ``nodes.last_seen_at`` update per node per minute.

The exit status is non-zero when a server fails to start, seeding fails, wrk fails or gets
non-2xx answers, or the row-write bound is broken; never because of the timings.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from tests.servers import PostgresServer, free_port, run_postgres, run_redis, wait_for_port  # noqa: E402

BIN = Path(sys.executable).parent
PASSWORD = "correct horse battery staple"  # noqa: S105 - a throwaway benchmark account
HEARTBEAT = {
    "connections": 3,
    "egress_bps": 4_000_000,
    "egress_cap_bps": 20_000_000,
    "version": "0.1.0",
    "public_url": "http://198.51.100.7:8080",
}
LAST_SEEN_EVERY_S = 60  # nodes/last_seen.py: at most one write per node per minute
SQLITE = "heartbeat, SQLite"
POSTGRES = "heartbeat, PostgreSQL"
POSTGRES_REDIS = "heartbeat, PostgreSQL + Redis presence"
REQUIRED = (SQLITE, POSTGRES)  # the target; Redis presence is measured as well


class BenchError(Exception):
    """Something the benchmark needs did not work (not a slow result)."""


# ---------------------------------------------------------------- servers


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
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


def clean_env() -> dict[str, str]:
    """This environment without STREAMR_* settings, so a developer's config cannot leak in."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}


def coordinator(
    name: str, workdir: Path, pin: list[str], args: argparse.Namespace, **settings: str
) -> Server:
    workdir.mkdir(parents=True)
    port = free_port()
    env = clean_env()
    env.update(
        STREAMR_DATA_DIR=str(workdir / "data"),
        STREAMR_LOG_LEVEL=args.log_level,
        # Seeding registers 50 nodes from one address; the default would throttle it.
        STREAMR_AUTH_ATTEMPTS_PER_MINUTE="1000000",
        # The worker's jobs are not the heartbeat path, and in production they run in `streamr
        # worker` processes: in here the presence reaper (every 15 s it copies each present
        # node's last beat into the database) would count as the heartbeats' row writes.
        STREAMR_RUN_BACKGROUND_JOBS="false",
    )
    env.update({f"STREAMR_{key.upper()}": value for key, value in settings.items()})
    env.update({f"STREAMR_{key.upper()}": value for key, value in args.settings.items()})
    command = [*pin, str(BIN / "streamr"), "coordinator", "--host", "127.0.0.1"]
    return Server(name, [*command, "--port", str(port)], env, port, workdir / "server.log")


def bare_server(workdir: Path, pin: list[str], log_level: str) -> Server:
    workdir.mkdir(parents=True)
    port = free_port()
    command = [*pin, sys.executable, str(HERE / "bare_app.py"), "--port", str(port)]
    return Server(
        "bare", [*command, "--log-level", log_level], clean_env(), port, workdir / "server.log"
    )


# ---------------------------------------------------------------- seeding


def seed(server: Server, nodes: int, nodes_file: Path) -> None:
    """Streamer, stream, one invite for every node, a friend, and the nodes, all over HTTP."""
    with httpx.Client(base_url=server.base_url, timeout=30) as http:

        def call(method: str, path: str, token: str | None = None, **body: object) -> dict:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = http.request(method, path, json=body, headers=headers)
            if response.status_code >= 300:
                raise BenchError(
                    f"seeding {server.name}: {method} {path} answered "
                    f"{response.status_code}: {response.text[:300]}"
                )
            return response.json()

        def account(role: str) -> str:
            email = f"bench-{role}-{uuid.uuid4().hex[:8]}@example.com"
            body = call(
                "POST",
                "/api/v1/auth/register",
                email=email,
                password=PASSWORD,
                display_name=f"Bench {role}",
                role=role,
            )
            return body["access_token"]

        streamer = account("streamer")
        stream = f"bench-{uuid.uuid4().hex[:8]}"
        call("POST", "/api/v1/streams", streamer, name=stream, title="Heartbeat benchmark")
        code = call("POST", f"/api/v1/streams/{stream}/invites", streamer, max_uses=nodes)["code"]
        friend = account("friend")
        lines = []
        for i in range(nodes):
            node = call(
                "POST",
                "/api/v1/nodes/register",
                friend,
                invite_code=code,
                name=f"bench-{i}",
                public_url=HEARTBEAT["public_url"],
                version=HEARTBEAT["version"],
            )
            lines.append(f"{node['node_id']} {node['node_token']}\n")
        nodes_file.write_text("".join(lines))
        # One heartbeat by hand: proves the path answers 200 before wrk counts anything.
        node_id, token = lines[0].split()
        call("POST", f"/api/v1/nodes/{node_id}/heartbeat", token, **HEARTBEAT)


# ---------------------------------------------------------------- database probes


class Probe(Protocol):
    """Counts what the server under test did to its database during a measurement."""

    def snapshot(self) -> dict[str, int]: ...


class SqliteProbe:
    """Row writes, counted by triggers added to every table of the benchmark's own database.

    SQLite has no statement statistics another process can read, so reads are not counted.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as db, db:
            tables = [
                row[0]
                for row in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%' AND name <> 'bench_row_writes'"
                )
            ]
            db.execute(
                "CREATE TABLE IF NOT EXISTS bench_row_writes "
                "(tbl TEXT, op TEXT, n INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (tbl, op))"
            )
            for table in tables:
                for op in ("INSERT", "UPDATE", "DELETE"):
                    db.execute(
                        "INSERT OR IGNORE INTO bench_row_writes (tbl, op) VALUES (?, ?)",
                        (table, op),
                    )
                    # Table names come from sqlite_master of the benchmark's own database.
                    trigger = (
                        f'CREATE TRIGGER IF NOT EXISTS "bench_{table}_{op.lower()}" '  # noqa: S608
                        f'AFTER {op} ON "{table}" BEGIN UPDATE bench_row_writes SET n = n + 1 '
                        f"WHERE tbl = '{table}' AND op = '{op}'; END"
                    )
                    db.execute(trigger)

    def snapshot(self) -> dict[str, int]:
        with contextlib.closing(sqlite3.connect(self._path, timeout=30)) as db:
            rows = db.execute("SELECT tbl, op, n FROM bench_row_writes").fetchall()
        counts = {"row writes": sum(n for _, _, n in rows)}
        counts["nodes updates"] = sum(n for tbl, op, n in rows if (tbl, op) == ("nodes", "UPDATE"))
        return counts


class PostgresProbe:
    """Every statement the coordinator ran, and the rows it wrote, from pg_stat_statements."""

    def __init__(self, server: PostgresServer, database: str) -> None:
        self._server = server
        self._database = database
        self._psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def _psql(self, sql: str) -> str:
        result = subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self._server.port),
                "-U",
                self._server.user,
                "-d",
                self._database,
                "-XAtqF",
                "\t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BenchError(f"psql failed: {result.stderr.strip()}")
        return result.stdout

    def snapshot(self) -> dict[str, int]:
        out = self._psql(
            "SELECT split_part(ltrim(upper(query)), ' ', 1), query ILIKE '%nodes%', calls, rows "
            "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
            "WHERE datname = current_database()) AND query NOT ILIKE '%pg_stat_statements%'"
        )
        counts = {"statements": 0, "token lookups": 0, "row writes": 0, "nodes updates": 0}
        for line in out.splitlines():
            verb, on_nodes, calls, rows = line.split("\t")
            counts["statements"] += int(calls)
            if verb == "SELECT" and on_nodes == "t":
                counts["token lookups"] += int(calls)
            if verb in {"INSERT", "UPDATE", "DELETE"}:
                counts["row writes"] += int(rows)
                if verb == "UPDATE" and on_nodes == "t":
                    counts["nodes updates"] += int(rows)
        return counts


# ---------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def parse_wrk(output: str) -> WrkResult:
    def latency(percent: str) -> float:
        match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
        if not match:
            raise BenchError(f"no {percent}% latency in wrk's output:\n{output}")
        return float(match[1]) * _UNITS_MS[match[2]]

    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not done or not rps:
        raise BenchError(f"cannot read wrk's output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        requests=int(done[1]),
        seconds=float(done[2]) * _UNITS_MS[done[3]] / 1000,
        rps=float(rps[1]),
        p50_ms=latency("50"),
        p99_ms=latency("99"),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
    )


def run_wrk(
    pin: list[str], url: str, nodes_file: Path, bare: bool, seconds: int, args: argparse.Namespace
) -> WrkResult:
    command = [
        *pin,
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(HERE / "heartbeat.lua"),
        url,
        "--",
        str(nodes_file),
        *(["bare"] if bare else []),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
    if result.returncode != 0:
        raise BenchError(f"wrk failed ({result.returncode}): {result.stderr.strip()}")
    return parse_wrk(result.stdout)


# ---------------------------------------------------------------- the run


@dataclass
class Target:
    label: str
    server: Server
    nodes_file: Path
    probe: Probe | None  # None: the bare endpoint, which has no database
    results: list[tuple[WrkResult, dict[str, int]]] = field(default_factory=list)

    @property
    def bare(self) -> bool:
        return self.probe is None


def measure(target: Target, pin: list[str], args: argparse.Namespace) -> None:
    target.server.check_alive()
    url = target.server.base_url + "/"  # heartbeat.lua sets each request's path
    # Warm-up: connections, token cache, the first (once a minute) last_seen writes.
    run_wrk(pin, url, target.nodes_file, target.bare, args.warmup, args)
    time.sleep(0.5)  # let the write-behind tasks started by the warm-up finish
    before = target.probe.snapshot() if target.probe else {}
    result = run_wrk(pin, url, target.nodes_file, target.bare, args.duration, args)
    time.sleep(0.5)
    after = target.probe.snapshot() if target.probe else {}
    delta = {key: after[key] - before.get(key, 0) for key in after}
    target.server.check_alive()
    target.results.append((result, delta))
    db = ", ".join(f"{k} {v}" for k, v in delta.items())
    print(
        f"  {target.label}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
        f"p99 {result.p99_ms:.2f} ms, {result.requests:,} requests"
        + (f"; database during the run: {db}" if db else ""),
        flush=True,
    )


def median_result(target: Target) -> tuple[WrkResult, dict[str, int]]:
    ordered = sorted(target.results, key=lambda item: item[0].rps)
    return ordered[(len(ordered) - 1) // 2]


def _ratio(target: Target, bare: Target) -> float:
    return statistics.median(r.rps for r, _ in target.results) / statistics.median(
        r.rps for r, _ in bare.results
    )


def report(targets: list[Target], args: argparse.Namespace) -> list[str]:
    """Prints the table and the database evidence; returns what makes the run a failure."""
    problems = []
    bare = targets[0]
    allowed = args.nodes * (1 + math.floor(args.duration / LAST_SEEN_EVERY_S))
    rounds = f"median of {args.rounds} rounds" if args.rounds > 1 else "1 round"
    print(
        f"\nHeartbeats: {rounds} of {args.duration} s, {args.connections} connections, "
        f"{args.nodes} nodes, log level {args.log_level}\n"
    )
    print("| target | req/s | p50 | p99 | ratio to bare |")
    print("|---|---:|---:|---:|---:|")
    for target in targets:
        result, _ = median_result(target)
        print(
            f"| {target.label} | {result.rps:,.0f} | {result.p50_ms:.2f} ms | "
            f"{result.p99_ms:.2f} ms | {_ratio(target, bare):.2f} |"
        )
    print("\nEach measurement (ratio against the bare endpoint in the same round):")
    for target in targets:
        for number, (result, db) in enumerate(target.results, 1):
            line = (
                f"  {target.label}, round {number}: {result.rps:,.0f} req/s "
                f"({result.rps / bare.results[number - 1][0].rps:.2f}), "
                f"{result.requests:,} requests"
            )
            if target.probe is not None:
                line += f"; database: {db['row writes']} row writes"
                line += f" ({db['nodes updates']} nodes.last_seen_at updates)"
                if "statements" in db:
                    line += (
                        f", {db['statements']} SQL statements of which {db['token lookups']} "
                        f"token lookups = {db['statements'] / result.requests:.4f} per heartbeat"
                    )
            print(line)
            if result.non_2xx:
                problems.append(f"{target.label}: {result.non_2xx} answers were not 2xx")
            if result.socket_errors:
                print(f"  note: {result.socket_errors} socket errors (see wrk)")
            if target.probe is not None and db["row writes"] > allowed:
                problems.append(
                    f"{target.label}: {db['row writes']} row writes for {result.requests} "
                    f"heartbeats, more than one per node per minute ({allowed})"
                )
    print(
        f"\nRow writes allowed per measurement: {allowed} (one nodes.last_seen_at update per node "
        "per minute); a row per heartbeat would be one per request."
    )
    required = [t for t in targets if t.label in REQUIRED]
    if required:
        worst = min(_ratio(t, bare) for t in required)
        verdict = "met" if worst >= 0.5 else "NOT met"
        print(f"Target ratio >= 0.50 on SQLite and PostgreSQL: {verdict} (lowest {worst:.2f})")
    return problems


def cpu_busy(seconds: float = 1.0) -> float:
    """The share of all cores that was busy over the next ``seconds`` (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle and iowait
        return sum(fields[:8]) - idle, sum(fields[:8])

    busy_before, total_before = sample()
    time.sleep(seconds)
    busy_after, total_after = sample()
    return (busy_after - busy_before) / max(1, total_after - total_before)


@contextlib.contextmanager
def stopping(servers: list[Server]) -> Iterator[None]:
    try:
        yield
    finally:
        for server in reversed(servers):
            server.stop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Heartbeats per second of one coordinator process, against a bare endpoint."
    )
    parser.add_argument("--duration", type=int, default=8, help="seconds per measurement (≤ 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up before each")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--nodes", type=int, default=50, help="registered nodes to spread over")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians shown")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING"])
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis presence run")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra coordinator setting, e.g. node_token_cache_ttl_s=60 (repeatable)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 10 or not 1 <= args.warmup <= 10:
        parser.error("--duration and --warmup must be 1 to 10 seconds")
    if not 1 <= args.nodes <= 1000:
        parser.error("--nodes must be 1 to 1000 (one invite's max_uses)")
    if args.connections < args.threads or args.rounds < 1:
        parser.error("need at least one connection per wrk thread and one round")
    for setting in args.setting:
        if "=" not in setting:
            parser.error(f"--setting {setting!r} is not NAME=VALUE")
    args.settings = dict(setting.split("=", 1) for setting in args.setting)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("run.py: wrk is missing; run scripts/bootstrap.sh", file=sys.stderr)
        return 1
    busy = cpu_busy()
    print(f"CPU busy before the run: {busy:.0%} of all cores")
    if busy > 0.15:
        print("  warning: something else is using the CPU; the figures will be noisier")
    pin_server: list[str] = []
    pin_other: list[str] = []
    if not args.no_pin and shutil.which("taskset") and len(os.sched_getaffinity(0)) >= 2:
        first, second = sorted(os.sched_getaffinity(0))[:2]
        pin_server, pin_other = ["taskset", "-c", str(first)], ["taskset", "-c", str(second)]
        print(f"pinning: servers under test on core {first}; wrk, PostgreSQL, Redis on {second}")
    else:
        print("pinning: off")

    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="streamr-bench-")))
            postgres = stack.enter_context(
                run_postgres(
                    wrap=pin_other, settings={"shared_preload_libraries": "pg_stat_statements"}
                )
            )
            redis_url = None if args.no_redis else stack.enter_context(run_redis(wrap=pin_other))
            pg_databases = {"pg": postgres.create_database()}
            if redis_url:
                pg_databases["pg_redis"] = postgres.create_database()

            servers = [
                bare_server(tmp / "bare", pin_server, args.log_level),
                coordinator(SQLITE, tmp / "sqlite", pin_server, args),
                coordinator(
                    POSTGRES,
                    tmp / "pg",
                    pin_server,
                    args,
                    database_url=pg_databases["pg"],
                    auto_migrate="true",
                ),
            ]
            if redis_url:
                servers.append(
                    coordinator(
                        POSTGRES_REDIS,
                        tmp / "pg_redis",
                        pin_server,
                        args,
                        database_url=pg_databases["pg_redis"],
                        redis_url=redis_url,
                        auto_migrate="true",
                    )
                )
            stack.enter_context(stopping(servers))
            for server in servers:
                server.start()
            print(f"started: {', '.join(s.name for s in servers)}; seeding {args.nodes} nodes")

            targets: list[Target] = []
            for server in servers[1:]:
                nodes_file = server.log_path.parent / "nodes.txt"
                seed(server, args.nodes, nodes_file)
                probe: Probe
                if server.env.get("STREAMR_DATABASE_URL"):
                    database = server.env["STREAMR_DATABASE_URL"].rsplit("/", 1)[1]
                    probe = PostgresProbe(postgres, database)
                else:
                    probe = SqliteProbe(
                        Path(server.env["STREAMR_DATA_DIR"]) / "coordinator.sqlite3"
                    )
                targets.append(Target(server.name, server, nodes_file, probe))
            # The bare endpoint gets the same headers and bodies (tokens it ignores).
            targets.insert(
                0, Target("bare FastAPI endpoint", servers[0], targets[0].nodes_file, None)
            )

            for number in range(1, args.rounds + 1):
                print(f"round {number} of {args.rounds}", flush=True)
                for target in targets:
                    measure(target, pin_other, args)
            problems = report(targets, args)
    except (BenchError, RuntimeError, OSError, subprocess.SubprocessError, httpx.HTTPError) as exc:
        # A server that would not start or answer (timings never end up here).
        print(f"run.py: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"run.py: FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
