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


def test_demo_friend_nodes_relay_the_stream_and_the_summary_says_so(start_demo):
    demo = start_demo()
    base = demo.coordinator
    deadline = time.monotonic() + 90
    while True:
        nodes = httpx.get(f"{base}/api/v1/streams/demo/nodes").json()
        summary = [line for line in demo.log.read_text().splitlines() if "[demo] demo:" in line]
        if (nodes["online"] == 3 and summary and "3/3 online" in summary[-1]) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.5)
    assert (nodes["registered"], nodes["online"]) == (3, 3)
    assert "3/3 online" in summary[-1], summary
    banner = demo.log.read_text()
    assert banner.count("friend node:   node-") == 3
    assert "friend login:  friend@example.com /" in banner
    assert f"watch:         {base}/watch/demo" in banner
    # A viewer's session lists the demo's nodes before the origin, and a node serves the
    # stream's segments, verified against the signed index.
    session = httpx.post(f"{base}/api/v1/streams/demo/sessions").json()
    kinds = [source["kind"] for source in session["sources"]]
    assert kinds[-1] == "origin" and kinds.count("node") == 3
    node_url = session["sources"][0]["base_url"]
    key = public_key_from(AttestationKey(**httpx.get(f"{base}/api/v1/attestation/key").json()))
    index = SegmentIndex(**httpx.get(f"{base}/api/v1/streams/demo/segments").json())
    by_name = {entry.name: entry for entry in index.segments}
    playlist = httpx.get(f"{node_url}/hls/demo/index.m3u8", params={"session": session["token"]})
    assert playlist.status_code == 200
    name = [line for line in playlist.text.splitlines() if line.endswith(".ts")][-1]
    data = httpx.get(f"{node_url}/hls/demo/{name}", params={"session": session["token"]}).content
    verify_segment(key, "demo", by_name[name], data)
