"""Friend nodes as the end-to-end tests run them: ``streamr-node join`` then ``streamr-node run``,
real processes on loopback, each with its own data directory (settings, unsent reports)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
STREAMR_NODE = str(ROOT / ".venv/bin/streamr-node")
PYTHON = str(ROOT / ".venv/bin/python")
PASSWORD = "friend's long passphrase"


def invite(api_http: httpx.Client, auth: dict[str, str], stream: str, uses: int = 10) -> str:
    created = api_http.post(
        f"/api/v1/streams/{stream}/invites", json={"max_uses": uses}, headers=auth
    )
    assert created.status_code == 201, created.text
    return str(created.json()["code"])


@dataclass
class NodeProcess:
    name: str
    data_dir: Path
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None
    # ``python -m tests.cheating_node STRATEGY`` runs a dishonest node instead of streamr-node.
    cheat: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def node_id(self) -> str:
        return self.settings()["node_id"]

    @property
    def token(self) -> str:
        return self.settings()["node_token"]

    def settings(self) -> dict[str, Any]:
        import tomllib

        return tomllib.loads((self.data_dir / "config.toml").read_text())

    def start(self) -> None:
        with self.log_path.open("a") as log:
            program = [STREAMR_NODE]
            if self.cheat is not None:
                program = [PYTHON, "-m", "tests.cheating_node", self.cheat]
            self.process = subprocess.Popen(
                [*program, "run", "--log-format", "json"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=log,
            )
        wait_for_port(self.port, timeout_s=30, process=self.process)

    def stop(self, timeout_s: float = 20) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> None:
        """``kill -9``: no shutdown, no last report."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/stats", timeout=5).json()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self, event: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # the settings printed at start span several lines
            if isinstance(record, dict) and record.get("event") == event:
                found.append(record)
        return found


def join(
    coordinator_url: str, code: str, workdir: Path, name: str, **settings: object
) -> NodeProcess:
    """``streamr-node join`` with a fresh friend account; the node is not started."""
    data_dir = workdir / f"node-{name}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}
    env |= {
        "STREAMR_NODE_DATA_DIR": str(data_dir),
        "STREAMR_NODE_PASSWORD": PASSWORD,
        "STREAMR_NODE_HOST": "127.0.0.1",
        "STREAMR_NODE_PORT": str(port),
    }
    env |= {f"STREAMR_NODE_{k.upper()}": str(v) for k, v in settings.items()}
    joined = subprocess.run(
        [
            STREAMR_NODE,
            "join",
            coordinator_url,
            "--invite",
            code,
            "--name",
            name,
            "--email",
            f"{name}-{uuid.uuid4().hex[:6]}@example.com",
            "--create-account",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert joined.returncode == 0, joined.stderr
    return NodeProcess(name, data_dir, port, env, workdir / f"node-{name}.log")


@contextmanager
def run_node(
    coordinator_url: str,
    code: str,
    workdir: Path,
    name: str,
    cheat: str | None = None,
    **settings: object,
) -> Iterator[NodeProcess]:
    node = join(coordinator_url, code, workdir, name, **settings)
    node.cheat = cheat
    node.start()
    try:
        yield node
    finally:
        if node.process is not None and node.process.poll() is None:
            try:
                node.stop()
            except subprocess.TimeoutExpired:
                node.kill()


def wait_until(check, what: str, timeout_s: float = 30.0, every_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
        except (httpx.HTTPError, KeyError, ValueError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(every_s)
