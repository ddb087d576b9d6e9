"""A crashed origin watcher loses no attestation, end to end (real nginx-rtmp, ffmpeg and
coordinator).

The watcher is a task of the ingest's runner process, and nginx runs as that process's child
with PR_SET_PDEATHSIG: the watcher cannot die alone, and nginx cannot outlive it. So the crash
is staged in two steps: the runner is frozen (SIGSTOP) while the publisher keeps going — nginx
goes on cutting and listing segments that nobody attests — and then killed (SIGKILL), which
takes nginx and the publisher's connection with it. The ingest started again on the same work
directory must attest every segment listed during the gap, and nginx-rtmp must continue the
numbering from its playlist when the streamer reconnects.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.stack import log_events, run_stack, wait_for

pytestmark = pytest.mark.timeout(150)

STREAM = "watcher-crash"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with run_stack(tmp_path_factory.mktemp("crash")) as stack:
        yield stack


def signed(stack) -> set[int]:
    return {entry.sequence for entry in stack.api.index(STREAM).segments}


def test_segments_listed_while_the_watcher_was_down_are_attested_after_a_restart(stack):
    key = stack.api.create_stream(STREAM)
    listed = stack.record_listed(STREAM)
    publisher = stack.publish(key, 60)
    stack.wait_status(STREAM, "LIVE")
    stack.wait_listed(STREAM, 2)
    stack.attested(STREAM, set(listed.listed()))

    runner = stack.ingest.process
    nginx_pid = int((stack.ingest.work_dir / "nginx.pid").read_text())
    os.kill(runner.pid, signal.SIGSTOP)
    try:
        wait_for(
            lambda: len(set(listed.listed()) - signed(stack)) >= 2,
            "segments listed while the watcher is frozen",
        )
    finally:
        runner.kill()
        runner.wait(timeout=10)
    wait_for(lambda: not _alive(nginx_pid), "nginx exits with its runner", timeout_s=15)
    status, output = publisher.finish()
    assert status != 0, output  # the publisher's connection went down with nginx
    gap = set(listed.listed()) - signed(stack)
    assert len(gap) >= 2

    restarted = stack.start_ingest()
    stack.attested(STREAM, gap)
    # Nothing publishes now: the reconciler of the new ingest sets the stream OFFLINE (the
    # publish-done hook died with nginx). The streamer can then reconnect.
    stack.wait_status(STREAM, "OFFLINE", timeout_s=45)
    assert stack.api.history(STREAM)[-1] == ("OFFLINE", "ingest-sync")
    status, output = stack.publish(key, 6).finish()
    assert status == 0, output
    stack.wait_status(STREAM, "OFFLINE")

    stack.verify_listed(STREAM)
    index = stack.api.index(STREAM).segments
    assert [entry.sequence for entry in index] == list(range(len(index)))
    ever_listed = listed.listed()
    assert {entry.sequence: entry.name for entry in index} == ever_listed
    stack.verify_entries(STREAM, index)
    resumed = max(gap) + 1
    assert [entry.sequence for entry in index if entry.discontinuity] == [0, resumed]

    # The new watcher re-sent everything still listed; only the gap was new to the coordinator.
    resent = [
        event
        for event in log_events(restarted.log(), "segments registered")
        if event["last"] < resumed
    ]
    assert sum(event["accepted"] for event in resent) == len(gap)
    assert sum(event["known"] for event in resent) >= 1
    logs = stack.logs()
    assert '"path": "/api/v1/ingest/segments", "status": 409' not in logs
    assert "segment refused" not in logs and "numbering restarted" not in logs
    assert key not in logs


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
