"""Live HLS media playlists (RFC 8216), read as plain data and written back.

The origin watcher reads nginx-rtmp's playlists with ``parse``; friend nodes read their
upstream's with it and publish their own window with ``render``.

nginx-rtmp writes ``index.m3u8`` next to the segments it lists, replacing it atomically (write a
``.bak`` file, rename) after each fragment is closed. A segment is therefore complete as soon as
it appears in the playlist, and never before: the watcher reads nothing else to decide that.

Only what nginx-rtmp writes (and what RFC 8216 allows around it) is understood: the media
sequence, target duration, ``#EXTINF`` durations, ``#EXT-X-DISCONTINUITY`` and
``#EXT-X-ENDLIST``. Other tags are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation


class PlaylistError(ValueError):
    """The text is not a media playlist this module can trust."""


@dataclass(frozen=True)
class Segment:
    sequence: int  # media sequence number: EXT-X-MEDIA-SEQUENCE + position in the list
    uri: str  # as written, e.g. "12.ts"
    duration_ms: int  # EXTINF rounded to whole milliseconds
    discontinuity: bool  # an EXT-X-DISCONTINUITY tag precedes it


@dataclass(frozen=True)
class Playlist:
    media_sequence: int
    target_duration_s: int | None
    segments: tuple[Segment, ...]
    ended: bool

    @property
    def uris(self) -> frozenset[str]:
        return frozenset(segment.uri for segment in self.segments)


def duration_ms(text: str) -> int:
    """``"2.000"`` -> 2000, ``"3.9155"`` -> 3916: exact decimal arithmetic, no float drift."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise PlaylistError(f"EXTINF duration {text!r} is not a number") from None
    if not value.is_finite() or value < 0:
        raise PlaylistError(f"EXTINF duration {text!r} is not a non-negative number")
    return int((value * 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def parse(text: str) -> Playlist:
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
    lines = [line for line in lines if line]
    if not lines or lines[0] != "#EXTM3U":
        raise PlaylistError("a playlist starts with #EXTM3U")

    media_sequence = 0
    target: int | None = None
    ended = False
    segments: list[Segment] = []
    pending_duration: int | None = None
    pending_discontinuity = False

    for line in lines[1:]:
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            if segments or pending_duration is not None:
                raise PlaylistError("EXT-X-MEDIA-SEQUENCE must come before the first segment")
            media_sequence = _integer(line, "EXT-X-MEDIA-SEQUENCE")
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            target = _integer(line, "EXT-X-TARGETDURATION")
        elif line.startswith("#EXTINF:"):
            if pending_duration is not None:
                raise PlaylistError("two #EXTINF tags without a segment between them")
            pending_duration = duration_ms(line.removeprefix("#EXTINF:").split(",", 1)[0])
        elif line == "#EXT-X-DISCONTINUITY":
            pending_discontinuity = True
        elif line == "#EXT-X-ENDLIST":
            ended = True
        elif line.startswith("#"):
            continue  # other tags (VERSION, PLAYLIST-TYPE, ...) and comments
        else:
            if pending_duration is None:
                raise PlaylistError(f"segment {line!r} has no #EXTINF before it")
            segments.append(
                Segment(
                    sequence=media_sequence + len(segments),
                    uri=line,
                    duration_ms=pending_duration,
                    discontinuity=pending_discontinuity,
                )
            )
            pending_duration, pending_discontinuity = None, False

    if pending_duration is not None:
        raise PlaylistError("the last #EXTINF has no segment after it")
    return Playlist(media_sequence, target, tuple(segments), ended)


def _integer(line: str, tag: str) -> int:
    value = line.split(":", 1)[1].strip()
    if not value.isdigit():
        raise PlaylistError(f"{tag} {value!r} is not a non-negative integer")
    return int(value)


def render(
    *,
    target_duration_s: int,
    media_sequence: int,
    segments: Sequence[Segment],
    discontinuity_sequence: int = 0,
    ended: bool = False,
) -> str:
    """A live media playlist for ``segments`` (oldest first), following RFC 8216.

    ``media_sequence`` is the sequence number of the first listed segment; the numbers of the
    others are implied by their position, so the caller lists consecutive segments only.
    ``discontinuity_sequence`` counts the discontinuities that have left the list, so a player
    joining late still lines up timestamps across them (section 4.3.3.3).
    """
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{target_duration_s}",
        f"#EXT-X-MEDIA-SEQUENCE:{media_sequence}",
    ]
    if discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    for segment in segments:
        if segment.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(f"#EXTINF:{segment.duration_ms // 1000}.{segment.duration_ms % 1000:03d},")
        lines.append(segment.uri)
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"
