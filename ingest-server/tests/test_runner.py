"""The whole ingest as a real process: Debian's nginx-rtmp, ffmpeg publishing like OBS, the
origin watcher and the reconciler, against a fake coordinator on loopback."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from streamr_protocol.playlist import PlaylistError, parse
from tests.ingest import (
    KEY,
    SECRET,
    STREAM,
    STREAMR,
    STREAMR_INGEST,
    FakeCoordinator,
    IngestProcess,
    push_test_card,
    run_ingest,
)
from tests.servers import free_port

pytestmark = pytest.mark.timeout(180)


def publish(ingest: IngestProcess, seconds: float, key: str = KEY) -> tuple[int, str]:
    process = push_test_card(ingest.rtmp_url, key, seconds)
    _, err = process.communicate(timeout=seconds + 60)
    return process.returncode, err


def reported(fake: FakeCoordinator) -> dict[int, float]:
    """sequence -> when the coordinator first received it (wall clock)."""
    first: dict[int, float] = {}
    for call in fake.calls("/segments"):
        for item in call.body["segments"]:
            first.setdefault(item["sequence"], call.at)
    return first


class PlaylistClock:
    """Notes, for each sequence, when nginx wrote the first playlist listing it (its mtime):
    the moment nginx finished that segment."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.listed_at: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            try:
                with self.path.open("rb") as handle:  # fstat: the mtime of exactly this text
                    mtime = os.fstat(handle.fileno()).st_mtime
                    playlist = parse(handle.read().decode())
            except (OSError, PlaylistError):
                continue
            for segment in playlist.segments:
                self.listed_at.setdefault(segment.sequence, mtime)

    def stop(self) -> dict[int, float]:
        self._stop.set()
        self._thread.join()
        return self.listed_at


def test_publish_hls_origin_and_attestation(ingest, fake_coordinator):
    clock = PlaylistClock(ingest.hls_dir / STREAM / "index.m3u8")
    status, output = publish(ingest, 9)
    assert status == 0, output
    assert KEY not in output

    # Publish auth: the key went to the coordinator in the form body, with the secret header
    # and the relay base added by the loopback proxy; the HLS application published the
    # public name.
    (authorize,) = fake_coordinator.calls("/hooks/authorize")
    assert authorize.body["name"] == KEY and authorize.body["app"] == "live"
    assert authorize.headers["x-streamr-ingest-secret"] == SECRET
    relay = f"rtmp://127.0.0.1:{ingest.rtmp_port}/hls"
    assert authorize.headers["x-streamr-relay-base"] == relay
    (publish_hook,) = fake_coordinator.calls("/hooks/publish")
    assert publish_hook.body["name"] == STREAM and publish_hook.body["app"] == "hls"
    fake_coordinator.wait_for(lambda: fake_coordinator.calls("/hooks/publish-done"))
    assert fake_coordinator.calls("/hooks/publish-done")[0].body["name"] == STREAM
    assert not (ingest.hls_dir / KEY).exists()

    # Every segment the playlist listed was attested, exactly as the origin serves it.
    playlist = httpx.get(f"{ingest.origin_url}/hls/{STREAM}/index.m3u8")
    assert playlist.status_code == 200
    assert playlist.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert playlist.headers["cache-control"] == "no-cache"
    assert playlist.headers["access-control-allow-origin"] == "*"
    listed = [line for line in playlist.text.splitlines() if line.endswith(".ts")]
    fake_coordinator.wait_for(lambda: f"{fake_coordinator.sequences(STREAM)[-1]}.ts" == listed[-1])
    sequences = fake_coordinator.sequences(STREAM)
    assert sequences == list(range(len(sequences))) and len(sequences) >= 4
    durations = 0
    for sequence in sequences:
        segment = httpx.get(f"{ingest.origin_url}/hls/{STREAM}/{sequence}.ts")
        assert segment.status_code == 200
        assert segment.headers["content-type"] == "video/mp2t"
        assert segment.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert segment.headers["access-control-allow-origin"] == "*"
        record = fake_coordinator.segments[(STREAM, sequence)]
        assert record["sha256"] == hashlib.sha256(segment.content).hexdigest()
        assert record["size"] == len(segment.content)
        assert 900 <= record["duration_ms"] <= 2100 or sequence == sequences[-1]
        durations += record["duration_ms"]
    # Nine seconds published; the relay into HLS starts on a keyframe (wait_key), which can be
    # the second one, two seconds in.
    assert 6000 <= durations <= 10_000
    assert fake_coordinator.segments[(STREAM, 0)]["discontinuity"]

    # Every segment nginx listed was reported after it was listed (the delay itself is a
    # benchmark's business: bench/attestation).
    listed_at = clock.stop()
    assert all(at >= listed_at[seq] for seq, at in reported(fake_coordinator).items())

    # The reconciler saw it publishing, and then not.
    syncs = [call.body["publishing"] for call in fake_coordinator.calls("/sync")]
    assert [STREAM] in syncs
    fake_coordinator.wait_for(lambda: fake_coordinator.calls("/sync")[-1].body["publishing"] == [])

    # CORS preflight, and nothing else of the work directory is reachable.
    preflight = httpx.options(f"{ingest.origin_url}/hls/{STREAM}/1.ts")
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "Range" in preflight.headers["access-control-allow-headers"]
    for path in (
        f"/hls/{STREAM}/index.m3u8.bak",
        f"/hls/{STREAM}/",
        "/nginx.conf",
        "/hls/../nginx.conf",
        f"/hls/{STREAM}/99.ts",
    ):
        response = httpx.get(f"{ingest.origin_url}{path}")
        assert response.status_code == 404, path
        assert "cache-control" not in response.headers or path.endswith("m3u8.bak") is False

    # The hook proxy and stat are loopback-only and answer nothing else.
    assert httpx.get(f"http://127.0.0.1:{ingest.hook_port}/").status_code == 404

    assert ingest.stop() == 0
    log = ingest.log()
    assert KEY not in log and SECRET not in log
    assert '"event": "ingest stopped"' in log


