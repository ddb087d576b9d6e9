"""The coordinator as a real process for tests and benchmarks: started, stopped and started again.

``run_coordinator`` starts ``streamr coordinator`` on a free loopback port and stops it
afterwards. Unlike the ``start_coordinator`` fixture it hands back the process itself, so a test
can stop the coordinator mid-stream and start it again on the same port and data directory
(what a restart looks like to an ingest that keeps its coordinator URL).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
STREAMR = str(ROOT / ".venv/bin/streamr")


@dataclass
class CoordinatorProcess:
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return Path(self.env["STREAMR_DATA_DIR"])

    def start(self, timeout_s: float = 30.0) -> None:
        """Start (or start again: same port, same data directory, the log appended to)."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("the coordinator is already running")
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [STREAMR, "coordinator"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for_port(self.port, timeout_s=timeout_s, process=self.process)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM and wait (a clean shutdown); the exit status, or None if it was not running."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def run_coordinator(
    data_dir: Path, log_dir: Path | None = None, **settings: str
) -> Iterator[CoordinatorProcess]:
    """``streamr coordinator`` on a free loopback port; keyword arguments become STREAMR_*.

    Its log (stdout and stderr) goes to ``<log_dir>/coordinator-<port>.log`` (``log_dir``
    defaults to ``data_dir``'s parent).
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}
    env |= {"STREAMR_DATA_DIR": str(data_dir), "STREAMR_PORT": str(port)}
    env |= {f"STREAMR_{key.upper()}": str(value) for key, value in settings.items()}
    if "STREAMR_DATABASE_URL" in env:
        migrate = subprocess.run([STREAMR, "db", "upgrade"], env=env, capture_output=True)
        if migrate.returncode != 0:
            raise RuntimeError(f"streamr db upgrade failed: {migrate.stderr.decode()}")
    log_path = (log_dir or data_dir.parent) / f"coordinator-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.touch()
    coordinator = CoordinatorProcess(port=port, env=env, log_path=log_path)
    try:
        coordinator.start()
        yield coordinator
    finally:
        coordinator.stop()
