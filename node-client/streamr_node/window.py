"""The bounded window of verified segments a node serves, and the live playlist over it.

Only segments that matched their signed index entry ever enter the window. The playlist is
rendered once per change (not per request), with an ETag, so serving it costs a dict lookup.
Sequence numbers in the node's playlist are its own and always consecutive: they follow the
upstream's while it is continuous, and carry on (with ``#EXT-X-DISCONTINUITY``) across a gap, a
stream restart or a change of upstream, so a player never sees the media sequence go back.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections import deque
from dataclasses import dataclass, field

from streamr_protocol.attestation import SegmentEntry
from streamr_protocol.playlist import Segment as PlaylistSegment
from streamr_protocol.playlist import render


@dataclass(frozen=True, slots=True)
class Segment:
    """A verified segment, ready to serve."""

    name: str
    data: bytes
    entry: SegmentEntry  # the signed index entry it matched
    media_sequence: int  # this node's number for it
    discontinuity: bool
    etag: bytes = field(default=b"")

    @property
    def duration_ms(self) -> int:
        return self.entry.duration_ms


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    etag: bytes
    last_media_sequence: int  # of the newest listed segment; -1 when none


class SegmentWindow:
    def __init__(self, stream: str, *, list_size: int = 6, keep_extra: int = 6) -> None:
        self.stream = stream
        self.list_size = list_size
        self.keep = list_size + keep_extra
        self._segments: deque[Segment] = deque()
        self._by_name: dict[str, Segment] = {}
        self._next_media_sequence: int | None = None
        self._discontinuity_sequence = 0
        self._target_duration_s = 0
        self._pending_discontinuity = False
        self.ended = False
        self.version = 0
        self._rendered = Rendered(b"", b"", -1)
        self._changed = asyncio.Event()
        self._render()

    # ------------------------------------------------------------------ reading

    def get(self, name: str) -> Segment | None:
        return self._by_name.get(name)

    @property
    def playlist(self) -> Rendered:
        return self._rendered

    @property
    def segments(self) -> tuple[Segment, ...]:
        return tuple(self._segments)

    @property
    def listed(self) -> list[Segment]:
        return list(self._segments)[-self.list_size :]

    @property
    def newest_signed_sequence(self) -> int | None:
        return self._segments[-1].entry.sequence if self._segments else None

    @property
    def bytes_held(self) -> int:
        return sum(len(s.data) for s in self._segments)

    @property
    def target_duration_s(self) -> int:
        return self._target_duration_s

    async def wait_for(self, media_sequence: int, timeout_s: float) -> None:
        """Return once the playlist lists ``media_sequence`` or has ended, or on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._rendered.last_media_sequence < media_sequence and not self.ended:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            event = self._changed
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return

    # ------------------------------------------------------------------ changing

    def mark_discontinuity(self) -> None:
        """The next segment does not continue the previous one (gap, restart, new upstream)."""
        self._pending_discontinuity = True

    def raise_target_duration(self, seconds: int) -> None:
        # RFC 8216 4.3.3.1: the target duration must not change; it may only be set before the
        # first segment. Taking the largest value seen keeps every EXTINF within it.
        self._target_duration_s = max(self._target_duration_s, seconds)

    def append(self, name: str, data: bytes, entry: SegmentEntry, *, discontinuity: bool) -> None:
        if name in self._by_name:
            return
        restarted = self.ended
        if restarted:
            self._restart()
        first_ever = self._next_media_sequence is None
        if first_ever:
            self._next_media_sequence = entry.sequence
        discontinuity = not first_ever and (
            discontinuity or self._pending_discontinuity or restarted
        )
        self._pending_discontinuity = False
        segment = Segment(
            name=name,
            data=data,
            entry=entry,
            media_sequence=self._next_media_sequence,
            discontinuity=discontinuity,
            etag=b'"' + entry.sha256[:32].encode() + b'"',
        )
        self._next_media_sequence += 1
        self._segments.append(segment)
        self._by_name[name] = segment
        self.raise_target_duration(math.ceil(entry.duration_ms / 1000))
        # EXT-X-DISCONTINUITY-SEQUENCE counts the tags that have left the list (RFC 8216
        # 4.3.3.3); the segment that just left it is the one before the first listed.
        left = len(self._segments) - self.list_size - 1
        if left >= 0 and self._segments[left].discontinuity:
            self._discontinuity_sequence += 1
        while len(self._segments) > self.keep:
            dropped = self._segments.popleft()
            del self._by_name[dropped.name]
        self._changed_now()

    def end(self) -> None:
        """The stream ended: the playlist gets ``#EXT-X-ENDLIST`` and players stop reloading."""
        if not self.ended and self._segments:
            self.ended = True
            self._changed_now()

    def _restart(self) -> None:
        # A new broadcast after an ENDLIST: a fresh playlist (the ended one must not change,
        # RFC 8216 6.2.1) whose numbers still carry on from the old one.
        self._discontinuity_sequence += sum(1 for s in self.listed if s.discontinuity)
        self._segments.clear()
        self._by_name.clear()
        self.ended = False

    def _changed_now(self) -> None:
        self.version += 1
        self._render()
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def _render(self) -> None:
        listed = self.listed
        if not listed:
            self._rendered = Rendered(b"", b"", -1)
            return
        text = render(
            target_duration_s=max(self._target_duration_s, 1),
            media_sequence=listed[0].media_sequence,
            discontinuity_sequence=self._discontinuity_sequence,
            ended=self.ended,
            segments=[
                PlaylistSegment(
                    sequence=s.media_sequence,
                    uri=s.name,
                    duration_ms=s.duration_ms,
                    discontinuity=s.discontinuity,
                )
                for s in listed
            ],
        )
        body = text.encode()
        etag = b'"' + hashlib.sha256(body).hexdigest()[:24].encode() + b'"'
        self._rendered = Rendered(body, etag, listed[-1].media_sequence)
