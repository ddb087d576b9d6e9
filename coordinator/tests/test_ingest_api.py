"""The ingest's side of the API: publish hooks, segment attestation, reconciliation."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import select

from streamr_coordinator.streams.lifecycle import StreamStatus
from streamr_coordinator.streams.models import Stream
from streamr_coordinator.streams.service import STATE_COLUMNS
from streamr_coordinator.streams.timers import age_streams
from streamr_protocol.attestation import (
    AttestationError,
    AttestationKey,
    SegmentIndex,
    public_key_from,
    verify_segment,
)

RELAY = "rtmp://127.0.0.1:1935/hls"


@pytest.fixture
def ingest(client):
    return {
        "X-Streamr-Ingest-Secret": client.app.state.ctx.ingest_secret,
        "X-Streamr-Relay-Base": RELAY,
    }


def hook(client, path, headers, **fields):
    return client.post(
        f"/api/v1/ingest/hooks/{path}",
        content="&".join(f"{k}={v}" for k, v in fields.items()),
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )


def go_live(api, ingest, name, key, addr="203.0.113.50"):
    """What nginx-rtmp does when OBS publishes: check the key, then start the HLS publish."""
    assert hook(api.client, "authorize", ingest, name=key, addr=addr).status_code == 302
    return hook(api.client, "publish", ingest, name=name)


def backdate(api, name, seconds):
    """Pretend the stream entered its current state ``seconds`` ago."""

    async def run():
        async with api.client.app.state.ctx.sessions() as session:
            stream = await session.scalar(select(Stream).where(Stream.name == name))
            column = STATE_COLUMNS[StreamStatus(stream.status)]
            setattr(stream, column, getattr(stream, column) - timedelta(seconds=seconds))
            await session.commit()

    api.client.portal.call(run)


def status_of(api, name):
    return api.client.get(f"/api/v1/streams/{name}").json()["status"]


def test_right_key_relays_under_the_public_name(api, ingest):
    owner = api.register()
    name, key = api.create_stream(owner)
    response = hook(api.client, "authorize", ingest, name=key, addr="203.0.113.9", app="live")
    assert response.status_code == 302
    assert response.headers["location"] == f"{RELAY}/{name}"
    assert key not in response.headers["location"]


@pytest.mark.parametrize("case", ["unknown", "rotated", "other stream's"])
def test_wrong_keys_are_refused(api, ingest, case):
    owner = api.register()
    name, key = api.create_stream(owner)
    other, other_key = api.create_stream(owner)
    if case == "rotated":
        api.client.post(f"/api/v1/streams/{name}/rotate-key", headers=owner.headers)
    presented = {"unknown": "sk_nope", "rotated": key, "other stream's": other_key}[case]
    response = hook(api.client, "authorize", ingest, name=presented, addr=f"198.51.100.{len(case)}")
    if case == "other stream's":
        # A valid key only ever relays to its own stream, never to the one in the URL.
        assert response.headers["location"] == f"{RELAY}/{other}"
    else:
        assert response.status_code == 403
    assert status_of(api, name) == "READY"


def test_repeated_failures_from_one_address_are_throttled(api, ingest):
    owner = api.register()
    _, key = api.create_stream(owner)
    addr = "192.0.2.77"
    codes = [
        hook(api.client, "authorize", ingest, name="sk_bad", addr=addr).status_code
        for _ in range(11)
    ]
    assert codes[:10] == [403] * 10
    assert codes[10] == 429
    # Even the right key waits out the window from that address; other addresses are unaffected.
    assert hook(api.client, "authorize", ingest, name=key, addr=addr).status_code == 429
    assert hook(api.client, "authorize", ingest, name=key, addr="192.0.2.78").status_code == 302


def test_hooks_refuse_callers_without_the_secret(api, ingest):
    owner = api.register()
    _, key = api.create_stream(owner)
    for headers in ({}, {"X-Streamr-Ingest-Secret": "guess", "X-Streamr-Relay-Base": RELAY}):
        response = hook(api.client, "authorize", headers, name=key)
        assert response.status_code == 403
        assert response.json()["error"]["message"] == "Only the ingest server may call this route."
    accounts = api.client.post(
        "/api/v1/ingest/segments", json={"segments": []}, headers=owner.headers
    )
    assert accounts.status_code == 403


def test_publish_lifecycle_follows_the_hooks(api, ingest):
    owner = api.register()
    name, key = api.create_stream(owner)
    test_name, test_key = api.create_stream(owner, is_test=True)
    assert go_live(api, ingest, name, key).status_code == 200
    assert go_live(api, ingest, test_name, test_key).status_code == 200
    assert status_of(api, name) == "LIVE"
    assert status_of(api, test_name) == "TESTING"
    assert hook(api.client, "publish-done", ingest, name=name).status_code == 200
    assert status_of(api, name) == "OFFLINE"
    assert hook(api.client, "publish-done", ingest, name=name).status_code == 200, "idempotent"
    history = api.client.get(f"/api/v1/streams/{name}/history", headers=owner.headers).json()
    assert [h["actor"] for h in history[:2]] == ["ingest", "ingest"]


def test_hls_publish_needs_a_fresh_key_check(api, ingest):
    """A local process publishing to the HLS application without a key is refused, and one key
    check starts one publish only."""
    owner = api.register()
    name, key = api.create_stream(owner)
    keyless = hook(api.client, "publish", ingest, name=name)
    assert keyless.status_code == 403
    assert status_of(api, name) == "READY"
    assert go_live(api, ingest, name, key).status_code == 200
    hook(api.client, "publish-done", ingest, name=name)
    again = hook(api.client, "publish", ingest, name=name)
    assert again.status_code == 403, "the authorization was used up"
    assert status_of(api, name) == "OFFLINE"


def test_second_publisher_and_archived_streams_are_refused(api, ingest):
    owner = api.register()
    name, key = api.create_stream(owner)
    go_live(api, ingest, name, key)
    busy = hook(api.client, "authorize", ingest, name=key, addr="203.0.113.1")
    assert busy.status_code == 409
    hook(api.client, "publish-done", ingest, name=name)
    api.client.post(
        f"/api/v1/streams/{name}/status", json={"status": "ARCHIVED"}, headers=owner.headers
    )
    archived = hook(api.client, "authorize", ingest, name=key, addr="203.0.113.1")
    assert archived.status_code == 409
    assert "READY first" in archived.json()["error"]["message"]


def test_sync_reconciles_states(api, ingest):
    owner = api.register()
    stuck, stuck_key = api.create_stream(owner)
    playing, _ = api.create_stream(owner)
    fresh, fresh_key = api.create_stream(owner)
    go_live(api, ingest, stuck, stuck_key)
    go_live(api, ingest, fresh, fresh_key)
    backdate(api, stuck, 60)
    backdate(api, playing, 60)
    response = api.client.post(
        "/api/v1/ingest/sync", json={"publishing": [playing]}, headers=ingest
    )
    assert response.status_code == 200
    assert set(response.json()["changed"]) >= {stuck, playing}
    assert status_of(api, stuck) == "OFFLINE"
    assert status_of(api, playing) == "LIVE"
    # A hook that overtook the sync wins: the stream that went live a moment ago stays LIVE.
    assert fresh not in response.json()["changed"]
    assert status_of(api, fresh) == "LIVE"
    # Unless the list is complete (nginx just started): then nothing else can be on air.
    complete = api.client.post(
        "/api/v1/ingest/sync", json={"publishing": [playing], "complete": True}, headers=ingest
    )
    assert fresh in complete.json()["changed"]
    assert status_of(api, fresh) == "OFFLINE"


def segment(name, sequence, data, **extra):
    return {
        "stream": name,
        "sequence": sequence,
        "name": f"{sequence}.ts",
        "duration_ms": 2000,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        **extra,
    }


def test_segments_are_signed_and_verifiable(api, ingest):
    owner = api.register()
    name, _ = api.create_stream(owner)
    payloads = {seq: f"segment {seq} bytes".encode() * 100 for seq in range(5)}
    batch = [segment(name, seq, data) for seq, data in payloads.items()]
    first = api.client.post("/api/v1/ingest/segments", json={"segments": batch}, headers=ingest)
    assert first.json() == {"accepted": 5, "known": 0}
    again = api.client.post("/api/v1/ingest/segments", json={"segments": batch}, headers=ingest)
    assert again.json() == {"accepted": 0, "known": 5}

    key = public_key_from(AttestationKey(**api.client.get("/api/v1/attestation/key").json()))
    index = SegmentIndex(**api.client.get(f"/api/v1/streams/{name}/segments").json())
    assert [e.sequence for e in index.segments] == [0, 1, 2, 3, 4]
    for entry in index.segments:
        verify_segment(key, name, entry, payloads[entry.sequence])
    with pytest.raises(AttestationError):
        verify_segment(key, name, index.segments[0], payloads[0][:-1] + b"X")
    with pytest.raises(AttestationError):
        verify_segment(key, "another-stream", index.segments[0], payloads[0])

    since = api.client.get(f"/api/v1/streams/{name}/segments", params={"since": 2}).json()
    assert [s["sequence"] for s in since["segments"]] == [3, 4]
    newest = api.client.get(f"/api/v1/streams/{name}/segments", params={"limit": 2}).json()
    assert [s["sequence"] for s in newest["segments"]] == [3, 4]


def test_changed_content_for_a_known_sequence_is_409(api, ingest):
    owner = api.register()
    name, _ = api.create_stream(owner)
    api.client.post(
        "/api/v1/ingest/segments", json={"segments": [segment(name, 7, b"one")]}, headers=ingest
    )
    response = api.client.post(
        "/api/v1/ingest/segments", json={"segments": [segment(name, 7, b"two")]}, headers=ingest
    )
    assert response.status_code == 409
    index = api.client.get(f"/api/v1/streams/{name}/segments").json()
    assert index["segments"][0]["sha256"] == hashlib.sha256(b"one").hexdigest()


@pytest.mark.parametrize(
    "bad",
    [
        {"sha256": "xyz"},
        {"sequence": -1},
        {"name": "../../etc/passwd"},
        {"stream": "Not A Name"},
        {"duration_ms": 10**9},
    ],
)
def test_bad_segment_reports_are_422(api, ingest, bad):
    item = {**segment("whatever", 1, b"x"), **bad}
    response = api.client.post("/api/v1/ingest/segments", json={"segments": [item]}, headers=ingest)
    assert response.status_code == 422


def test_unknown_stream_segments_are_404(api, ingest):
    response = api.client.post(
        "/api/v1/ingest/segments",
        json={"segments": [segment("no-such-stream", 1, b"x")]},
        headers=ingest,
    )
    assert response.status_code == 404


def test_timers_age_offline_streams(api):
    owner = api.register()
    name, _ = api.create_stream(owner)
    for state in ("LIVE", "OFFLINE"):
        api.client.post(
            f"/api/v1/streams/{name}/status", json={"status": state}, headers=owner.headers
        )

    async def age(stale_after_s, archive_after_s):
        async with api.client.app.state.ctx.sessions() as session:
            return await age_streams(session, stale_after_s, archive_after_s)

    assert name not in api.client.portal.call(age, 3600, 3600)
    assert name in api.client.portal.call(age, 0.001, 3600)
    assert status_of(api, name) == "STALE"
    assert name in api.client.portal.call(age, 0.001, 0.001)
    assert status_of(api, name) == "ARCHIVED"
    history = api.client.get(f"/api/v1/streams/{name}/history", headers=owner.headers).json()
    assert [h["actor"] for h in history[:2]] == ["timer", "timer"]
    detail = api.client.get(f"/api/v1/streams/{name}", headers=owner.headers).json()
    assert detail["state_entered_at"]["ARCHIVED"] is not None


def test_a_segment_repeated_within_one_batch_is_recorded_once(api, ingest):
    owner = api.register()
    name, _ = api.create_stream(owner)
    item = segment(name, 3, b"same bytes")
    response = api.client.post(
        "/api/v1/ingest/segments", json={"segments": [item, item]}, headers=ingest
    )
    assert response.json() == {"accepted": 1, "known": 1}
    index = api.client.get(f"/api/v1/streams/{name}/segments").json()
    assert [s["sequence"] for s in index["segments"]] == [3]
