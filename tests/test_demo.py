"""`streamr demo` (the README's run command) brings up the whole local network and stops it."""

from __future__ import annotations

import re
import time

import httpx

from streamr_protocol.attestation import (
    AttestationKey,
    SegmentIndex,
    public_key_from,
    verify_segment,
)


def test_demo_goes_live_with_attested_segments(start_demo):
    demo = start_demo()
    base = demo.coordinator
    deadline = time.monotonic() + 60
    while True:
        status = httpx.get(f"{base}/api/v1/streams/demo").json()["status"]
        index = SegmentIndex(**httpx.get(f"{base}/api/v1/streams/demo/segments").json())
        if (status == "LIVE" and len(index.segments) >= 2) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == "LIVE"
    assert len(index.segments) >= 2, "the test card's segments were attested"

    key = public_key_from(AttestationKey(**httpx.get(f"{base}/api/v1/attestation/key").json()))
    entry = index.segments[-1]
    verify_segment(key, "demo", entry, httpx.get(f"{demo.origin}/hls/demo/{entry.name}").content)

    banner = demo.log.read_text()
    assert f"origin HLS:    {demo.origin}/hls/demo/index.m3u8" in banner
    shown_key = re.search(r"key (sk_[\w-]+)", banner)
    assert shown_key, banner
    # The key is printed once for the operator, and never in a structured log line.
    assert all(shown_key[1] not in line for line in banner.splitlines() if line.startswith("{"))
