"""Load: heartbeats of thousands of simulated nodes at their real interval, plus viewer sessions
and receipts, through the load balancer to coordinator replicas on PostgreSQL and Redis.

    .venv/bin/python bench/load/run.py [--nodes 5000] [--viewers 500] [--seconds 60]
                                       [--replicas 2] [--single]

(every option: --help). docs/benchmarks.md has the figures and what they mean.

By default it starts the production-shaped cluster (``streamr_coordinator.cluster``:
PostgreSQL, Redis, nginx, ``--replicas`` coordinator replicas behind it, workers and the ingest
with its test card) with no real nodes, and sends everything through nginx. The cluster gets
the settings docs/operator.md gives an operator for ``--nodes`` nodes (``operator_settings``:
the stats collector's interval); ``--setting`` overrides them. ``--single`` runs
one coordinator process on PostgreSQL and Redis instead, with no nginx (how it was developed,
and a baseline).

Seeding is not measured: invites of up to 100 uses each, a few friend accounts, and ``--nodes``
nodes registered over the HTTP API (through the load balancer), 32 registrations at a time;
each node gets its own token, which its heartbeats use. In the cluster every node and viewer is
on the test card's stream, which the real ingest keeps live (the ingest reconciles stream states
with what it publishes, so streams driven live through its hooks would not stay live there);
``--single`` makes ``--streams`` streams and drives them live through the ingest hooks, as
nginx-rtmp calls them.

Then ``--generators`` processes (bench/load/clients.py) send, open-loop on a schedule fixed in
advance, for ``--warmup`` seconds and then ``--seconds`` measured: every node's heartbeat every
``heartbeat_interval_s`` (5 s) at a random phase, each beat moved by up to ±``--jitter``;
``--viewers`` viewers watching all the time, each opening a session, sending a receipt batch
every 5 s, leaving after an exponential watch time (mean ``--watch-mean``) and replaced at once.
The generators are open-loop (a slow answer does not delay the next send) over at most
``--connections`` keep-alive connections each; a request due while all are busy waits, and that
wait counts as lateness. The simulated nodes serve nothing, so no node passes a reachability
check: sessions get the origin only, and receipts name the stream's nodes as their sources.

Reported for the measured window: requests per second per kind, latency p50/p99/max, answers
by status (errors: target zero), how late the generators sent against their schedule (they are
the bottleneck if that grows), CPU of every process, and what PostgreSQL and Redis did.

The exit status is non-zero only when the run itself fails (a server or generator that does
not start, seeding that fails); never because of the figures, errors included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import secrets
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.heartbeats.run import (  # noqa: E402
    PASSWORD,
    BenchError,
    Server,
    coordinator,
    stopping,
)
from bench.load.clients import HEARTBEAT_BODY, Plan, Result, generate  # noqa: E402
from bench.load.probes import PostgresStats, RedisStats, cpu_snapshot, machine_busy  # noqa: E402
from streamr_coordinator.cluster.services import run_postgres, run_redis  # noqa: E402
from streamr_protocol.ingest import RELAY_HEADER, SECRET_HEADER  # noqa: E402

INVITE_USES = 100  # several invites are redeemed at once (each use locks its invite row)
NODES_PER_FRIEND = 500
REGISTER_CONCURRENCY = 32
# On loopback every viewer and node comes from 127.0.0.1, where production has one address
# each; the per-address limits would refuse the run's own traffic.
LOOPBACK_LIMITS = {
    "STREAMR_AUTH_ATTEMPTS_PER_MINUTE": "1000000",
    "STREAMR_VIEWER_SESSIONS_PER_MINUTE": "1000000",
}


def operator_settings(nodes: int) -> dict[str, str]:
    """What docs/operator.md tells an operator to set for this many nodes: every node's
    ``/stats`` at most about 20 fetches a second (each costs a worker about a millisecond of
    CPU), so every minute up to 1,200 nodes and less often beyond."""
    return {"stats_interval_s": str(max(60, math.ceil(nodes / 20)))}


@dataclass
class Target:
    """What the generators send to, and what to watch while they do."""

    base_url: str
    database_url: str
    redis_url: str
    ingest_secret: str | None  # set: streams go live through the hooks
    live_streams: list[str]  # set: streams already live (the cluster's test card)
    streamer: tuple[str, str] | None = None  # (email, password) of those streams' owner
    processes: dict[str, list[int]] = field(default_factory=dict)
    interval_s: float = 5.0


# ---------------------------------------------------------------- the servers


@contextlib.contextmanager
def single_target(args: argparse.Namespace, workdir: Path) -> Iterator[Target]:
    """One coordinator process on PostgreSQL and Redis, no load balancer."""
    with contextlib.ExitStack() as stack:
        postgres = stack.enter_context(
            run_postgres(settings={"shared_preload_libraries": "pg_stat_statements"})
        )
        redis_server = stack.enter_context(run_redis())
        database_url = postgres.create_database()
        secret = secrets.token_urlsafe(32)
        server: Server = coordinator(
            "coordinator",
            workdir / "coordinator",
            [],
            args,
            database_url=database_url,
            redis_url=redis_server.url,
            auto_migrate="true",
            ingest_secret=secret,
            viewer_sessions_per_minute=LOOPBACK_LIMITS["STREAMR_VIEWER_SESSIONS_PER_MINUTE"],
        )
        stack.enter_context(stopping([server]))
        server.start()
        assert server.process and postgres.process and redis_server.process
        yield Target(
            base_url=server.base_url,
            database_url=database_url,
            redis_url=redis_server.url,
            ingest_secret=secret,
            live_streams=[],
            processes={
                "coordinator": [server.process.pid],
                "postgresql": [postgres.process.pid],
                "redis": [redis_server.process.pid],
            },
        )


@contextlib.contextmanager
def cluster_target(args: argparse.Namespace, workdir: Path) -> Iterator[Target]:
    """The production-shaped cluster with its test card live and no real nodes (ours are
    simulated). Its ingest reconciles stream states with what it really publishes, so the
    test card's stream is the one live stream: every node and viewer is on it."""
    from streamr_coordinator.cluster.run import start_cluster
    from streamr_coordinator.demo import DEMO_EMAIL

    settings = {k.removeprefix("STREAMR_").lower(): v for k, v in LOOPBACK_LIMITS.items()}
    settings |= operator_settings(args.nodes)
    settings |= {"log_level": args.log_level, **args.settings}
    with start_cluster(
        workdir,
        replicas=args.replicas,
        workers=args.workers,
        nodes=0,
        test_card=True,
        settings=settings,
    ) as cluster:
        processes: dict[str, list[int]] = {}
        for role, group in (
            ("nginx", [cluster.lb]),
            ("coordinator replicas", cluster.replicas),
            ("workers", cluster.workers),
            ("postgresql", [cluster.postgres]),
            ("redis", [cluster.redis]),
            ("ingest + test card", [cluster.ingest, cluster.test_card]),
        ):
            pids = [p.process.pid for p in group if p is not None and p.process is not None]
            if pids:
                processes[role] = pids
        yield Target(
            base_url=cluster.url,
            database_url=cluster.database_url,
            redis_url=cluster.redis_url,
            ingest_secret=None,
            live_streams=[cluster.stream.name],
            streamer=(DEMO_EMAIL, cluster.stream.password),
            processes=processes,
            interval_s=float(settings.get("heartbeat_interval_s", 5.0)),
        )


