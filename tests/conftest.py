"""Fixtures for end-to-end tests: real coordinator and ingest processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.coordinator import run_coordinator
from tests.ingest import IngestProcess, run_ingest
from tests.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
STREAMR = str(ROOT / ".venv/bin/streamr")


@pytest.fixture
def start_coordinator(tmp_path) -> Iterator[Callable[..., tuple[str, dict[str, str]]]]:
    """Start `streamr coordinator` as a real process; returns (base URL, its environment).

    Keyword arguments become STREAMR_* settings. Every process is stopped after the test.
    (``tests.coordinator.run_coordinator`` does the work; it also lets a test stop and restart
    a coordinator.)
    """
    with ExitStack() as stack:

        def start(**settings: str) -> tuple[str, dict[str, str]]:
            coordinator = stack.enter_context(
                run_coordinator(tmp_path / "data", log_dir=tmp_path, **settings)
            )
            return coordinator.url, coordinator.env

        yield start


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


@dataclass
class Demo:
    coordinator: str
    rtmp: str
    origin: str
    env: dict[str, str]
    log: Path


@pytest.fixture
def start_demo(tmp_path) -> Iterator[Callable[..., Demo]]:
    """Start `streamr demo` (the README's run command) on free ports; stopped with Ctrl-C after
    the test, which must leave no process of it behind."""
    started: list[tuple[subprocess.Popen, Demo]] = []

    def start(*args: str) -> Demo:
        api, rtmp, origin, hooks = free_port(), free_port(), free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}
        env |= {
            "STREAMR_DATA_DIR": str(tmp_path / "data"),
            "STREAMR_INGEST_RTMP_PORT": str(rtmp),
            "STREAMR_INGEST_HTTP_PORT": str(origin),
            "STREAMR_INGEST_HOOK_PORT": str(hooks),
            "STREAMR_INGEST_RTMP_URL": f"rtmp://127.0.0.1:{rtmp}/live",
        }
        demo = Demo(
            coordinator=f"http://127.0.0.1:{api}",
            rtmp=f"rtmp://127.0.0.1:{rtmp}/live",
            origin=f"http://127.0.0.1:{origin}",
            env=env,
            log=tmp_path / f"demo-{api}.log",
        )
        with demo.log.open("w") as log:
            process = subprocess.Popen(
                [STREAMR, "demo", "--port", str(api), "--node-port", "0", *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append((process, demo))
        wait_for_port(api, timeout_s=60, process=process)
        wait_for_port(origin, timeout_s=60, process=process)
        return demo

    yield start
    for process, _ in started:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    # nginx stops when the ingest does (it is told to on its parent's death); give it a moment.
    deadline = time.monotonic() + 10
    while True:
        leftovers = subprocess.run(["pgrep", "-af", str(tmp_path)], capture_output=True, text=True)
        if leftovers.stdout == "" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert leftovers.stdout == "", f"processes outlived the demo: {leftovers.stdout}"
