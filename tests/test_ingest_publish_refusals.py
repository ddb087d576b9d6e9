"""Publish authentication end to end (real nginx-rtmp, ffmpeg and coordinator): a key publishes
exactly its own stream. A wrong key, a rotated key and another stream's key never put anything
of the targeted stream on the origin, never change its state, and never show up in a path or
a log line."""

from __future__ import annotations

import subprocess

import pytest

from streamr_ingest.testcard import ffmpeg_command
from tests.stack import Stack, run_stack, wait_for

pytestmark = pytest.mark.timeout(120)

TARGET = "refusal-target"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with run_stack(tmp_path_factory.mktemp("refusals")) as stack:
        yield stack


@pytest.fixture(scope="module")
def target_key(stack: Stack) -> str:
    return stack.api.create_stream(TARGET)


def assert_nothing_served(stack: Stack, *keys: str) -> None:
    """The target is READY, has no playlist, no segment and no attestation; no key names a path."""
    assert stack.api.status(TARGET) == "READY"
    assert stack.origin(f"/hls/{TARGET}/index.m3u8").status_code == 404
    assert stack.origin(f"/hls/{TARGET}/0.ts").status_code == 404
    assert stack.api.index(TARGET).segments == []
    published = {path.name for path in stack.ingest.hls_dir.iterdir()}
    assert TARGET not in published
    for key in keys:
        assert stack.origin(f"/hls/{key}/index.m3u8").status_code == 404
        assert all(key not in name for name in published)


def assert_never_logged(stack: Stack, *keys: str) -> None:
    logs = stack.logs()
    for key in keys:
        assert key not in logs


def answers(stack: Stack, hook: str, status: int) -> int:
    """How often the coordinator has answered the ingest's ``hook`` with ``status``."""
    return stack.coordinator.log().count(
        f'"path": "/api/v1/ingest/hooks/{hook}", "status": {status}'
    )


def assert_answered(stack: Stack, hook: str, status: int, count: int) -> None:
    # The access log line is written just after the answer went out.
    wait_for(lambda: answers(stack, hook, status) == count, f"{hook} answered {status}", 5)


def assert_refused(stack: Stack, key: str) -> None:
    """ffmpeg fails, without showing the key, because the coordinator refused the key (403)."""
    before = answers(stack, "authorize", 403)
    status, output = stack.publish(key, 4).finish()
    assert status != 0, output
    assert key not in output
    assert_answered(stack, "authorize", 403, before + 1)


def test_a_wrong_key_is_refused(stack, target_key):
    wrong = "sk_" + "w" * 43
    assert_refused(stack, wrong)
    assert_nothing_served(stack, wrong)
    assert_never_logged(stack, wrong, target_key)


def test_the_old_key_is_refused_after_a_rotation(stack, target_key):
    new_key = stack.api.rotate_key(TARGET)
    assert new_key != target_key
    assert_refused(stack, target_key)
    assert_nothing_served(stack, target_key, new_key)
    assert_never_logged(stack, target_key, new_key)


def test_another_streams_key_publishes_that_stream_only(stack, target_key):
    other = "refusal-other"
    other_key = stack.api.create_stream(other)

    # Another stream's key, sent as a parameter under the target's name: the name is what is
    # checked as the key, and it is not one.
    card = ffmpeg_command(
        f"{stack.ingest.rtmp_url}/{TARGET}?key={other_key}", seconds=4, size="320x180"
    )
    before = answers(stack, "authorize", 403)
    refused = subprocess.run(card, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert_answered(stack, "authorize", 403, before + 1)
    assert_nothing_served(stack, other_key)
    assert stack.api.status(other) == "READY"

    # The key itself as the stream name, as OBS sends it: the other stream goes live, the target
    # does not.
    publisher = stack.publish(other_key, 8)
    stack.wait_status(other, "LIVE")
    stack.wait_listed(other, 1)
    assert stack.api.status(TARGET) == "READY"
    status, output = publisher.finish()
    assert status == 0, output
    stack.wait_status(other, "OFFLINE")
    stack.verify_listed(other)

    assert_nothing_served(stack, other_key)
    assert [status for status, _ in stack.api.history(TARGET)] == ["READY"]  # its creation
    assert {path.name for path in stack.ingest.hls_dir.iterdir()} == {other}
    assert_never_logged(stack, other_key, target_key)


def test_publishing_straight_to_the_hls_application_is_refused(stack, target_key):
    """The HLS application takes publishers from 127.0.0.1 only (the relay); a local program
    that publishes there under the target's name, without the key, is refused as well."""
    hls_url = f"rtmp://127.0.0.1:{stack.ingest.rtmp_port}/hls"
    before = answers(stack, "publish", 403)
    status, output = stack.publish(TARGET, 4, rtmp_url=hls_url).finish()
    assert status != 0, output
    assert_answered(stack, "publish", 403, before + 1)
    assert_nothing_served(stack)
