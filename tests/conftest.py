"""Fixtures for end-to-end tests: real coordinator and ingest processes."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.ingest import IngestProcess, run_ingest
from tests.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
STREAMR = str(ROOT / ".venv/bin/streamr")


@pytest.fixture
def start_coordinator(tmp_path) -> Iterator[Callable[..., tuple[str, dict[str, str]]]]:
    """Start `streamr coordinator` as a real process; returns (base URL, its environment).

    Keyword arguments become STREAMR_* settings. Every process is stopped after the test.
    """
    processes: list[tuple[subprocess.Popen, object]] = []

    def start(**settings: str) -> tuple[str, dict[str, str]]:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}
        env |= {"STREAMR_DATA_DIR": str(tmp_path / "data"), "STREAMR_PORT": str(port)}
        env |= {f"STREAMR_{key.upper()}": value for key, value in settings.items()}
        if "STREAMR_DATABASE_URL" in env:
            migrate = subprocess.run([STREAMR, "db", "upgrade"], env=env, capture_output=True)
            assert migrate.returncode == 0, migrate.stderr
        log = (tmp_path / f"coordinator-{port}.log").open("w")
        process = subprocess.Popen([STREAMR, "coordinator"], env=env, stdout=log, stderr=log)
        processes.append((process, log))
        wait_for_port(port, process=process)
        return f"http://127.0.0.1:{port}", env

    yield start
    for process, log in processes:
        process.terminate()
        process.wait(timeout=20)
        log.close()  # type: ignore[attr-defined]


@pytest.fixture
def start_ingest(tmp_path) -> Iterator[Callable[..., IngestProcess]]:
    """Start `streamr-ingest` (nginx-rtmp, origin watcher, reconciler) as a real process.

    ``start(coordinator_url, secret=None, data_dir=None, **settings)``: free loopback ports,
    keyword arguments become STREAMR_INGEST_* settings. Without ``secret`` the ingest shares
    ``<data_dir>/ingest-secret`` with a coordinator started on the same data directory (the
    default, ``tmp_path / "data"``, is what ``start_coordinator`` uses). Every ingest is stopped
    after the test.
    """
    with ExitStack() as stack:

        def start(
            coordinator_url: str,
            secret: str | None = None,
            data_dir: Path | None = None,
            **settings: object,
        ) -> IngestProcess:
            return stack.enter_context(
                run_ingest(coordinator_url, secret, data_dir or tmp_path / "data", **settings)
            )

        yield start
