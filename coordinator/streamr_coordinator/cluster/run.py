"""A production-shaped cluster on one machine: what ``streamr cluster`` runs, and what the fault
tests and the load benchmark start.

PostgreSQL and Redis (cluster/services.py), the schema (``streamr db upgrade``), N coordinator
replicas (``streamr coordinator --behind-proxy``, STREAMR_RUN_BACKGROUND_JOBS=false, each with a
data directory of its own so that nothing is shared through the disk), M ``streamr worker``
processes, nginx in front (cluster/lb.py), the ingest, an optional test card and K friend nodes
joined to the demo stream through the load balancer. The keys every replica must share (access
tokens, segment attestation, network hashes, the ingest secret) are made once and given to all
of them as settings, as on several machines.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..demo import (
    DemoStream,
    ingest_command,
    node_command,
    node_env,
    prepare_demo_stream,
    test_card_command,
)
from ..settings import Settings
from .lb import render
from .services import NginxServer, PostgresServer, RedisServer, _Server, free_port

DATABASE = "streamr"
STREAMR = [sys.executable, "-m", "streamr_coordinator.cli"]


class ClusterProcess(_Server):
    """One process of the cluster (a replica, a worker, the ingest, a node): ``start``,
    ``stop`` (SIGTERM, a clean shutdown), ``kill`` (SIGKILL, a crash), ``restart``; the same
    command, environment, port and log (appended to) every time."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        port: int | None = None,
        stdin_text: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.port = port
        self.stdin_text = stdin_text

    @property
    def url(self) -> str:
        if not self.port:
            raise AttributeError(f"{self.name} listens on no port")
        return f"http://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        return self.argv


