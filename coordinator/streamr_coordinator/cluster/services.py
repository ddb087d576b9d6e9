"""Real servers on loopback for the production-shaped cluster, the tests and the benchmarks.

PostgreSQL, Redis and nginx come from Debian's packages (scripts/bootstrap.sh installs them) and
run in a work directory of their own; nothing here touches the system's services or their
configuration. Each launcher is a context manager around an object with ``start``, ``stop``,
``restart`` and ``kill``, a URL and a log path, so that fault tests can take a server away in
the middle of a run and bring it back on the same port with the same data.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path


class ServerMissing(RuntimeError):
    """A server binary is not installed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(
    port: int, timeout_s: float = 30.0, process: subprocess.Popen | None = None
) -> None:
    """Until something accepts connections on 127.0.0.1:``port`` (a deadline, not a timing)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout_s} s")


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """A ``preexec_fn``: the child gets SIGTERM when the thread that started it dies, however
    it dies, so that a killed test or ``streamr cluster`` leaves no server holding its port."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _Server:
    """A server process on a fixed port: started, stopped, killed and started again.

    Each runs in a process group of its own: Ctrl-C in a terminal reaches only the parent, which
    stops the servers in order, and ``kill`` takes the server's children with it.
    """

    name: str = "server"
    port: int | None
    log_path: Path
    process: subprocess.Popen | None = None
    env: dict[str, str] | None = None
    stdin_text: str | None = None
    stop_signal: int = signal.SIGTERM
    signal_group = False  # send stop_signal to the whole group (a server behind runuser)

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _wait_ready(self) -> None:
        assert self.process is not None
        if self.port:
            wait_for_port(self.port, process=self.process)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{type(self).__name__} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._command(),
                env=self.env,
                stdin=subprocess.DEVNULL if self.stdin_text is None else subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        if self.stdin_text is not None:
            assert self.process.stdin is not None
            # stdin keeps secrets (a stream key) out of process listings.
            self.process.stdin.write(self.stdin_text.encode())
            self.process.stdin.close()
        self._wait_ready()

    def stop(self, timeout_s: float = 20.0) -> None:
        """A clean shutdown (SIGTERM; PostgreSQL's fast one) and wait; SIGKILL if it does not
        end in time."""
        if self.process is None or self.process.poll() is not None:
            return
        if self.signal_group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, self.stop_signal)
        else:
            self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, children included (no clean shutdown)."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{self.name} {state} port={self.port}>"


# ---------------------------------------------------------------- PostgreSQL


def _postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), reverse=True)
    return Path(found[0]).parent if found else None