# ---------------------------------------------------------------- seeding


@dataclass
class Seeded:
    nodes: list[tuple[str, str]]  # (node id, token)
    streams: list[tuple[str, list[str]]]  # (name, node ids)
    seconds: float


async def seed(target: Target, args: argparse.Namespace) -> Seeded:
    """Accounts, streams, invites and ``--nodes`` registered nodes, over the HTTP API."""
    started = time.monotonic()
    limits = httpx.Limits(max_connections=REGISTER_CONCURRENCY)
    async with httpx.AsyncClient(base_url=target.base_url, timeout=60, limits=limits) as http:

        async def call(method: str, path: str, token: str | None = None, **body: Any) -> Any:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            for attempt in range(5):
                answer = await http.request(method, path, json=body, headers=headers)
                if answer.status_code not in (502, 503, 504):
                    break
                await asyncio.sleep(0.5 * (attempt + 1))  # seeding is not what is measured
            if answer.status_code >= 300:
                raise BenchError(
                    f"seeding: {method} {path} answered {answer.status_code}: {answer.text[:300]}"
                )
            return answer.json()

        async def account(role: str) -> str:
            body = await call(
                "POST",
                "/api/v1/auth/register",
                email=f"load-{role}-{uuid.uuid4().hex[:10]}@example.com",
                password=PASSWORD,
                display_name=f"Load {role}",
                role=role,
            )
            return str(body["access_token"])

        names = list(target.live_streams)
        keys: dict[str, str] = {}
        if not names:
            streamer = await account("streamer")
            for _ in range(args.streams):
                name = f"load-{uuid.uuid4().hex[:8]}"
                body = await call(
                    "POST", "/api/v1/streams", streamer, name=name, title="Load benchmark"
                )
                names.append(name)
                keys[name] = body["stream_key"]
        else:
            assert target.streamer is not None
            email, password = target.streamer
            login = await call("POST", "/api/v1/auth/login", email=email, password=password)
            streamer = login["access_token"]
            for name in names:
                await wait_on_air(http, name)
        per_stream = math.ceil(args.nodes / len(names))
        invites: dict[str, list[str]] = {}
        for name in names:
            count = math.ceil(per_stream / INVITE_USES)
            invites[name] = [
                (await call("POST", f"/api/v1/streams/{name}/invites", streamer, max_uses=uses))[
                    "code"
                ]
                for uses in [INVITE_USES] * (count - 1) + [per_stream - INVITE_USES * (count - 1)]
            ]
        friends = await asyncio.gather(
            *(account("friend") for _ in range(max(1, math.ceil(args.nodes / NODES_PER_FRIEND))))
        )
        gate = asyncio.Semaphore(REGISTER_CONCURRENCY)

        async def register(i: int) -> tuple[str, str, str]:
            name = names[i % len(names)]
            own = invites[name]
            code = own[(i // len(names)) % len(own)]
            async with gate:
                node = await call(
                    "POST",
                    "/api/v1/nodes/register",
                    friends[i % len(friends)],
                    invite_code=code,
                    name=f"load-{i}",
                    public_url=HEARTBEAT_BODY["public_url"],
                    version=HEARTBEAT_BODY["version"],
                )
            return name, node["node_id"], node["node_token"]

        registered = await asyncio.gather(*(register(i) for i in range(args.nodes)))
        if target.ingest_secret is not None:
            for name in names:
                await go_live(http, target.ingest_secret, name, keys[name])
    by_stream: dict[str, list[str]] = {name: [] for name in names}
    for name, node_id, _ in registered:
        by_stream[name].append(node_id)
    return Seeded(
        nodes=[(node_id, token) for _, node_id, token in registered],
        streams=list(by_stream.items()),
        seconds=time.monotonic() - started,
    )


async def wait_on_air(http: httpx.AsyncClient, name: str, timeout_s: float = 60) -> None:
    """Until the test card's publish has made the stream LIVE (or TESTING)."""
    deadline = time.monotonic() + timeout_s
    status = "?"
    while time.monotonic() < deadline:
        answer = await http.get(f"/api/v1/streams/{name}")
        if answer.status_code == 200:
            status = answer.json()["status"]
            if status in ("LIVE", "TESTING"):
                return
        await asyncio.sleep(0.5)
    raise BenchError(f"stream {name!r} did not go on air within {timeout_s:g} s ({status})")


async def go_live(http: httpx.AsyncClient, secret: str, name: str, key: str) -> None:
    """What nginx-rtmp does when OBS publishes: check the key, then start the HLS publish."""
    headers = {
        SECRET_HEADER: secret,
        RELAY_HEADER: "rtmp://127.0.0.1:1935/hls",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    for path, form, expected in (
        ("authorize", f"name={key}&addr=203.0.113.50", 302),
        ("publish", f"name={name}", 200),
    ):
        answer = await http.post(f"/api/v1/ingest/hooks/{path}", content=form, headers=headers)
        if answer.status_code != expected:
            raise BenchError(
                f"going live: hook {path} answered {answer.status_code}: {answer.text}"
            )


# ---------------------------------------------------------------- the run


def split(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[i::parts] for i in range(parts)]


def run_generators(
    target: Target, seeded: Seeded, args: argparse.Namespace
) -> tuple[list[Result], dict[str, Any]]:
    """Start the generator processes, read the probes at both ends of the window."""
    host, port = target.base_url.removeprefix("http://").rsplit(":", 1)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    start_at = time.monotonic() + 3.0 + args.generators * 0.5  # room for the spawns to import
    viewers = split(list(range(args.viewers)), args.generators)
    nodes = split(seeded.nodes, args.generators)
    plans = [
        Plan(
            host=host,
            port=int(port),
            nodes=nodes[g],
            streams=seeded.streams,
            viewers=len(viewers[g]),
            start_at=start_at,
            warmup_s=args.warmup,
            seconds=args.seconds,
            ramp_s=args.ramp,
            interval_s=target.interval_s,
            jitter_s=args.jitter,
            watch_mean_s=args.watch_mean,
            sources_every_s=args.sources_every,
            max_connections=args.connections,
            seed=g,
        )
        for g in range(args.generators)
    ]
    processes = [context.Process(target=generate, args=(plan, queue)) for plan in plans]
    for process in processes:
        process.start()
    pids = {**target.processes, "load generators": [p.pid for p in processes if p.pid]}
    postgres = PostgresStats(target.database_url)
    redis_stats = RedisStats(target.redis_url)

    def snapshot() -> dict[str, Any]:
        return {
            "at": time.monotonic(),
            "cpu": cpu_snapshot(pids),
            "machine": machine_busy(),
            "postgres": postgres.snapshot(),
            "redis": redis_stats.snapshot(),
        }

    time.sleep(max(0.0, plans[0].measure_from - time.monotonic()))
    before = snapshot()
    time.sleep(max(0.0, plans[0].measure_to - time.monotonic()))
    after = snapshot()
    results: list[Result] = []
    deadline = time.monotonic() + 60
    while len(results) < len(processes):
        try:
            pid, result = queue.get(timeout=max(1.0, deadline - time.monotonic()))
        except Exception as exc:  # queue.Empty: a generator died without a word
            raise BenchError("a load generator did not report") from exc
        if isinstance(result, str):
            raise BenchError(f"load generator {pid} failed: {result}")
        results.append(result)
    for process in processes:
        process.join(timeout=10)
    return results, {"before": before, "after": after, "pids": pids}


# ---------------------------------------------------------------- the report


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def report(
    results: list[Result],
    probes: dict[str, Any],
    seeded: Seeded,
    args: argparse.Namespace,
    target: Target,
) -> None:
    before, after = probes["before"], probes["after"]
    window = after["at"] - before["at"]
    print(
        f"\nMeasured window: {window:.1f} s after {args.warmup:g} s of warm-up; "
        f"{args.nodes:,} nodes (heartbeat every {target.interval_s:g} s ± {args.jitter:g} s), "
        f"{args.viewers} viewers on {len(seeded.streams)} stream(s), "
        f"{args.generators} generator process(es); seeding took {seeded.seconds:.1f} s\n"
    )
    kinds: dict[str, dict[str, Any]] = {}
    for result in results:
        for kind, stats in result.kinds.items():
            k = kinds.setdefault(kind, {"lat": [], "late": [], "status": Counter(), "bodies": []})
            k["lat"] += stats.latencies_ms
            k["late"] += stats.lateness_ms
            k["status"] += stats.statuses
            k["bodies"] += stats.error_bodies
    print("| request | sent/s | p50 | p99 | max | answers | late > 100 ms | late p99 |")
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    errors = 0
    for kind in sorted(kinds):
        k = kinds[kind]
        total = sum(k["status"].values())
        bad = sum(n for s, n in k["status"].items() if not s.startswith("2"))
        errors += bad
        late = sum(1 for x in k["late"] if x > 100)
        answers = ", ".join(f"{s}: {n:,}" for s, n in sorted(k["status"].items()))
        print(
            f"| {kind} | {total / args.seconds:,.1f} | {percentile(k['lat'], 0.5):.1f} ms | "
            f"{percentile(k['lat'], 0.99):.1f} ms | {max(k['lat'], default=math.nan):.1f} ms | "
            f"{answers} | {late:,} | {percentile(k['late'], 0.99):.1f} ms |"
        )
    print(
        "\nTimeline, warm-up included (seconds since the generators started: answers 2xx / "
        "other, mean latency; by due time):"
    )
    for kind in sorted(kinds):
        merged: dict[int, list[float]] = {}
        for result in results:
            stats = result.kinds.get(kind)
            for second, (ok, bad, lat) in stats.timeline.items() if stats else ():
                bucket = merged.setdefault(second // 5 * 5, [0, 0, 0.0])
                bucket[0] += ok
                bucket[1] += bad
                bucket[2] += lat
        cells = [
            f"{s}s {int(ok)}/{int(bad)} {lat / max(1, ok + bad):.0f}ms"
            for s, (ok, bad, lat) in sorted(merged.items())
        ]
        print(f"  {kind}: " + " | ".join(cells))
    print(f"\nErrors (answers not 2xx, timeouts, connection failures): {errors}")
    for kind, k in kinds.items():
        for body in k["bodies"][:3]:
            print(f"  {kind}: {body}")
    behind = sum(r.sends_behind for r in results)
    print(
        f"Connections opened by the generators: {sum(r.connections_opened for r in results)}; "
        f"requests that waited for a free connection: {behind}"
    )

    print("\nCPU during the window (share of one core):")
    busy = (after["machine"][0] - before["machine"][0]) / max(
        1, after["machine"][1] - before["machine"][1]
    )
    for name in after["cpu"]:
        used = after["cpu"][name] - before["cpu"][name]
        print(f"  {name}: {used / window:.0%} ({len(probes['pids'][name])} process(es))")
    own = [r.cpu_s / r.wall_s for r in results]
    print(f"  each generator, by its own count: {', '.join(f'{x:.0%}' for x in own)}")
    print(f"  the whole machine: {busy:.0%} of {os.cpu_count()} cores")

    pg_before, pg_after = before["postgres"], after["postgres"]
    print("\nPostgreSQL during the window (per second):")
    for key, value in pg_after["database"].items():
        print(f"  {key}: {(value - pg_before['database'][key]) / window:,.1f}")
    print(f"  connections now: {pg_after['connections']['now']}")
    tables = {k: v - pg_before["tables"].get(k, 0) for k, v in pg_after["tables"].items()}
    busiest = sorted(((v, k) for k, v in tables.items() if v), reverse=True)[:12]
    if busiest:
        print("  tables: " + ", ".join(f"{k} {v / window:,.1f}/s" for v, k in busiest))
    statements = {
        k: v - pg_before["statements"].get(k, 0)
        for k, v in pg_after["statements"].items()
        if not k.endswith("\ttime_us")
    }
    if statements:
        total = sum(statements.values())
        print(f"  statements (pg_stat_statements): {total / window:,.1f}/s; most called:")
        for query, calls in sorted(statements.items(), key=lambda kv: -kv[1])[:10]:
            if calls:
                micros = pg_after["statements"].get(f"{query}\ttime_us", 0) - pg_before[
                    "statements"
                ].get(f"{query}\ttime_us", 0)
                print(f"    {calls / window:8,.1f}/s  {micros / max(1, calls):7,.0f} µs  {query}")

    r_before, r_after = before["redis"], after["redis"]
    print("\nRedis during the window:")
    print(
        f"  commands: {(r_after['commands'] - r_before['commands']) / window:,.1f}/s "
        f"(instantaneous_ops_per_sec at the end: {r_after['ops_per_sec_now']:,.0f}); "
        f"CPU {((r_after['cpu_s'] - r_before['cpu_s']) / window):.0%} of a core; "
        f"{r_after['clients']:.0f} clients; memory {r_after['memory_bytes'] / 1e6:.1f} MB"
    )
    commands = {
        k[4:]: v - r_before.get(k, 0)
        for k, v in r_after.items()
        if k.startswith("cmd ") and not k.endswith(" usec")
    }
    top = sorted(((v, k) for k, v in commands.items() if v), reverse=True)[:10]
    if top:
        print("  by command: " + ", ".join(f"{k} {v / window:,.1f}/s" for v, k in top))

    lateness = [x for k in kinds.values() for x in k["late"]]
    if lateness:
        print(
            f"\nGenerator lateness (write time - due time), all requests: p50 "
            f"{percentile(lateness, 0.5):.1f} ms, p99 {percentile(lateness, 0.99):.1f} ms, "
            f"max {max(lateness):.1f} ms"
        )
        in_flight = args.connections * args.generators
        if percentile(lateness, 0.5) > 1000:
            # Little's law: the connections hold rate times latency requests at once. Beyond that,
            # requests queue in the generators until REQUEST_TIMEOUT_S and the run collapses
            # into timeouts, although the answers that do come may be quick.
            print(
                f"  Most requests waited for a free connection: rate times latency exceeded "
                f"the {in_flight} connections (--connections times --generators). The servers "
                "could not keep up; with more connections their latency shows instead."
            )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Heartbeats of many simulated nodes plus viewers, through the load balancer."
    )
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--viewers", type=int, default=500, help="watching at any time")
    parser.add_argument("--seconds", type=float, default=60, help="measured (≤ 600)")
    parser.add_argument("--warmup", type=float, default=20, help="seconds before measuring")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--single", action="store_true", help="one coordinator, no cluster")
    parser.add_argument("--streams", type=int, default=10, help="streams (--single only)")
    parser.add_argument("--generators", type=int, default=2, help="load generator processes")
    parser.add_argument("--connections", type=int, default=64, help="per generator")
    parser.add_argument(
        "--ramp", type=float, default=10, help="nodes start beating over this many seconds"
    )
    parser.add_argument("--jitter", type=float, default=0.5, help="± seconds on each beat")
    parser.add_argument("--watch-mean", type=float, default=300, help="mean watch time, s")
    parser.add_argument(
        "--sources-every", type=float, default=0, help="viewers poll sources every N s (0: no)"
    )
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING"])
    parser.add_argument("--workdir", type=Path, help="keep the servers' files and logs here")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra coordinator setting, e.g. node_token_cache_ttl_s=60 (repeatable)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.nodes <= 50_000 or not 0 <= args.viewers <= 20_000:
        parser.error("--nodes must be 1 to 50,000 and --viewers 0 to 20,000")
    if not 1 <= args.seconds <= 600 or not 5 <= args.warmup <= 120:
        parser.error("--seconds must be 1 to 600 and --warmup 5 to 120")
    if not 0 <= args.ramp <= args.warmup:
        parser.error("--ramp must be 0 to --warmup seconds")
    if args.generators < 1 or args.streams < 1 or args.replicas < 1:
        parser.error("need at least one generator, stream and replica")
    for setting in args.setting:
        if "=" not in setting:
            parser.error(f"--setting {setting!r} is not NAME=VALUE")
    args.settings = dict(s.split("=", 1) for s in args.setting)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"load average before the run: {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
        f"({os.cpu_count()} cores)",
        flush=True,
    )
    try:
        with contextlib.ExitStack() as stack:
            workdir = args.workdir or Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="streamr-load-"))
            )
            workdir.mkdir(parents=True, exist_ok=True)
            manager = single_target if args.single else cluster_target
            target = stack.enter_context(manager(args, workdir))
            print(f"servers up at {target.base_url}; seeding {args.nodes:,} nodes", flush=True)
            seeded = asyncio.run(seed(target, args))
            print(
                f"seeded in {seeded.seconds:.1f} s ({args.nodes / seeded.seconds:,.0f} "
                f"registrations/s); running {args.warmup:g} + {args.seconds:g} s",
                flush=True,
            )
            results, probes = run_generators(target, seeded, args)
            report(results, probes, seeded, args, target)
    except (BenchError, RuntimeError, OSError, httpx.HTTPError) as exc:
        print(f"run.py: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