@dataclass
class Cluster:
    """A running cluster. ``url`` is the load balancer's (what viewers, nodes and the ingest
    use); ``env`` holds the STREAMR_* settings every replica and worker shares (the database,
    Redis and the shared keys) without the per-process ones (data directory, port)."""

    workdir: Path
    url: str
    env: dict[str, str]
    postgres: PostgresServer
    redis: RedisServer
    lb: NginxServer
    replicas: list[ClusterProcess]
    workers: list[ClusterProcess]
    stream: DemoStream  # the demo stream: name, key, streamer's and friend's passwords
    ingest: ClusterProcess | None = None
    test_card: ClusterProcess | None = None
    nodes: list[ClusterProcess] = field(default_factory=list)
    node_dirs: list[Path] = field(default_factory=list)
    rtmp_url: str | None = None
    origin_url: str | None = None

    @property
    def database_url(self) -> str:
        return self.env["STREAMR_DATABASE_URL"]

    @property
    def redis_url(self) -> str:
        return self.env["STREAMR_REDIS_URL"]

    def settings(self, **overrides: Any) -> Settings:
        """The replicas' settings, for code that opens an ``AppContext`` of its own."""
        values = {k.removeprefix("STREAMR_").lower(): v for k, v in self.env.items()}
        values["data_dir"] = self.workdir / "admin"
        return Settings(**(values | overrides))

    def streamr(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """``streamr ARGS`` against the cluster's database (e.g. ``admin create``)."""
        env = self.env | {"STREAMR_DATA_DIR": str(self.workdir / "admin")}
        return subprocess.run(
            [*STREAMR, *args], env=_base_env() | env, input=input, capture_output=True, text=True
        )

    def processes(self) -> list[_Server]:
        """Every process, in the order they stop."""
        ordered: list[_Server | None] = [*self.nodes, self.test_card, self.ingest]
        ordered += [*self.workers, self.lb, *self.replicas, self.redis, self.postgres]
        return [p for p in ordered if p is not None]


def shared_secrets() -> dict[str, str]:
    """What every replica must hold alike, as STREAMR_* settings: the access-token and the
    attestation keys (PEM), the network-hash key, the ingest's secret (new ones each call)."""

    def pem() -> str:
        key = Ed25519PrivateKey.generate()
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    return {
        "STREAMR_JWT_PRIVATE_KEY": pem(),
        "STREAMR_ATTESTATION_PRIVATE_KEY": pem(),
        "STREAMR_NETWORK_HASH_KEY": secrets.token_urlsafe(32),
        "STREAMR_INGEST_SECRET": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }


def _base_env() -> dict[str, str]:
    # Nothing inherited may override what the cluster sets up.
    return {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}


def _in_thread(coroutine: Any) -> Any:
    """Run a coroutine to completion even when the caller is inside an event loop."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(coroutine))
        except BaseException as exc:  # re-raised in the caller
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


@contextmanager
def start_cluster(
    workdir: Path,
    replicas: int = 2,
    workers: int = 2,
    nodes: int = 3,
    port: int = 0,
    test_card: bool = False,
    ingest: bool = True,
    settings: Mapping[str, object] | None = None,
    node_settings: Mapping[str, object] | None = None,
) -> Iterator[Cluster]:
    """Start the whole production-shaped cluster in ``workdir``; stop all of it on exit.

    - ``replicas`` coordinator replicas and ``workers`` workers (0 workers: no background jobs
      at all), nginx on 127.0.0.1:``port`` (0: a free port) in front of the replicas;
    - ``ingest``: the ingest, its hooks and segment reports going through the load balancer;
      ``test_card``: an ffmpeg test card publishing the demo stream (``cluster.stream``);
    - ``nodes`` friend nodes (0-100) joined to the demo stream with the load balancer as their
      coordinator (``nodes > 0`` needs ``ingest``);
    - ``settings``: more STREAMR_* settings (names without the prefix, e.g.
      ``{"heartbeat_interval_s": 2}``) for replicas and workers; ``node_settings`` likewise
      STREAMR_NODE_* settings for the nodes.

    Every process is a ``ClusterProcess`` (``cluster.replicas[0].kill()``, ``.start()``); the
    servers are ``cluster.postgres``, ``cluster.redis`` and ``cluster.lb`` (same interface).
    Logs are under ``workdir / "logs"``. Returns while everything is up: the replicas answer
    through the load balancer, the ingest listens, the nodes have started.
    """
    if nodes and not ingest:
        raise ValueError("friend nodes need the ingest (nothing to relay without an origin)")
    workdir = workdir.resolve()
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        # Its files in a temporary directory of its own: the postgres user may not be able to
        # enter ``workdir``.
        postgres = PostgresServer()
        stack.callback(postgres.remove)
        postgres.log_path = logs / "postgres.log"
        postgres.init()
        postgres.start()
        stack.callback(postgres.stop)
        database_url = postgres.create_database(DATABASE)

        redis = RedisServer(workdir / "redis")
        redis.log_path = logs / "redis.log"
        redis.start()
        stack.callback(redis.stop)

        lb_port = port or free_port()
        base = f"http://127.0.0.1:{lb_port}"
        rtmp_port, origin_port, hook_port = free_port(), free_port(), free_port()
        rtmp_url = f"rtmp://127.0.0.1:{rtmp_port}/live"
        origin_url = f"http://127.0.0.1:{origin_port}"
        env = {
            "STREAMR_DATABASE_URL": database_url,
            "STREAMR_REDIS_URL": redis.url,
            "STREAMR_AUTO_MIGRATE": "false",
            "STREAMR_RUN_BACKGROUND_JOBS": "false",
            "STREAMR_PUBLIC_URL": base,
            "STREAMR_ORIGIN_URL": origin_url,
            "STREAMR_INGEST_RTMP_URL": rtmp_url,
            # Everything is on loopback: nodes' URLs are too, and probes must reach them.
            "STREAMR_ALLOW_PRIVATE_NODE_URLS": "true",
            # With Redis, deregistrations reach every replica within a second (nodes/auth.py),
            # so a replica may trust its token lookups for the longest time allowed: behind the
            # load balancer a node's beats alternate between replicas, and at 10 s most of them
            # missed; at a minute, the lookups of a restart's (or a run's) first beats all
            # expired again together.
            "STREAMR_NODE_TOKEN_CACHE_TTL_S": "300",
            **shared_secrets(),
        }
        env |= {f"STREAMR_{k.upper()}": str(v) for k, v in (settings or {}).items()}
        cluster_settings = Settings(
            **{k.removeprefix("STREAMR_").lower(): v for k, v in env.items()},
            data_dir=workdir / "admin",
        )

        migrate = subprocess.run(
            [*STREAMR, "db", "upgrade"],
            env=_base_env() | env | {"STREAMR_DATA_DIR": str(workdir / "admin")},
            capture_output=True,
            text=True,
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"streamr db upgrade failed: {migrate.stderr}")
        node_dirs = [workdir / "nodes" / f"node-{n}" for n in range(1, nodes + 1)]
        stream = _in_thread(prepare_demo_stream(cluster_settings, node_dirs, base))

        replica_processes = []
        for number in range(1, replicas + 1):
            replica_port = free_port()
            replica = ClusterProcess(
                f"replica-{number}",
                [
                    *STREAMR,
                    "coordinator",
                    "--behind-proxy",
                    *("--host", "127.0.0.1", "--port", str(replica_port)),
                ],
                _base_env()
                | env
                | {
                    "STREAMR_DATA_DIR": str(workdir / f"replica-{number}"),
                    # Only the load balancer's address may speak for clients.
                    "STREAMR_TRUSTED_PROXIES": "127.0.0.1",
                },
                logs / f"replica-{number}.log",
                port=replica_port,
            )
            replica.start()
            stack.callback(replica.stop)
            replica_processes.append(replica)

        lb_dir = workdir / "lb"
        lb = NginxServer(
            lb_dir,
            render(f"127.0.0.1:{lb_port}", [f"127.0.0.1:{r.port}" for r in replica_processes]),
            lb_port,
        )
        lb.log_path = logs / "nginx.log"
        lb.start()
        stack.callback(lb.stop)

        worker_processes = []
        for number in range(1, workers + 1):
            worker = ClusterProcess(
                f"worker-{number}",
                [*STREAMR, "worker"],
                _base_env() | env | {"STREAMR_DATA_DIR": str(workdir / f"worker-{number}")},
                logs / f"worker-{number}.log",
            )
            worker.start()
            stack.callback(worker.stop)
            worker_processes.append(worker)

        cluster = Cluster(
            workdir=workdir,
            url=base,
            env=env,
            postgres=postgres,
            redis=redis,
            lb=lb,
            replicas=replica_processes,
            workers=worker_processes,
            stream=stream,
            node_dirs=node_dirs,
        )
        if ingest:
            ingest_env = _base_env() | {
                "STREAMR_INGEST_COORDINATOR_URL": base,
                "STREAMR_INGEST_SECRET": env["STREAMR_INGEST_SECRET"],
                "STREAMR_INGEST_DATA_DIR": str(workdir / "ingest"),
                "STREAMR_INGEST_RTMP_PORT": str(rtmp_port),
                "STREAMR_INGEST_HTTP_PORT": str(origin_port),
                "STREAMR_INGEST_HOOK_PORT": str(hook_port),
            }
            cluster.ingest = ClusterProcess(
                "ingest", ingest_command(), ingest_env, logs / "ingest.log", port=rtmp_port
            )
            cluster.ingest.start()
            stack.callback(cluster.ingest.stop)
            cluster.rtmp_url, cluster.origin_url = rtmp_url, origin_url
            if test_card:
                cluster.test_card = ClusterProcess(
                    "test-card",
                    test_card_command(stream.name, rtmp_url),
                    ingest_env,
                    logs / "test-card.log",
                    stdin_text=stream.key + "\n",
                )
                cluster.test_card.start()
                stack.callback(cluster.test_card.stop)
        extra_node_env = {
            f"STREAMR_NODE_{k.upper()}": str(v) for k, v in (node_settings or {}).items()
        }
        for node_dir in node_dirs:
            node = ClusterProcess(
                node_dir.name,
                node_command(node_dir, free_port()),
                node_env(_base_env()) | extra_node_env,
                logs / f"{node_dir.name}.log",
            )
            node.port = int(node.argv[-1])
            node.start()
            stack.callback(node.stop)
            cluster.nodes.append(node)
        yield cluster
