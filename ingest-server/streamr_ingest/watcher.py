"""The origin watcher: every finished segment is hashed once and reported to the coordinator.

nginx-rtmp lists a segment in ``<hls_dir>/<stream>/index.m3u8`` only after it has closed the
file, so the watcher decides "finished" from the playlist alone and never opens a file that is
not listed (it could still be growing). Playlists are polled with a cheap ``stat`` every
``poll_interval_s``; only a changed playlist is read.

Reports are sent in batches per stream and retried with capped exponential backoff until the
coordinator has them. The coordinator treats a repeated report of the same segment as a no-op,
so a watcher that starts (or restarts after a crash) simply reports every segment still listed:
nothing that was listed is ever lost.

Retention is the watcher's job too (nginx-rtmp's own cleanup is off, see nginx.conf): a segment
file is deleted ``retention_s`` after it left its playlist. Playlists are never deleted: nginx-rtmp
continues a stream's numbering from them when it is published again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from streamr_protocol.ingest import STREAM_NAME_PATTERN, SegmentReport
from streamr_protocol.playlist import Playlist, PlaylistError, parse

from .coordinator_client import CoordinatorClient, CoordinatorRefused, CoordinatorUnavailable

log = logging.getLogger("streamr.ingest.watcher")

PLAYLIST = "index.m3u8"
SEGMENT_FILE = re.compile(r"^[0-9]+\.ts$")
STREAM_NAME = re.compile(STREAM_NAME_PATTERN)
# The coordinator refuses bodies over 64 KiB; a report is about 200 bytes, so 200 stay well below.
MAX_BATCH = 200
PRUNE_EVERY_S = 1.0


@dataclass
class _Stream:
    name: str
    signature: tuple[int, int, int] | None = None
    highest: int = -1  # highest sequence found so far
    found: set[int] = field(default_factory=set)  # listed sequences already hashed and queued
    listed: frozenset[str] = frozenset()
    unlisted_since: dict[str, float] = field(default_factory=dict)
    last_prune: float = float("-inf")
    warned: bool = False


@dataclass
class _Pending:
    report: SegmentReport
    listed_at: float  # wall clock time nginx wrote the playlist that first listed it


class SegmentRegistrar:
    """Sends segment reports to the coordinator in batches, retrying until each is accepted."""

    def __init__(
        self,
        client: CoordinatorClient,
        max_batch: int = MAX_BATCH,
        backoff_s: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        self._client = client
        self._max_batch = max_batch
        self._backoff_min, self._backoff_max = backoff_s
        self._pending: dict[str, list[_Pending]] = {}
        self._work = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._unavailable_since: float | None = None
        self._unknown_streams: set[str] = set()

    @property
    def pending(self) -> int:
        return sum(len(items) for items in self._pending.values())

    def submit(self, report: SegmentReport, listed_at: float) -> None:
        self._pending.setdefault(report.stream, []).append(_Pending(report, listed_at))
        self._idle.clear()
        self._work.set()

    async def drained(self, timeout_s: float) -> bool:
        """Wait until everything submitted has been sent (or given up); False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        delay = self._backoff_min
        while True:
            await self._work.wait()
            try:
                await self._send_all()
            except CoordinatorUnavailable as exc:
                if self._unavailable_since is None:
                    self._unavailable_since = time.monotonic()
                    log.warning(
                        "segment reports held back; retrying",
                        extra={"reason": str(exc), "pending": self.pending},
                    )
                wait = exc.retry_after_s if exc.retry_after_s is not None else delay
                await asyncio.sleep(wait * random.uniform(0.8, 1.2))  # noqa: S311 - jitter
                delay = min(delay * 2, self._backoff_max)
                continue
            delay = self._backoff_min
            if self._unavailable_since is not None:
                log.info(
                    "segment reports flowing again",
                    extra={"outage_s": round(time.monotonic() - self._unavailable_since, 3)},
                )
                self._unavailable_since = None
            if not self._pending:
                self._work.clear()
                self._idle.set()

    async def _send_all(self) -> None:
        for stream in list(self._pending):
            while self._pending.get(stream):
                batch = self._pending[stream][: self._max_batch]
                await self._send(stream, batch)
                remaining = self._pending[stream][len(batch) :]
                if remaining:
                    self._pending[stream] = remaining
                else:
                    del self._pending[stream]

    async def _send(self, stream: str, batch: list[_Pending]) -> None:
        try:
            result = await self._client.report_segments([item.report for item in batch])
        except CoordinatorRefused as exc:
            if exc.status == 413 and len(batch) > 1:
                half = len(batch) // 2
                await self._send(stream, batch[:half])
                await self._send(stream, batch[half:])
            elif exc.status == 409 and len(batch) > 1:
                # One of them reuses a sequence number the coordinator knows with another hash;
                # sending them one by one keeps the others.
                for item in batch:
                    await self._send(stream, [item])
            else:
                self._give_up(stream, batch, exc)
            return
        lag_ms = round((time.time() - min(item.listed_at for item in batch)) * 1000)
        self._unknown_streams.discard(stream)
        log.info(
            "segments registered",
            extra={
                "stream": stream,
                "first": batch[0].report.sequence,
                "last": batch[-1].report.sequence,
                "accepted": result.accepted,
                "known": result.known,
                "lag_ms": lag_ms,
            },
        )

    def _give_up(self, stream: str, batch: list[_Pending], exc: CoordinatorRefused) -> None:
        sequences = [item.report.sequence for item in batch]
        if exc.status == 404:
            if stream not in self._unknown_streams:
                self._unknown_streams.add(stream)
                log.warning(
                    "the coordinator knows no such stream; its segments are not attested",
                    extra={"stream": stream, "reason": exc.message},
                )
            return
        if exc.status == 409:
            log.error(
                "segment refused: its sequence number is already registered with other content",
                extra={"stream": stream, "sequence": sequences[0], "reason": exc.message},
            )
            return
        log.error(
            "segment report refused",
            extra={
                "stream": stream,
                "sequences": sequences,
                "status": exc.status,
                "reason": exc.message,
            },
        )


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def digest(path: Path) -> tuple[int, str]:
    """(size, SHA-256 hex) of a whole file, read in one pass."""
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