class PostgresServer(_Server):
    """A PostgreSQL cluster (fsync off: throwaway data) on 127.0.0.1, user ``streamr``.

    Its files are in ``workdir``, by default a new temporary directory (``remove`` deletes it):
    run as root, the server runs as Debian's ``postgres`` user, who must be able to reach it.
    """

    name = "postgres"
    user = "streamr"
    # SIGINT is PostgreSQL's fast shutdown (SIGTERM would wait for every client to leave); the
    # group, because runuser stands between us and the postmaster when run as root.
    stop_signal = signal.SIGINT
    signal_group = True

    def __init__(
        self,
        workdir: Path | None = None,
        port: int | None = None,
        wrap: Sequence[str] = (),
        settings: Mapping[str, str] | None = None,
    ) -> None:
        bindir = _postgres_bindir()
        if bindir is None:
            raise ServerMissing("PostgreSQL server binaries are missing; run scripts/bootstrap.sh")
        self.bindir = bindir
        self.temporary = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="streamr-pg-")) if workdir is None else workdir
        self.port = port or free_port()
        self.wrap = list(wrap)
        self.settings = dict(settings or {})
        self.datadir, self.sockdir = self.workdir / "data", self.workdir / "sock"
        self.log_path = self.workdir / "postgres.log"
        # PostgreSQL refuses to run as root; as root, run it as Debian's 'postgres' user.
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            self.run_as = ["runuser", "-u", "postgres", "--"]

    def init(self) -> None:
        """initdb into the work directory (once, before the first start)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sockdir.mkdir(exist_ok=True)
        if self.run_as:
            owner = pwd.getpwnam("postgres")
            for path in (self.workdir, self.sockdir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        done = subprocess.run(
            [
                *self.run_as,
                str(self.bindir / "initdb"),
                *("-D", str(self.datadir), "-U", self.user, "-A", "trust"),
                *("--no-sync", "-E", "UTF8"),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed in {self.datadir}: {done.stderr.strip()}")

    def remove(self) -> None:
        """Delete the files of a server that made its own temporary directory."""
        if self.temporary:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _command(self) -> list[str]:
        settings = {
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            **self.settings,
        }
        return [
            *self.wrap,
            *self.run_as,
            str(self.bindir / "postgres"),
            *("-D", str(self.datadir), "-p", str(self.port), "-h", "127.0.0.1"),
            *("-k", str(self.sockdir)),
            *(arg for name, value in settings.items() for arg in ("-c", f"{name}={value}")),
        ]

    def _wait_ready(self) -> None:
        super()._wait_ready()
        for _ in range(100):  # listening is not yet accepting connections
            ready = subprocess.run(
                ["pg_isready", "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database (a random name unless given); its SQLAlchemy URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        subprocess.run(
            [
                "psql",
                *("-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", "postgres"),
                *("-qc", f'CREATE DATABASE "{name}"'),
            ],
            check=True,
            capture_output=True,
        )
        return self.url(name)


@contextmanager
def run_postgres(
    wrap: Sequence[str] = (),
    settings: Mapping[str, str] | None = None,
    workdir: Path | None = None,
) -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster on 127.0.0.1, stopped (and its temporary directory removed)
    on exit.

    ``wrap`` prefixes the server's command line, e.g. ``["taskset", "-c", "1"]``; ``settings``
    are extra server settings (``-c name=value``); ``workdir`` keeps the files there instead of
    in a temporary directory that is removed afterwards.
    """
    server = PostgresServer(workdir, wrap=wrap, settings=settings)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        server.remove()


# ---------------------------------------------------------------- Redis


class RedisServer(_Server):
    """redis-server on 127.0.0.1 without persistence: a restart loses everything in it, which
    is what the coordinator must survive (presence and counters rebuild from heartbeats)."""

    name = "redis"

    def __init__(self, workdir: Path, port: int | None = None, wrap: Sequence[str] = ()) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerMissing("redis-server is missing; run scripts/bootstrap.sh")
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.wrap = list(wrap)
        self.log_path = workdir / "redis.log"
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            *self.wrap,
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
        ]


@contextmanager
def run_redis(wrap: Sequence[str] = (), workdir: Path | None = None) -> Iterator[RedisServer]:
    """A throwaway redis-server on 127.0.0.1; ``.url`` is its URL."""
    temporary = workdir is None
    where = Path(tempfile.mkdtemp(prefix="streamr-redis-")) if workdir is None else workdir
    server = RedisServer(where, wrap=wrap)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if temporary:
            shutil.rmtree(where, ignore_errors=True)


# ---------------------------------------------------------------- nginx


NGINX = Path("/usr/sbin/nginx")


class NginxServer(_Server):
    """nginx in the foreground with a rendered configuration, its prefix in the work directory.

    ``reload`` re-reads the configuration (new upstreams) without dropping connections.
    """

    name = "nginx"

    def __init__(self, workdir: Path, config: str, port: int) -> None:
        if not os.access(NGINX, os.X_OK):
            raise ServerMissing("nginx is missing at /usr/sbin/nginx; run scripts/bootstrap.sh")
        self.workdir = workdir
        self.port = port
        self.log_path = workdir / "nginx.log"
        self.conf_path = workdir / "nginx.conf"
        for sub in ("logs", "tmp"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        self.write_config(config)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self, config: str) -> None:
        self.conf_path.write_text(config)
        result = subprocess.run(self._base("-t", "-q"), capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"nginx rejects {self.conf_path}: {result.stderr.strip()}")

    def _base(self, *extra: str) -> list[str]:
        return [str(NGINX), *extra, "-p", f"{self.workdir}/", "-c", str(self.conf_path)]

    def _command(self) -> list[str]:
        return [*self._base("-e", "stderr"), "-g", "daemon off;"]

    def reload(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGHUP)
