"""Stop and publish again, end to end (real nginx-rtmp, ffmpeg and coordinator): the stream goes
OFFLINE when the streamer stops and LIVE when they start again, and the signed segment index
carries on where it stopped — the next sequence numbers, a discontinuity where the new publish
begins, every segment still matching its signature, and no sequence number signed twice."""

from __future__ import annotations

import pytest

from tests.stack import run_stack

pytestmark = pytest.mark.timeout(120)

STREAM = "republish"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with run_stack(tmp_path_factory.mktemp("republish")) as stack:
        yield stack


def test_stopping_goes_offline_and_publishing_again_continues_the_signed_index(stack):
    key = stack.api.create_stream(STREAM)

    first = stack.publish(key, 60)
    stack.wait_status(STREAM, "LIVE")
    stack.wait_listed(STREAM, 3)
    status, output = first.stop()  # the streamer presses Stop
    assert status == 0, output
    stack.wait_status(STREAM, "OFFLINE")
    stack.verify_listed(STREAM)
    before = [entry.sequence for entry in stack.api.index(STREAM).segments]
    assert before == list(range(len(before))) and len(before) >= 3

    second = stack.publish(key, 7)
    stack.wait_status(STREAM, "LIVE")
    status, output = second.finish()
    assert status == 0, output
    stack.wait_status(STREAM, "OFFLINE")

    # The origin's window spans both publishes; each listed segment is the one signed.
    playlist, _ = stack.verify_listed(STREAM)
    resumed = len(before)
    assert resumed in {segment.sequence for segment in playlist.segments}
    index = stack.api.index(STREAM).segments
    assert [entry.sequence for entry in index] == list(range(len(index)))
    assert len(index) > resumed
    assert [entry.sequence for entry in index if entry.discontinuity] == [0, resumed]
    stack.verify_entries(STREAM, index)  # the first publish's segments are still on disk too

    history = stack.api.history(STREAM)
    assert [status for status, _ in history] == ["READY", "LIVE", "OFFLINE", "LIVE", "OFFLINE"]
    assert all(actor.startswith("ingest") for _, actor in history[1:])

    logs = stack.logs()
    assert '"path": "/api/v1/ingest/segments", "status": 409' not in logs
    assert "segment refused" not in logs and "numbering restarted" not in logs
    assert key not in logs
