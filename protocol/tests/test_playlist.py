"""Reading nginx-rtmp's live playlists: sequence numbers, durations, discontinuities."""

from __future__ import annotations

import m3u8
import pytest

from streamr_protocol.playlist import PlaylistError, duration_ms, parse

# Written by Debian's nginx-rtmp 1.2.2 (hls_nested on, hls_continuous on) after a stream was
# published, stopped, and published again: numbering carried on at 8 with a discontinuity.
REPUBLISHED = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-MEDIA-SEQUENCE:6
#EXT-X-TARGETDURATION:2
#EXTINF:2.000,
6.ts
#EXTINF:1.979,
7.ts
#EXT-X-DISCONTINUITY
#EXTINF:1.920,
8.ts
#EXTINF:2.037,
9.ts
#EXTINF:2.000,
10.ts
#EXTINF:0.997,
11.ts
"""

# The first playlist of a stream: nginx-rtmp marks its very first segment as a discontinuity.
FIRST = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-TARGETDURATION:2\n" + (
    "#EXT-X-DISCONTINUITY\n#EXTINF:1.920,\n0.ts\n"
)


def test_sequences_follow_the_media_sequence_across_a_discontinuity():
    playlist = parse(REPUBLISHED)
    assert playlist.media_sequence == 6
    assert playlist.target_duration_s == 2
    assert [(s.sequence, s.uri) for s in playlist.segments] == [
        (6, "6.ts"),
        (7, "7.ts"),
        (8, "8.ts"),
        (9, "9.ts"),
        (10, "10.ts"),
        (11, "11.ts"),
    ]
    assert [s.discontinuity for s in playlist.segments] == [False, False, True, False, False, False]
    assert [s.duration_ms for s in playlist.segments] == [2000, 1979, 1920, 2037, 2000, 997]
    assert not playlist.ended
    assert playlist.uris == {f"{n}.ts" for n in range(6, 12)}


def test_first_segment_of_a_stream_carries_the_discontinuity():
    (segment,) = parse(FIRST).segments
    assert segment.sequence == 0 and segment.discontinuity and segment.duration_ms == 1920


@pytest.mark.parametrize("text", [REPUBLISHED, FIRST])
def test_agrees_with_the_m3u8_package(text):
    ours = parse(text)
    theirs = m3u8.loads(text)
    assert ours.media_sequence == theirs.media_sequence
    assert [s.uri for s in ours.segments] == [s.uri for s in theirs.segments]
    assert [s.discontinuity for s in ours.segments] == [s.discontinuity for s in theirs.segments]
    assert [s.duration_ms for s in ours.segments] == [
        round(s.duration * 1000) for s in theirs.segments
    ]


def test_sequence_jump_between_playlists_is_just_a_new_media_sequence():
    # The window slid by several segments between two reads (a slow reader): the numbers are
    # still exact, taken from EXT-X-MEDIA-SEQUENCE, not counted by the reader.
    later = REPUBLISHED.replace("MEDIA-SEQUENCE:6", "MEDIA-SEQUENCE:40")
    assert [s.sequence for s in parse(later).segments] == list(range(40, 46))


def test_crlf_titles_blank_lines_unknown_tags_and_endlist():
    text = (
        "#EXTM3U\r\n#EXT-X-MEDIA-SEQUENCE:3\r\n\r\n#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00Z\r\n"
        "#EXTINF:2.5,a title, with a comma\r\n3.ts\r\n#EXTINF:2,\r\n4.ts\r\n#EXT-X-ENDLIST\r\n"
    )
    playlist = parse(text)
    assert [(s.sequence, s.duration_ms) for s in playlist.segments] == [(3, 2500), (4, 2000)]
    assert playlist.ended


def test_empty_playlist_and_missing_media_sequence():
    assert parse("#EXTM3U\n#EXT-X-TARGETDURATION:2\n").segments == ()
    assert parse("#EXTM3U\n#EXTINF:2,\n0.ts\n").segments[0].sequence == 0


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "starts with #EXTM3U"),
        ("0.ts\n", "starts with #EXTM3U"),
        ("#EXTM3U\n0.ts\n", "no #EXTINF"),
        ("#EXTM3U\n#EXTINF:2,\n#EXTINF:2,\n0.ts\n", "two #EXTINF"),
        ("#EXTM3U\n#EXTINF:2,\n", "no segment after it"),
        ("#EXTM3U\n#EXTINF:abc,\n0.ts\n", "not a number"),
        ("#EXTM3U\n#EXTINF:-1,\n0.ts\n", "non-negative"),
        ("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:x\n", "not a non-negative integer"),
        ("#EXTM3U\n#EXTINF:2,\n0.ts\n#EXT-X-MEDIA-SEQUENCE:4\n", "before the first segment"),
    ],
)
def test_malformed_playlists_are_refused_with_a_reason(text, complaint):
    with pytest.raises(PlaylistError, match=complaint):
        parse(text)


@pytest.mark.parametrize(
    ("text", "ms"),
    [("2.000", 2000), ("1.9995", 2000), ("1.9994", 1999), ("0.0005", 1), ("3", 3000)],
)
def test_durations_round_to_whole_milliseconds_exactly(text, ms):
    assert duration_ms(text) == ms