class OriginWatcher:
    """Finds finished segments in nginx-rtmp's HLS directory and hands them to the registrar."""

    def __init__(
        self,
        hls_dir: Path,
        registrar: SegmentRegistrar,
        poll_interval_s: float = 0.05,
        retention_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hls_dir = hls_dir
        self.registrar = registrar
        self.poll_interval_s = poll_interval_s
        self.retention_s = retention_s
        self._clock = clock
        self._streams: dict[str, _Stream] = {}

    async def run(self) -> None:
        while True:
            await self.scan()
            await asyncio.sleep(self.poll_interval_s)

    async def scan(self) -> int:
        """One pass over every stream directory; returns how many new segments were found."""
        found = 0
        try:
            entries = list(os.scandir(self.hls_dir))
        except FileNotFoundError:
            return 0
        for entry in entries:
            if not STREAM_NAME.match(entry.name) or not entry.is_dir(follow_symlinks=False):
                continue
            state = self._streams.get(entry.name)
            if state is None:
                state = self._streams[entry.name] = _Stream(entry.name)
            found += await self._check_playlist(state, Path(entry.path))
            now = self._clock()
            if now - state.last_prune >= PRUNE_EVERY_S:
                state.last_prune = now
                self._prune(state, Path(entry.path), now)
        return found

    async def _check_playlist(self, state: _Stream, directory: Path) -> int:
        path = directory / PLAYLIST
        try:
            st = path.stat()
            if _signature(st) == state.signature:
                return 0  # the common case: one stat, nothing read
            # nginx may replace the playlist between a stat and a read; the descriptor's own
            # fstat describes exactly the text read from it.
            with path.open("rb") as handle:
                st = os.fstat(handle.fileno())
                text = handle.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return 0
        try:
            playlist = parse(text)
        except PlaylistError as exc:
            # nginx-rtmp replaces the playlist atomically, so this is not a half-written file;
            # the signature stays unset, to look again on the next pass.
            if not state.warned:
                state.warned = True
                log.warning("playlist unreadable", extra={"stream": state.name, "reason": str(exc)})
            return 0
        state.warned = False
        state.signature = _signature(st)
        return await self._take(state, directory, playlist, st.st_mtime_ns / 1e9)

    async def _take(
        self, state: _Stream, directory: Path, playlist: Playlist, listed_at: float
    ) -> int:
        if playlist.segments and playlist.segments[-1].sequence < state.highest:
            # Numbering started again (the playlist was removed while the stream was away):
            # these are new segments that happen to reuse old numbers.
            log.warning(
                "segment numbering restarted",
                extra={
                    "stream": state.name,
                    "was": state.highest,
                    "now": playlist.segments[-1].sequence,
                },
            )
            state.found.clear()
            state.highest = -1
        state.listed = playlist.uris
        listed_sequences = {segment.sequence for segment in playlist.segments}
        state.found &= listed_sequences  # forget what left the list: memory stays bounded
        new = 0
        for segment in playlist.segments:
            if segment.sequence in state.found:
                continue
            state.found.add(segment.sequence)
            state.highest = max(state.highest, segment.sequence)
            try:
                size, sha256 = await asyncio.to_thread(digest, directory / segment.uri)
            except FileNotFoundError:
                log.warning(
                    "listed segment is missing on disk",
                    extra={"stream": state.name, "sequence": segment.sequence},
                )
                continue
            self.registrar.submit(
                SegmentReport(
                    stream=state.name,
                    sequence=segment.sequence,
                    name=segment.uri,
                    duration_ms=segment.duration_ms,
                    size=size,
                    sha256=sha256,
                    discontinuity=segment.discontinuity,
                ),
                listed_at,
            )
            new += 1
        return new

    def _prune(self, state: _Stream, directory: Path, now: float) -> None:
        """Delete segment files that left the playlist at least ``retention_s`` ago."""
        if state.signature is None:
            return  # no playlist read yet: every file might still be listed
        present: set[str] = set()
        try:
            names = [e.name for e in os.scandir(directory) if SEGMENT_FILE.match(e.name)]
        except FileNotFoundError:
            return
        for name in names:
            if name in state.listed:
                state.unlisted_since.pop(name, None)
                continue
            present.add(name)
            since = state.unlisted_since.setdefault(name, now)
            if now - since >= self.retention_s:
                with contextlib.suppress(FileNotFoundError):
                    (directory / name).unlink()
                present.discard(name)
                log.debug("segment deleted", extra={"stream": state.name, "file": name})
        for name in set(state.unlisted_since) - present:
            del state.unlisted_since[name]
