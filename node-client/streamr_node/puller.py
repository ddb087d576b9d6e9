"""Follows the upstream's live playlist and brings each new segment into the window, verified.

The upstream is the origin or a parent node (nodes form a tree). Each segment is fetched once,
with bounded concurrency, and checked against the coordinator's signed index before it enters
the window; an altered segment is never served: it is fetched again from the origin and the bad
upstream is reported. Errors back off exponentially; a parent node that keeps failing is
bypassed in favour of the origin until the coordinator assigns another.

A parent node holds a playlist request until it has something new (``?_HLS_msn=``, as in
low-latency HLS), so a second tier adds a fetch, not a polling interval, to the delay. The
origin (plain nginx) ignores the parameter and is polled every ``poll_interval_s``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from urllib.parse import urljoin

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from streamr_protocol.attestation import (
    AttestationError,
    SegmentEntry,
    SegmentIndex,
    verify_segment,
)
from streamr_protocol.nodes import Upstream
from streamr_protocol.playlist import Playlist, PlaylistError, parse
from streamr_protocol.usage import IntegrityFailure

from .window import SegmentWindow

# Jitter from a generator of our own: the process-wide one belongs to whoever embeds us
_jitter = random.Random()  # noqa: S311 - spreading, not secrecy

log = logging.getLogger("streamr_node.puller")

MAX_SEGMENT_BYTES = 64 * 1024 * 1024
ATTESTATION_WAIT_S = 10.0  # how long a listed segment may wait for its signed entry
BYPASS_PARENT_S = 60.0


class FetchError(Exception):
    pass


@dataclass
class PullerStats:
    playlists: int = 0
    segments_fetched: int = 0
    bytes_fetched: int = 0
    fetch_errors: int = 0
    integrity_failures: int = 0
    unattested_skipped: int = 0
    refetched_from_origin: int = 0
    last_error: str | None = None
    recent: list[dict[str, object]] = field(default_factory=list)  # newest segments' timings


class Puller:
    def __init__(
        self,
        *,
        stream: str,
        window: SegmentWindow,
        http: httpx.AsyncClient,
        coordinator_url: str,
        key: Ed25519PublicKey,
        upstream: Upstream,
        origin: Upstream,
        playlist_path: str,
        report_integrity_failure,
        max_fetches: int = 4,
        poll_interval_s: float = 0.2,
    ) -> None:
        self.stream = stream
        self.window = window
        self.http = http
        self.coordinator_url = coordinator_url.rstrip("/")
        self.key = key
        self.upstream = upstream
        self.origin = origin
        self.playlist_path = playlist_path
        self.report_integrity_failure = report_integrity_failure
        self.poll_interval_s = poll_interval_s
        self.stats = PullerStats()
        self._fetch_slots = asyncio.Semaphore(max_fetches)
        self._entries: OrderedDict[str, SegmentEntry] = OrderedDict()
        self._taken: OrderedDict[str, None] = OrderedDict()  # names fetched (or given up on)
        self._first_listed: dict[str, float] = {}  # name -> when we first saw it listed
        self._last_signed: int | None = None
        self._bypass_until = 0.0
        self._parent_failures = 0
        self._stream_live = True
        self._next_parent_msn = 0
        self._last_new_at = time.monotonic()

    # ------------------------------------------------------------------ control

    def assign(self, upstream: Upstream, origin: Upstream, *, live: bool) -> None:
        if (upstream.base_url, upstream.node_id) != (self.upstream.base_url, self.upstream.node_id):
            log.info(
                "upstream changed",
                extra={"stream": self.stream, "upstream": upstream.kind, "node": upstream.node_id},
            )
            self._parent_failures = 0
            self._bypass_until = 0.0
            self._next_parent_msn = 0  # another parent numbers its playlist its own way
        self.upstream, self.origin = upstream, origin
        self._stream_live = live

    @property
    def current(self) -> Upstream:
        if self.upstream.kind == "node" and time.monotonic() < self._bypass_until:
            return self.origin
        return self.upstream

    async def run(self) -> None:
        backoff = 0.0
        while True:
            upstream = self.current
            started = time.monotonic()
            try:
                playlist = await self._playlist(upstream)
                new = await self._take_new(playlist, upstream)
                backoff = 0.0
                if upstream.kind == "node":
                    self._parent_failures = 0
            except FetchError as exc:
                self.stats.fetch_errors += 1
                self._next_parent_msn = 0
                self.stats.last_error = str(exc)
                backoff = min(max(backoff * 2, 0.5), 10.0)
                self._upstream_failed(upstream, str(exc))
                # While the stream is off the air the origin has nothing: expected, not news.
                log.log(
                    logging.WARNING if self._stream_live else logging.DEBUG,
                    "upstream fetch failed",
                    extra={"stream": self.stream, "upstream": upstream.kind, "error": str(exc)},
                )
                if not self._stream_live:
                    backoff = max(backoff, 2.0)
                await asyncio.sleep(backoff * _jitter.uniform(0.8, 1.2))
                continue
            if new or (upstream.kind == "node" and time.monotonic() - started >= 0.5):
                continue  # a parent answered a held request: ask again at once
            await asyncio.sleep(self.poll_interval_s)

    # ------------------------------------------------------------------ one round

    async def _playlist(self, upstream: Upstream) -> Playlist:
        url = upstream.base_url.rstrip("/") + self.playlist_path
        params = {}
        if upstream.kind == "node" and self._next_parent_msn:
            params = {"_HLS_msn": str(self._next_parent_msn)}
        text = (await self._get(url, params=params, limit_s=15.0)).decode("utf-8", "replace")
        try:
            playlist = parse(text)
        except PlaylistError as exc:
            raise FetchError(f"the upstream playlist is not valid: {exc}") from None
        self.stats.playlists += 1
        if upstream.kind == "node":
            self._next_parent_msn = playlist.media_sequence + len(playlist.segments)
        return playlist

    async def _take_new(self, playlist: Playlist, upstream: Upstream) -> bool:
        if playlist.target_duration_s:
            self.window.raise_target_duration(playlist.target_duration_s)
        now = time.monotonic()
        new = [s for s in playlist.segments if s.uri not in self._taken]
        listed = {s.uri for s in new}
        # Forget segments that left the list before we could take them: memory stays bounded.
        self._first_listed = {k: v for k, v in self._first_listed.items() if k in listed}
        for segment in new:
            self._first_listed.setdefault(segment.uri, now)
        if new:
            base = upstream.base_url.rstrip("/") + self.playlist_path
            results = await asyncio.gather(
                *(self._fetch_verified(urljoin(base, s.uri), s.uri, upstream) for s in new)
            )
            for segment, result in zip(new, results, strict=True):
                if result is None:
                    if now - self._first_listed[segment.uri] < ATTESTATION_WAIT_S:
                        break  # keep order: try this one (and those after it) next round
                    self.stats.unattested_skipped += 1
                    self._remember_taken(segment.uri)
                    self.window.mark_discontinuity()
                    continue
                data, entry = result
                gap = self._last_signed is not None and entry.sequence != self._last_signed + 1
                self.window.append(
                    segment.uri,
                    data,
                    entry,
                    discontinuity=entry.discontinuity or segment.discontinuity or gap,
                )
                self._last_signed = entry.sequence
                self._remember_taken(segment.uri)
                self._record_timing(segment.uri, entry)
        if new:
            self._last_new_at = now
        finished = playlist.ended and all(s.uri in self._taken for s in playlist.segments)
        # The coordinator's word that the stream is off the air ends the playlist only once
        # segments have stopped coming too: its state may lag the origin by a refresh, and a
        # stream that is just starting must not have its window restarted at every segment.
        quiet_s = max(3 * self.window.target_duration_s, 6)
        gone_quiet = not self._stream_live and now - self._last_new_at > quiet_s
        if finished or gone_quiet:
            self.window.end()
        return bool(new)

    async def _fetch_verified(
        self, url: str, name: str, upstream: Upstream
    ) -> tuple[bytes, SegmentEntry] | None:
        """The segment's bytes and the entry they match; None when not attested yet."""
        entry = await self._entry(name)
        if entry is None:
            return None
        async with self._fetch_slots:
            try:
                data = await self._get(url, limit_s=30.0)
            except FetchError:
                if upstream.kind == "origin":
                    raise
                data = b""  # a parent that lost the segment: the origin has it
            try:
                verify_segment(self.key, self.stream, entry, data)
                return data, entry
            except AttestationError as exc:
                if data:  # empty: the parent did not have it, which is no integrity failure
                    self._integrity_failure(upstream, name, entry, str(exc))
            # Whatever the upstream sent is not served; the origin's copy is the streamer's.
            origin_url = urljoin(self.origin.base_url.rstrip("/") + self.playlist_path, name)
            data = await self._get(origin_url, limit_s=30.0)
            self.stats.refetched_from_origin += 1
            try:
                verify_segment(self.key, self.stream, entry, data)
            except AttestationError as exc:
                self._integrity_failure(self.origin, name, entry, str(exc))
                raise FetchError(f"segment {name} does not match its signed entry") from None
            return data, entry

    # ------------------------------------------------------------------ signed index

    async def _entry(self, name: str) -> SegmentEntry | None:
        entry = self._entries.get(name)
        if entry is not None:
            return entry
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        delay = 0.05
        while True:
            await self._refresh_index()
            entry = self._entries.get(name)
            if entry is not None or loop.time() >= deadline:
                return entry
            await asyncio.sleep(delay)  # the watcher's report may be a moment behind nginx
            delay = min(delay * 2, 0.5)

    async def _refresh_index(self) -> None:
        params = {"limit": "100"}
        if self._entries:
            params["since"] = str(next(reversed(self._entries.values())).sequence)
        url = f"{self.coordinator_url}/api/v1/streams/{self.stream}/segments"
        try:
            index = SegmentIndex.model_validate_json(await self._get(url, params=params))
        except ValueError as exc:
            raise FetchError(f"the signed index could not be read: {exc}") from None
        for entry in index.segments:
            self._entries[entry.name] = entry
        while len(self._entries) > 500:
            self._entries.popitem(last=False)

    # ------------------------------------------------------------------ helpers

    async def _get(self, url: str, *, params=None, limit_s: float = 10.0) -> bytes:
        try:
            async with self.http.stream("GET", url, params=params, timeout=limit_s) as response:
                if response.status_code != 200:
                    raise FetchError(f"HTTP {response.status_code} from {_where(url)}")
                chunks = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_SEGMENT_BYTES:
                        raise FetchError(f"{_where(url)} sent more than 64 MiB")
                    chunks.append(chunk)
                body = b"".join(chunks)
        except httpx.HTTPError as exc:
            raise FetchError(f"{type(exc).__name__} from {_where(url)}") from None
        self.stats.bytes_fetched += len(body)
        return body

    def _integrity_failure(
        self, upstream: Upstream, name: str, entry: SegmentEntry, reason: str
    ) -> None:
        self.stats.integrity_failures += 1
        log.warning(
            "segment from upstream failed verification; not served",
            extra={"stream": self.stream, "segment": name, "upstream_node": upstream.node_id},
        )
        self.report_integrity_failure(
            IntegrityFailure(
                upstream_url=upstream.base_url,
                upstream_node_id=upstream.node_id,
                segment=name,
                sequence=entry.sequence,
                reason=reason[:300],
            )
        )
        self._upstream_failed(upstream, reason)

    def _upstream_failed(self, upstream: Upstream, reason: str) -> None:
        if upstream.kind != "node":
            return
        self._parent_failures += 1
        if self._parent_failures >= 2:
            self._bypass_until = time.monotonic() + BYPASS_PARENT_S
            log.warning(
                "bypassing the parent node; pulling from the origin for a while",
                extra={"stream": self.stream, "upstream_node": upstream.node_id},
            )

    def _remember_taken(self, name: str) -> None:
        self._taken[name] = None
        self._first_listed.pop(name, None)
        while len(self._taken) > 200:
            self._taken.popitem(last=False)

    def _record_timing(self, name: str, entry: SegmentEntry) -> None:
        self.stats.segments_fetched += 1
        self.stats.recent.append(
            {"name": name, "sequence": entry.sequence, "servable_at": time.time()}
        )
        del self.stats.recent[:-20]


def _where(url: str) -> str:
    """A URL without its query: nothing secret is in ours, but logs stay short."""
    return url.split("?", 1)[0]
