"""A live test stream relayed by real friend nodes, for the benchmarks that need one.

A real ``streamr coordinator`` and ``streamr-ingest`` (tests/stack.py's ``run_stack``), the test
card encoded once and published in real time with ``ffmpeg -re -c copy`` (like OBS, so the
publisher takes almost no CPU), and ``streamr-node`` processes joined with an invite
(tests/nodes.py). With the coordinator's ``origin_fanout=1`` the first node pulls from the
origin and the second from the first: two tiers.

Used by bench/propagation/run.py and bench/node_memory/run.py.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from streamr_ingest.testcard import ffmpeg_command

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.nodes import NodeProcess, invite, run_node  # noqa: E402
from tests.stack import Stack, run_stack  # noqa: E402


class BenchError(Exception):
    """Something the benchmark needs did not work (not a slow result)."""


@dataclass
class Relay:
    stack: Stack
    stream: str
    public_key: Ed25519PublicKey
    invite_code: str
    publisher: subprocess.Popen
    nodes: list[NodeProcess] = field(default_factory=list)

    @property
    def db_path(self) -> Path:
        """The coordinator's SQLite database (the embedded default)."""
        return self.stack.data_dir / "coordinator.sqlite3"


def encode_card(path: Path, seconds: float, size: str, fps: int) -> None:
    """The test card (testcard.py's exact encoder settings) as an FLV file, encoded as fast as
    possible instead of in real time."""
    command = [part for part in ffmpeg_command(str(path), seconds, size, fps) if part != "-re"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise BenchError(f"encoding the test card failed: {result.stderr.strip()[-500:]}")


def publish(card: Path, rtmp_url: str, key: str, *, loop: bool = False) -> subprocess.Popen:
    """Sends the encoded card in real time, like OBS; with ``loop``, over and over (ffmpeg
    carries the timestamps on, so the stream is one long broadcast). The key is in ffmpeg's
    argv (visible in ps); this is a throwaway stream on loopback."""
    command = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re"]
    command += [*(["-stream_loop", "-1"] if loop else []), "-i", str(card)]
    command += ["-c", "copy", "-f", "flv", f"{rtmp_url}/{key}"]
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def wait_until(check, what: str, timeout_s: float, every_s: float = 0.2):
    """Call ``check`` until it returns something true; a deadline, never a measurement."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
        except (httpx.HTTPError, KeyError, ValueError, TypeError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise BenchError(f"not within {timeout_s:g} s: {what}")
        time.sleep(every_s)


def stop_publisher(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # ffmpeg ends the FLV stream cleanly
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def live_relay(
    workdir: Path,
    card: Path,
    *,
    tiers: int,
    coordinator_settings: dict[str, object] | None = None,
    node_settings: dict[str, object] | None = None,
    loop: bool = False,
) -> Iterator[Relay]:
    """The card published live to a fresh stream (over and over with ``loop``) and ``tiers``
    nodes in a chain (origin -> first -> second ...), each serving segments before the next
    one starts."""
    settings = {"origin_fanout": 1, **(coordinator_settings or {})}
    with contextlib.ExitStack() as exit_stack:
        stack = exit_stack.enter_context(run_stack(workdir, **settings))
        stream = "bench-relay"
        key = stack.api.create_stream(stream)
        publisher = publish(card, stack.ingest.rtmp_url, key, loop=loop)
        exit_stack.callback(stop_publisher, publisher)
        try:
            stack.wait_status(stream, "LIVE", timeout_s=60)
            stack.wait_listed(stream, 2, timeout_s=60)
        except AssertionError as exc:
            error = publisher.stderr.read().decode(errors="replace") if publisher.poll() else ""
            raise BenchError(f"the stream did not go live: {exc} {error[-300:]}") from None
        code = invite(stack.api.http, stack.api.auth, stream, uses=max(tiers, 1) + 5)
        relay = Relay(stack, stream, stack.api.public_key, code, publisher)
        for number in range(tiers):
            name = ["first", "second", "third", "fourth"][number] if number < 4 else f"n{number}"
            try:
                node = exit_stack.enter_context(
                    run_node(stack.coordinator.url, code, workdir, name, **(node_settings or {}))
                )
            except (AssertionError, RuntimeError, TimeoutError) as exc:
                raise BenchError(f"the {name} node did not start: {exc}") from None
            parent = relay.nodes[-1] if relay.nodes else None
            if parent is None:
                wait_until(
                    lambda n=node: n.stats()["upstream"]["kind"] == "origin",
                    f"the {name} node pulls from the origin",
                    60,
                )
            else:
                wait_until(
                    lambda n=node, p=parent: n.stats()["upstream"]["node_id"] == p.node_id,
                    f"the {name} node is assigned {parent.name} as its parent",
                    60,
                )
            wait_until(
                lambda n=node: n.stats()["window"]["segments"] >= 2,
                f"the {name} node serves segments",
                60,
            )
            relay.nodes.append(node)
        yield relay
