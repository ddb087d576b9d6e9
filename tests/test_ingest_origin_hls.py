"""The origin serves standard live HLS, end to end (real nginx-rtmp, ffmpeg and coordinator): the
playlist parses with the `m3u8` package as a live media playlist of 2-second segments, ffprobe
reads H.264 video and AAC audio from the origin URL, the playlist's media sequence is the signed
index's numbering, and the cache and CORS headers are what players and caches need."""

from __future__ import annotations

import json
import subprocess

import m3u8
import pytest

from tests.stack import run_stack, wait_for

pytestmark = pytest.mark.timeout(120)

STREAM = "origin-hls"
WINDOW = 6  # the ingest's default playlist_segments
CORS = "access-control-allow-origin"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with run_stack(tmp_path_factory.mktemp("origin")) as stack:
        yield stack


def test_the_live_playlist_is_standard_hls_that_ffprobe_reads(stack):
    key = stack.api.create_stream(STREAM)
    publisher = stack.publish(key, 60)
    stack.wait_status(STREAM, "LIVE")
    # Warmed up: a full window that has begun to slide.
    wait_for(
        lambda: (listed := stack.playlist(STREAM)) and listed.media_sequence >= 1,
        "the playlist window slides",
        timeout_s=40,
    )

    url = f"{stack.ingest.origin_url}/hls/{STREAM}/index.m3u8"
    answer = stack.origin(f"/hls/{STREAM}/index.m3u8")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert answer.headers["cache-control"] == "no-cache"
    assert answer.headers[CORS] == "*"

    playlist = m3u8.loads(answer.text, uri=url)
    assert not playlist.is_variant and not playlist.is_endlist
    assert playlist.playlist_type is None  # live: neither EVENT nor VOD
    assert playlist.target_duration == 2
    assert isinstance(playlist.media_sequence, int) and playlist.media_sequence >= 1
    assert len(playlist.segments) >= WINDOW
    for segment in playlist.segments:
        assert segment.duration == pytest.approx(2.0, abs=0.1), segment.uri
        assert segment.duration <= playlist.target_duration + 0.5  # RFC 8216: rounds to it

    # The media sequence numbers are the signed index's: same numbers, same files.
    index = stack.attested(
        STREAM, {playlist.media_sequence + i for i in range(len(playlist.segments))}
    )
    entries = {entry.sequence: entry for entry in index.segments}
    for position, segment in enumerate(playlist.segments):
        assert entries[playlist.media_sequence + position].name == segment.uri

    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-rw_timeout",
            "10000000",
            "-show_entries",
            "stream=codec_type,codec_name",
            "-of",
            "json",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    streams = {(s["codec_type"], s["codec_name"]) for s in json.loads(probe.stdout)["streams"]}
    assert streams == {("video", "h264"), ("audio", "aac")}

    segment_url = f"/hls/{STREAM}/{playlist.segments[-1].uri}"
    segment = stack.origin(segment_url)
    assert segment.status_code == 200
    assert segment.headers["content-type"] == "video/mp2t"
    assert segment.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert segment.headers[CORS] == "*"
    assert "ETag" in segment.headers["access-control-expose-headers"]
    assert segment.content[0] == 0x47  # an MPEG-TS sync byte

    status, output = publisher.stop()
    assert status == 0, output
    stack.wait_status(STREAM, "OFFLINE")
    stack.verify_listed(STREAM)
