"""Real servers for tests, started on loopback in temporary directories and stopped afterwards.

PostgreSQL and Redis come from Debian's packages (scripts/bootstrap.sh installs them). Nothing
here touches the system's own services or configuration. ``run_postgres`` and ``run_redis`` are
plain context managers so that the benchmarks (bench/) start the same servers; the fixtures below
wrap them.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(
    port: int, timeout_s: float = 30.0, process: subprocess.Popen | None = None
) -> None:
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


def _postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), reverse=True)
    return Path(found[0]).parent if found else None


@dataclass
class PostgresServer:
    port: int
    user: str

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; its SQLAlchemy URL is returned."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                "postgres",
                "-qc",
                f'CREATE DATABASE "{name}"',
            ],
            check=True,
            capture_output=True,
        )
        return self.url(name)


class ServerMissing(RuntimeError):
    """A server binary is not installed."""


@contextmanager
def run_postgres(
    wrap: Sequence[str] = (), settings: Mapping[str, str] | None = None
) -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (fsync off), removed on exit.

    ``wrap`` prefixes the server's command line, e.g. ``["taskset", "-c", "1"]``; ``settings``
    are extra server settings (``-c name=value``).
    """
    bindir = _postgres_bindir()
    if bindir is None:
        raise ServerMissing("PostgreSQL server binaries are missing; run scripts/bootstrap.sh")
    workdir = Path(tempfile.mkdtemp(prefix="streamr-pg-"))
    datadir, sockdir = workdir / "data", workdir / "sock"
    sockdir.mkdir()
    # PostgreSQL refuses to run as root; as root, run it as Debian's 'postgres' user.
    run_as: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (workdir, sockdir):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    user = "streamr"
    subprocess.run(
        [
            *run_as,
            str(bindir / "initdb"),
            "-D",
            str(datadir),
            "-U",
            user,
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    process = subprocess.Popen(
        [
            *wrap,
            *run_as,
            str(bindir / "postgres"),
            "-D",
            str(datadir),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "-k",
            str(sockdir),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
            *(arg for name, value in (settings or {}).items() for arg in ("-c", f"{name}={value}")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=process)
        server = PostgresServer(port=port, user=user)
        for _ in range(100):  # listening is not yet accepting connections
            ready = subprocess.run(
                ["pg_isready", "-h", "127.0.0.1", "-p", str(port)], capture_output=True
            )
            if ready.returncode == 0:
                break
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def run_redis(wrap: Sequence[str] = ()) -> Iterator[str]:
    """A throwaway redis-server on 127.0.0.1 without persistence; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerMissing("redis-server is missing; run scripts/bootstrap.sh")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="streamr-redis-")
    process = subprocess.Popen(
        [
            *wrap,
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=20)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        with run_postgres() as server:
            yield server
    except ServerMissing as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    try:
        with run_redis() as url:
            yield url
    except ServerMissing as exc:
        pytest.fail(str(exc))
