"""A real coordinator and a real ingest sharing one data directory, as the end-to-end tests
drive them: a streamer's API client, test-card publishers, and the checks every test makes
(the origin's playlist against the coordinator's signed segment index).

``run_stack`` starts both processes (``tests/coordinator.py``, ``tests/ingest.py``) and stops
them afterwards; a module uses one stack for all its tests, each test with its own streams.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from streamr_protocol.attestation import (
    AttestationKey,
    SegmentEntry,
    SegmentIndex,
    public_key_from,
    verify_segment,
)
from streamr_protocol.playlist import Playlist, PlaylistError, parse
from tests.coordinator import CoordinatorProcess, run_coordinator
from tests.ingest import IngestProcess, push_test_card, run_ingest
from tests.servers import free_port

T = TypeVar("T")

# Every stack's ingest: the reconciler syncs every second, so lost hooks are corrected quickly.
INGEST_SETTINGS: dict[str, Any] = {"reconcile_interval_s": 1}


def wait_for(check: Callable[[], T], what: str, timeout_s: float = 30.0, every_s: float = 0.1) -> T:
    """Call ``check`` until it returns something true; that value. A deadline, not a timing."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(every_s)


class StreamerApi:
    """One streamer's calls to the coordinator, over plain HTTP."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=10)
        email = f"streamer-{uuid.uuid4().hex[:8]}@example.com"
        registered = self.http.post(
            "/api/v1/auth/register",
            json={"email": email, "password": "a long passphrase", "display_name": "Streamer"},
        )
        assert registered.status_code == 201, registered.text
        self.auth = {"Authorization": f"Bearer {registered.json()['access_token']}"}
        self._public_key: Ed25519PublicKey | None = None

    def close(self) -> None:
        self.http.close()

    def create_stream(self, name: str) -> str:
        """Creates the stream; its key."""
        created = self.http.post(
            "/api/v1/streams", json={"name": name, "title": name}, headers=self.auth
        )
        assert created.status_code == 201, created.text
        return created.json()["stream_key"]

    def rotate_key(self, name: str) -> str:
        rotated = self.http.post(f"/api/v1/streams/{name}/rotate-key", headers=self.auth)
        assert rotated.status_code == 200, rotated.text
        return rotated.json()["stream_key"]

    def status(self, name: str) -> str:
        answer = self.http.get(f"/api/v1/streams/{name}")
        assert answer.status_code == 200, answer.text
        return answer.json()["status"]

    def history(self, name: str) -> list[tuple[str, str]]:
        """(to_status, actor) of every transition, oldest first (the API lists newest first)."""
        answer = self.http.get(f"/api/v1/streams/{name}/history", headers=self.auth)
        assert answer.status_code == 200, answer.text
        return [(t["to_status"], t["actor"]) for t in reversed(answer.json())]

    def index(self, name: str) -> SegmentIndex:
        """The stream's whole signed segment index (up to 500 segments)."""
        answer = self.http.get(
            f"/api/v1/streams/{name}/segments", params={"since": -1, "limit": 500}
        )
        assert answer.status_code == 200, answer.text
        return SegmentIndex.model_validate(answer.json())

    @property
    def public_key(self) -> Ed25519PublicKey:
        if self._public_key is None:
            key = AttestationKey.model_validate(self.http.get("/api/v1/attestation/key").json())
            self._public_key = public_key_from(key)
        return self._public_key


