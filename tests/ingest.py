"""The ingest as a real process for tests, and a fake coordinator that is a real HTTP server.

``run_ingest`` starts ``streamr-ingest`` (Debian's nginx with the RTMP module, the origin
watcher and the reconciler) on free loopback ports in a temporary work directory and stops it
afterwards. ``FakeCoordinator`` answers the ingest's routes the way the coordinator's contract
says and records everything it receives, for tests that look at the ingest alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from tests.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
STREAMR_INGEST = str(ROOT / ".venv/bin/streamr-ingest")
STREAMR = str(ROOT / ".venv/bin/streamr")

# What the ingest's own tests use with the fake coordinator.
SECRET = "test-ingest-secret-" + "x" * 24
KEY = "sk_test_key_0123456789abcdefghijklmnopqrstuv"
STREAM = "ann-live"


@dataclass
class IngestProcess:
    process: subprocess.Popen
    work_dir: Path
    log_path: Path
    rtmp_port: int
    http_port: int
    hook_port: int

    @property
    def rtmp_url(self) -> str:
        """The OBS 'Server' of this ingest."""
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live"

    @property
    def origin_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def stat_url(self) -> str:
        return f"http://127.0.0.1:{self.hook_port}/stat"

    @property
    def hls_dir(self) -> Path:
        return self.work_dir / "hls"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)


@contextmanager
def run_ingest(
    coordinator_url: str,
    secret: str | None,
    data_dir: Path,
    **settings: Any,
) -> Iterator[IngestProcess]:
    """``streamr-ingest`` on free loopback ports; keyword arguments become STREAMR_INGEST_*.

    Without ``secret`` the ingest uses ``<data_dir>/ingest-secret``, as the coordinator does.
    """
    ports = {
        name: int(settings.pop(name, None) or free_port())
        for name in ("rtmp_port", "http_port", "hook_port")
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}
    values: dict[str, Any] = {"coordinator_url": coordinator_url, "data_dir": data_dir, **ports}
    if secret is not None:
        values["secret"] = secret
    values |= settings
    env |= {f"STREAMR_INGEST_{key.upper()}": str(value) for key, value in values.items()}
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"ingest-{ports['rtmp_port']}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([STREAMR_INGEST], env=env, stdout=log, stderr=log)
    ingest = IngestProcess(
        process=process,
        work_dir=Path(values.get("work_dir") or data_dir / "ingest").resolve(),
        log_path=log_path,
        **ports,
    )
    try:
        for port in ports.values():
            wait_for_port(port, process=process)
        deadline = time.monotonic() + 30
        while '"event": "ingest running"' not in ingest.log():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the ingest did not start:\n{ingest.log()}")
            time.sleep(0.02)
        yield ingest
    finally:
        try:
            ingest.stop()
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def push_test_card(
    rtmp_url: str, key: str, seconds: float, size: str = "320x180", fps: int = 30
) -> subprocess.Popen:
    """``streamr-ingest push-test`` in the background, the key passed on stdin (not in argv)."""
    process = subprocess.Popen(
        [
            STREAMR_INGEST,
            "push-test",
            "test",
            "--key",
            "-",
            "--rtmp",
            rtmp_url,
            "--seconds",
            str(seconds),
            "--size",
            size,
            "--fps",
            str(fps),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    process.stdin.write(key + "\n")
    process.stdin.close()
    process.stdin = None  # so that communicate() does not write to it again
    return process


# ---------------------------------------------------------------- a fake coordinator


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # time.time() when it arrived


@dataclass
class FakeCoordinator:
    """The coordinator's ingest routes, as the contract describes them, over real HTTP."""

    secret: str
    keys: dict[str, str] = field(default_factory=dict)  # stream key -> public name
    streams: set[str] = field(default_factory=set)  # streams that exist (segments -> 404 else)
    received: list[Received] = field(default_factory=list)
    segments: dict[tuple[str, int], dict] = field(default_factory=dict)
    fail_next: int = 0  # answer this many ingest requests with 503 first
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def calls(self, path_suffix: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path.endswith(path_suffix)]

    def sequences(self, stream: str) -> list[int]:
        with self.lock:
            return sorted(seq for name, seq in self.segments if name == stream)

    def wait_for(self, check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            time.sleep(0.02)
        raise AssertionError(f"fake coordinator: condition not met within {timeout_s} s")

    def handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict, Any]:
        form = headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
        body: Any = {k: v[0] for k, v in parse_qs(raw.decode()).items()} if form else _json(raw)
        with self.lock:
            self.received.append(Received(path, headers, body, time.time()))
            if headers.get("x-streamr-ingest-secret") != self.secret:
                return 403, {}, {"error": {"message": "Only the ingest server may call this."}}
            if self.fail_next > 0:
                self.fail_next -= 1
                return 503, {"Retry-After": "0"}, {"error": {"message": "try again"}}
            if path == "/api/v1/ingest/hooks/authorize":
                name = self.keys.get(body.get("name", ""))
                if name is None:
                    return 403, {}, {"error": {"message": "This stream key is not valid."}}
                relay = headers.get("x-streamr-relay-base", "")
                return 302, {"Location": f"{relay}/{name}"}, None
            if path in ("/api/v1/ingest/hooks/publish", "/api/v1/ingest/hooks/publish-done"):
                if body.get("name") not in self.streams:
                    return 404, {}, {"error": {"message": "No such stream."}}
                return 200, {}, {"stream": body["name"], "status": "LIVE"}
            if path == "/api/v1/ingest/segments":
                return self._segments(body)
            if path == "/api/v1/ingest/sync":
                return 200, {}, {"changed": []}
        return 404, {}, {"error": {"message": "unknown route"}}

    def _segments(self, body: dict) -> tuple[int, dict, Any]:
        accepted = known = 0
        batch = body["segments"]
        if not 1 <= len(batch) <= 500:
            return 422, {}, {"error": {"message": "1 to 500 segments"}}
        for item in batch:
            if item["stream"] not in self.streams:
                return 404, {}, {"error": {"message": f"No stream is named {item['stream']!r}."}}
            old = self.segments.get((item["stream"], item["sequence"]))
            if old is not None and old["sha256"] != item["sha256"]:
                return 409, {}, {"error": {"message": "sequence known with another hash"}}
        for item in batch:
            key = (item["stream"], item["sequence"])
            if key in self.segments:
                known += 1
            else:
                accepted += 1
                self.segments[key] = item
        return 200, {}, {"accepted": accepted, "known": known}


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return None


@contextmanager
def run_fake_coordinator(secret: str, **options: Any) -> Iterator[FakeCoordinator]:
    fake = FakeCoordinator(secret=secret, **options)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload = fake.handle(self.path, headers, raw)
            data = b"" if payload is None else json.dumps(payload).encode()
            try:
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the caller hung up first (nginx or the ingest stopped mid-request)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