def test_republish_and_restart_continue_the_numbering(fake_coordinator, tmp_path):
    data = tmp_path / "data"
    with run_ingest(fake_coordinator.url, SECRET, data) as first:
        assert publish(first, 5)[0] == 0
        fake_coordinator.wait_for(lambda: fake_coordinator.calls("/hooks/publish-done"))
        assert publish(first, 5)[0] == 0
        fake_coordinator.wait_for(lambda: len(fake_coordinator.calls("/hooks/publish-done")) == 2)
        time.sleep(0.5)
    before = fake_coordinator.sequences(STREAM)
    assert before == list(range(len(before)))
    restarts = [s for (_, s), item in fake_coordinator.segments.items() if item["discontinuity"]]
    assert len(restarts) == 2 and restarts[0] == 0  # the second publish carried on, marked

    # A new ingest process over the same work directory: the listed segments are reported again
    # (the coordinator already knows them), and nginx-rtmp continues numbering from the playlist.
    calls_before = len(fake_coordinator.calls("/segments"))
    with run_ingest(fake_coordinator.url, SECRET, data) as second:
        fake_coordinator.wait_for(lambda: len(fake_coordinator.calls("/segments")) > calls_before)
        assert publish(second, 5)[0] == 0
        fake_coordinator.wait_for(lambda: len(fake_coordinator.calls("/hooks/publish-done")) == 3)
        time.sleep(0.5)
        log = second.log()
    after = fake_coordinator.sequences(STREAM)
    assert after == list(range(len(after))) and len(after) > len(before)
    assert fake_coordinator.segments[(STREAM, len(before))]["discontinuity"]
    assert "already registered" not in log


def test_a_wrong_key_is_refused_and_never_shown(ingest, fake_coordinator):
    wrong = "sk_wrong_" + "k" * 30
    status, output = publish(ingest, 4, key=wrong)
    assert status != 0
    assert wrong not in output
    assert "is the key the stream's current one" in output
    (authorize,) = fake_coordinator.calls("/hooks/authorize")
    assert authorize.body["name"] == wrong
    assert fake_coordinator.calls("/hooks/publish") == []
    assert list(ingest.hls_dir.iterdir()) == []
    ingest.stop()
    assert wrong not in ingest.log()


def _run_ingest_process(tmp_path, fake_url: str, **ports: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}
    env |= {
        "STREAMR_INGEST_DATA_DIR": str(tmp_path / "data"),
        "STREAMR_INGEST_COORDINATOR_URL": fake_url,
        "STREAMR_INGEST_SECRET": SECRET,
    }
    env |= {f"STREAMR_INGEST_{name.upper()}": str(port) for name, port in ports.items()}
    return subprocess.Popen(
        [STREAMR_INGEST], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_a_taken_port_is_one_line_and_a_failure(tmp_path, fake_coordinator):
    ports = {"rtmp_port": free_port(), "http_port": free_port(), "hook_port": free_port()}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["rtmp_port"]))
        taken.listen()
        process = _run_ingest_process(tmp_path, fake_coordinator.url, **ports)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert err.splitlines()[-1] == (
        f"streamr-ingest: error: port {ports['rtmp_port']} on 127.0.0.1 (rtmp_port) is already "
        "in use by another program; stop it or choose another port (STREAMR_INGEST_RTMP_PORT or "
        "'rtmp_port' in the config file)"
    )


def test_nginx_dying_stops_the_ingest_with_one_line(ingest):
    pid = int((ingest.work_dir / "nginx.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    assert ingest.process.wait(timeout=30) == 1
    last = ingest.log().splitlines()[-1]
    assert last.startswith("streamr-ingest: error: nginx exited unexpectedly with status -9")


def test_nginx_does_not_outlive_a_killed_ingest(ingest):
    pid = int((ingest.work_dir / "nginx.pid").read_text())
    ingest.process.kill()
    ingest.process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("nginx kept running after the ingest was killed")


def test_operator_cli_runs_the_ingest_check_and_reports_a_missing_package(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMR_")}
    env |= {
        "STREAMR_INGEST_DATA_DIR": str(tmp_path / "data"),
        "STREAMR_INGEST_RTMP_PORT": str(free_port()),
        "STREAMR_INGEST_HTTP_PORT": str(free_port()),
        "STREAMR_INGEST_HOOK_PORT": str(free_port()),
    }
    checked = subprocess.run(
        [STREAMR, "ingest", "--check"], env=env, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    assert "configuration OK" in checked.stderr
    missing = subprocess.run(
        [
            str(STREAMR).replace("/streamr", "/python"),
            "-c",
            "import sys; sys.modules['streamr_ingest'] = None\n"
            "from streamr_coordinator.cli import main; main(['ingest'])",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        "streamr: error: the ingest is not installed (Python package streamr-ingest, in "
        "ingest-server/); run scripts/bootstrap.sh"
    )


def test_operator_cli_push_test_fails_in_one_line_without_showing_the_key():
    key = "sk_cli_" + "c" * 30
    result = subprocess.run(
        [
            STREAMR,
            "stream",
            "push-test",
            STREAM,
            "--key",
            "-",
            "--rtmp",
            f"rtmp://127.0.0.1:{free_port()}/live",
            "--seconds",
            "2",
        ],
        input=key + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert key not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("streamr: error: ffmpeg stopped with status")
    assert "(stream key)" in last