@dataclass
class Publisher:
    """A test card publishing like OBS (``streamr-ingest push-test``, key on stdin)."""

    process: subprocess.Popen

    def finish(self, timeout_s: float = 60.0) -> tuple[int, str]:
        """Wait for it to end; (exit status, what it printed)."""
        out, err = self.process.communicate(timeout=timeout_s)
        return self.process.returncode, out + err

    def stop(self) -> tuple[int, str]:
        """Stop it as Ctrl-C would (ffmpeg ends the stream cleanly, like OBS's Stop)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.finish(timeout_s=20)


class ListedRecorder:
    """Every segment a playlist on disk has ever listed (sequence -> file name), read in a
    thread every 10 ms: what nginx-rtmp declared finished, whatever the watcher was doing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._listed: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            try:
                playlist = parse(self.path.read_text())
            except (OSError, PlaylistError):
                continue
            with self._lock:
                for segment in playlist.segments:
                    self._listed.setdefault(segment.sequence, segment.uri)

    def listed(self) -> dict[int, str]:
        with self._lock:
            return dict(self._listed)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Stack:
    coordinator: CoordinatorProcess
    ingest: IngestProcess
    api: StreamerApi
    data_dir: Path
    _exit: ExitStack
    publishers: list[Publisher] = field(default_factory=list)

    def start_ingest(self) -> IngestProcess:
        """Another ingest process on the same data (and work) directory; it becomes ``ingest``."""
        self.ingest = self._exit.enter_context(
            run_ingest(self.coordinator.url, None, self.data_dir, **INGEST_SETTINGS)
        )
        return self.ingest

    def record_listed(self, stream: str) -> ListedRecorder:
        recorder = ListedRecorder(self.ingest.hls_dir / stream / "index.m3u8")
        self._exit.callback(recorder.stop)
        return recorder

    def publish(self, key: str, seconds: float, rtmp_url: str | None = None) -> Publisher:
        process = push_test_card(rtmp_url or self.ingest.rtmp_url, key, seconds)
        publisher = Publisher(process)
        self.publishers.append(publisher)
        return publisher

    # ------------------------------------------------------------ the origin

    def origin(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.ingest.origin_url}{path}", timeout=10)

    def playlist(self, stream: str) -> Playlist | None:
        """The origin's live playlist of ``stream``, parsed; None while it has none."""
        answer = self.origin(f"/hls/{stream}/index.m3u8")
        if answer.status_code == 404:
            return None
        assert answer.status_code == 200, answer.status_code
        return parse(answer.text)

    def wait_status(self, stream: str, status: str, timeout_s: float = 30.0) -> None:
        wait_for(lambda: self.api.status(stream) == status, f"{stream} is {status}", timeout_s)

    def wait_listed(self, stream: str, count: int, timeout_s: float = 40.0) -> Playlist:
        """Until the origin lists at least ``count`` segments of ``stream``."""

        def enough() -> Playlist | None:
            playlist = self.playlist(stream)
            return playlist if playlist and len(playlist.segments) >= count else None

        return wait_for(enough, f"{count} segments of {stream} listed", timeout_s)

    def attested(self, stream: str, sequences: set[int], timeout_s: float = 30.0) -> SegmentIndex:
        """Until every one of ``sequences`` is in the signed index; the index."""

        def covered() -> SegmentIndex | None:
            index = self.api.index(stream)
            return index if sequences <= {e.sequence for e in index.segments} else None

        return wait_for(covered, f"segments {sorted(sequences)} of {stream} attested", timeout_s)

    def verify_listed(self, stream: str) -> tuple[Playlist, dict[int, SegmentEntry]]:
        """Every segment the origin lists now is in the signed index, under the same name and
        discontinuity, and is byte for byte what the coordinator signed."""
        playlist = self.playlist(stream)
        assert playlist is not None and playlist.segments, f"the origin lists nothing of {stream}"
        index = self.attested(stream, {s.sequence for s in playlist.segments})
        entries = {entry.sequence: entry for entry in index.segments}
        for segment in playlist.segments:
            entry = entries[segment.sequence]
            assert (entry.name, entry.discontinuity) == (segment.uri, segment.discontinuity)
            data = self.origin(f"/hls/{stream}/{segment.uri}")
            assert data.status_code == 200, (segment.uri, data.status_code)
            verify_segment(self.api.public_key, stream, entry, data.content)
        return playlist, entries

    def verify_entries(self, stream: str, entries: list[SegmentEntry]) -> None:
        """Each entry is signed and matches the segment file the origin still serves."""
        for entry in entries:
            data = self.origin(f"/hls/{stream}/{entry.name}")
            assert data.status_code == 200, (entry.name, data.status_code)
            verify_segment(self.api.public_key, stream, entry, data.content)

    # ------------------------------------------------------------ logs

    def logs(self) -> str:
        """Everything the coordinator and every ingest process of this stack have logged."""
        ingest_logs = sorted(self.data_dir.glob("ingest-*.log"))
        return self.coordinator.log() + "".join(p.read_text(errors="replace") for p in ingest_logs)


def log_events(text: str, event: str) -> list[dict[str, Any]]:
    """The structured log lines (one JSON object a line) of ``event`` in a log's text."""
    found = []
    for line in text.splitlines():
        if line.startswith("{") and f'"event": "{event}"' in line:
            found.append(json.loads(line))
    return found


@contextmanager
def run_stack(workdir: Path, **coordinator_settings: object) -> Iterator[Stack]:
    """A coordinator and an ingest on ``workdir / "data"`` (shared ingest secret), a streamer.

    The coordinator knows the ingest's origin URL and accepts loopback node URLs, as on one
    machine; keyword arguments become more of its STREAMR_* settings.
    """
    data_dir = workdir / "data"
    http_port = free_port()
    settings = {
        "origin_url": f"http://127.0.0.1:{http_port}",
        "allow_private_node_urls": "true",
        **coordinator_settings,
    }
    with ExitStack() as exit_stack:
        coordinator = exit_stack.enter_context(
            run_coordinator(data_dir, log_dir=workdir, **{k: str(v) for k, v in settings.items()})
        )
        ingest = exit_stack.enter_context(
            run_ingest(coordinator.url, None, data_dir, http_port=http_port, **INGEST_SETTINGS)
        )
        api = StreamerApi(coordinator.url)
        exit_stack.callback(api.close)
        stack = Stack(coordinator, ingest, api, data_dir, exit_stack)

        def stop_publishers() -> None:
            for publisher in stack.publishers:
                if publisher.process.poll() is None:
                    publisher.stop()

        exit_stack.callback(stop_publishers)
        yield stack
