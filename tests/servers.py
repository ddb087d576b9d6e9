"""Real servers for tests, started on loopback in temporary directories and stopped afterwards.

PostgreSQL and Redis come from Debian's packages (scripts/bootstrap.sh installs them); the
launchers live in the coordinator (``streamr_coordinator.cluster.services``) so that the
production-shaped cluster (``streamr cluster``), the tests and the benchmarks start the same
servers the same way. The fixtures below wrap them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest

from streamr_coordinator.cluster.services import (
    PostgresServer,
    ServerMissing,
    free_port,
    run_postgres,
    wait_for_port,
)
from streamr_coordinator.cluster.services import run_redis as _run_redis

__all__ = [
    "PostgresServer",
    "ServerMissing",
    "free_port",
    "run_postgres",
    "run_redis",
    "wait_for_port",
]


@contextmanager
def run_redis(wrap: Sequence[str] = ()) -> Iterator[str]:
    """A throwaway redis-server on 127.0.0.1 without persistence; yields its URL."""
    with _run_redis(wrap=wrap) as server:
        yield server.url


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
