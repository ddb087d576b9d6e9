"""OBS (ffmpeg, like OBS) -> ingest (Debian's nginx-rtmp) -> coordinator, all real processes:
publish authentication, LIVE/OFFLINE from the hooks, and signed segments that match the origin."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from streamr_protocol.attestation import (
    AttestationKey,
    SegmentIndex,
    public_key_from,
    verify_segment,
)
from tests.ingest import STREAMR

pytestmark = pytest.mark.timeout(180)

PUSH = [STREAMR, "stream", "push-test", "e2e-live", "--key", "-"]  # the key goes on stdin


def push(rtmp_url: str, key: str, seconds: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PUSH, "--rtmp", rtmp_url, "--seconds", str(seconds), "--size", "320x180"],
        input=key + "\n",
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )


def wait_for(check, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s")


def test_streamer_publishes_and_every_segment_is_signed(start_coordinator, start_ingest):
    base, _ = start_coordinator()
    ingest = start_ingest(base)  # same data directory: the two share <data_dir>/ingest-secret
    api = httpx.Client(base_url=base)
    token = api.post(
        "/api/v1/auth/register",
        json={"email": "e2e@example.com", "password": "a long passphrase", "display_name": "E"},
    ).json()["access_token"]
    created = api.post(
        "/api/v1/streams",
        json={"name": "e2e-live", "title": "End to end"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 201, created.text
    key = created.json()["stream_key"]

    def status() -> str:
        return api.get("/api/v1/streams/e2e-live").json()["status"]

    refused = push(ingest.rtmp_url, "sk_" + "w" * 43, 3)
    assert refused.returncode == 1 and "sk_www" not in refused.stderr
    assert status() == "READY"

    publisher = subprocess.Popen(
        [*PUSH, "--rtmp", ingest.rtmp_url, "--seconds", "9", "--size", "320x180"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = publisher.communicate(key + "\n", timeout=70)
    assert publisher.returncode == 0, err
    assert wait_for(lambda: status() == "OFFLINE")
    history = api.get(
        "/api/v1/streams/e2e-live/history", headers={"Authorization": f"Bearer {token}"}
    ).json()
    changes = {(t["to_status"], t["actor"]) for t in history}
    assert {("LIVE", "ingest"), ("OFFLINE", "ingest")} <= changes

    public_key = public_key_from(
        AttestationKey.model_validate(api.get("/api/v1/attestation/key").json())
    )

    def signed_index() -> SegmentIndex | None:
        answer = api.get("/api/v1/streams/e2e-live/segments", params={"since": -1, "limit": 500})
        index = SegmentIndex.model_validate(answer.json())
        return index if len(index.segments) >= 4 else None

    index = wait_for(signed_index)
    sequences = [entry.sequence for entry in index.segments]
    assert sequences == list(range(len(sequences)))
    for entry in index.segments:
        data = httpx.get(f"{ingest.origin_url}/hls/e2e-live/{entry.name}").content
        verify_segment(public_key, "e2e-live", entry, data)

    log = ingest.log()
    assert key not in log
