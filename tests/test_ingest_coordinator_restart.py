"""A coordinator restart in the middle of a stream, end to end (real nginx-rtmp, ffmpeg and
coordinator): the ingest keeps publishing while the coordinator is down, holds its segment
reports and retries them, so every segment made during the outage is attested once the
coordinator is back (same data directory, same signing key); the stream is LIVE at the first
reconciliation after the restart, a publish that ended during the outage, whose publish-done
hook was lost, is set OFFLINE by reconciliation, and a publish that tries to start during the
outage is refused (no one can check its key)."""

from __future__ import annotations

import pytest

from tests.stack import log_events, run_stack, wait_for

pytestmark = pytest.mark.timeout(150)

KEPT = "restart-kept"  # publishes through the outage
ENDED = "restart-ended"  # stops publishing during the outage
REFUSED = "restart-refused"  # tries to start during the outage


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with run_stack(tmp_path_factory.mktemp("restart")) as stack:
        yield stack


def test_segments_made_while_the_coordinator_was_down_are_attested_when_it_is_back(stack):
    kept_key = stack.api.create_stream(KEPT)
    ended_key = stack.api.create_stream(ENDED)
    refused_key = stack.api.create_stream(REFUSED)
    listed = stack.record_listed(KEPT)
    public_key = stack.api.http.get("/api/v1/attestation/key").json()
    kept = stack.publish(kept_key, 60)
    ended = stack.publish(ended_key, 60)
    stack.wait_status(KEPT, "LIVE")
    stack.wait_status(ENDED, "LIVE")
    stack.wait_listed(KEPT, 2)
    before = {entry.sequence for entry in stack.attested(KEPT, set(listed.listed())).segments}

    stack.coordinator.stop()  # SIGTERM: a clean shutdown
    status, output = ended.stop()  # its publish-done hook finds no coordinator
    assert status == 0, output
    # Nobody can check a key now: the ingest refuses new publishes (it fails closed).
    status, output = stack.publish(refused_key, 4).finish()
    assert status != 0, output
    assert stack.playlist(REFUSED) is None
    wait_for(lambda: len(set(listed.listed()) - before) >= 2, "segments made during the outage")
    made_during_outage = set(listed.listed()) - before
    stack.coordinator.start()

    # The first reconciliation that reaches the restarted coordinator finds the stream LIVE.
    wait_for(
        lambda: log_events(stack.ingest.log(), "reconciliation works again"),
        "a reconciliation reaches the restarted coordinator",
    )
    assert stack.api.status(KEPT) == "LIVE"
    index = stack.attested(KEPT, made_during_outage)
    made = [entry for entry in index.segments if entry.sequence in made_during_outage]
    assert stack.api.http.get("/api/v1/attestation/key").json() == public_key
    stack.verify_entries(KEPT, made)
    events = log_events(stack.ingest.log(), "segment reports held back; retrying")
    assert events and log_events(stack.ingest.log(), "segment reports flowing again")

    # The publish that ended during the outage: reconciliation makes up for the lost hook.
    stack.wait_status(ENDED, "OFFLINE", timeout_s=45)
    assert stack.api.history(ENDED)[-1] == ("OFFLINE", "ingest-sync")

    status, output = kept.stop()
    assert status == 0, output
    stack.wait_status(KEPT, "OFFLINE")
    stack.verify_listed(KEPT)
    index = stack.api.index(KEPT).segments
    assert [entry.sequence for entry in index] == list(range(len(index)))
    assert {entry.sequence: entry.name for entry in index} == listed.listed()
    assert [entry.sequence for entry in index if entry.discontinuity] == [0]
    assert [status for status, _ in stack.api.history(KEPT)] == ["READY", "LIVE", "OFFLINE"]
    assert stack.api.status(REFUSED) == "READY" and stack.playlist(REFUSED) is None
    logs = stack.logs()
    assert all(key not in logs for key in (kept_key, ended_key, refused_key))
