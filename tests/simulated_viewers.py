"""Simulated viewers: async HLS clients that do what the watch page's loader does
(coordinator/streamr_coordinator/viewers/static/*.js), for benchmarks and end-to-end tests that
need many viewers, or viewers whose every fetch is checked, without a browser each.

A viewer:

* opens a viewer session (``POST /api/v1/streams/<stream>/sessions``);
* follows the live playlist as the page does, from the coordinator's signed index
  (``GET /api/v1/streams/<stream>/segments``; every entry's Ed25519 signature is checked),
  starting three segments behind the live edge like hls.js (``liveSyncDurationCount: 3``) and
  then fetching each new segment once it is listed, in real time;
* fetches each segment from its sources in order — the first node (with the session token as
  ``?session=``), the other nodes, the origin last — with the page's rules: a node's 404 is
  asked again 4 times 300 ms apart, no first byte or no progress for 3 s or longer than twice
  the segment's duration is a stall, and a node that failed is skipped for 30 s; the bytes
  must match the signed entry (size and SHA-256) or they count as a mismatch;
* asks for its sources every ``refresh_s`` (``GET /api/v1/sessions/{id}/sources``) and sends
  receipts in batches (every 5 s, 10 receipts, or at once for a failure), as the page does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from streamr_protocol.attestation import SegmentEntry, verify_entry


class ViewerFailed(Exception):
    """A viewer could not watch at all (no session, an empty index): the run is void."""


# The watch page's loader (viewers/static/loader.js, sources.js, receipts.js).
FIRST_BYTE_S = 3.0
PROGRESS_S = 3.0
NOT_YET_RETRIES = 4
NOT_YET_WAIT_S = 0.3
ROUND_WAIT_S = 1.0
LOAD_BUDGET_S = 20.0
FAILED_NODE_PAUSE_S = 30.0
LIVE_SYNC_SEGMENTS = 3
FIRST_PLAYLIST = 6
RECEIPTS_EVERY_S = 5.0
RECEIPTS_AT = 10


@dataclass
class Fetch:
    """One GET of one segment from one source."""

    done_at: float  # time.monotonic()
    kind: str  # "node" or "origin"
    node_id: str | None
    sequence: int
    bytes: int  # body bytes received, whatever the outcome
    outcome: str  # ok, mismatch, error, stall
    seconds: float


@dataclass
class Swarm:
    coordinator: str  # base URL
    stream: str
    key: Ed25519PublicKey
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    fetches: list[Fetch] = field(default_factory=list)
    missed: list[tuple[int, int]] = field(default_factory=list)  # (viewer, sequence)
    first_source: Counter[str] = field(default_factory=Counter)  # node id or "origin"
    receipts_stored: int = 0
    receipts_refused: int = 0


class Viewer:
    def __init__(self, number: int, swarm: Swarm) -> None:
        self.number = number
        self.swarm = swarm
        self.base = swarm.coordinator
        self.stream = swarm.stream
        self.session: dict[str, Any] = {}
        self.sources: list[dict[str, Any]] = []
        self.refresh_s = 2.0
        self.skip_until: dict[str, float] = {}
        self.receipts: list[dict[str, Any]] = []
        self.pending: dict[str, Any] | None = None
        self.urgent = asyncio.Event()

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
        async with httpx.AsyncClient(limits=limits, timeout=10) as self.http:
            opened = await self.http.post(f"{self.base}/api/v1/streams/{self.stream}/sessions")
            if opened.status_code != 201:
                raise ViewerFailed(f"viewer {self.number}: no session: {opened.text}")
            self.session = opened.json()
            self.sources = self.session["sources"]
            first = self.sources[0]
            self.swarm.first_source[first["node_id"] or "origin"] += 1
            helpers = [
                asyncio.create_task(self._follow_sources()),
                asyncio.create_task(self._send_receipts()),
            ]
            try:
                await self._play()
            finally:
                for task in helpers:
                    task.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)
                with contextlib.suppress(httpx.HTTPError):
                    await self._flush()

    # -- the playlist, from the signed index

    async def _index(self, **params: object) -> list[SegmentEntry]:
        answer = await self.http.get(
            f"{self.base}/api/v1/streams/{self.stream}/segments", params=params
        )
        answer.raise_for_status()
        entries = [SegmentEntry(**entry) for entry in answer.json()["segments"]]
        for entry in entries:
            verify_entry(self.swarm.key, self.stream, entry)  # AttestationError: a failed run
        return entries

    async def _play(self) -> None:
        entries = await self._index(limit=FIRST_PLAYLIST)
        if not entries:
            raise ViewerFailed(f"viewer {self.number}: the signed index is empty")
        queue = entries[-LIVE_SYNC_SEGMENTS:]
        last = entries[-1].sequence
        while not self.swarm.stop.is_set():
            while queue and not self.swarm.stop.is_set():
                await self._fetch_segment(queue.pop(0))
            grew = False
            while not grew and not self.swarm.stop.is_set():
                # hls.js reloads a live playlist after a target duration when it changed,
                # after half of one when it did not.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.swarm.stop.wait(), 1.0)
                try:
                    new = await self._index(since=last, limit=100)
                except httpx.HTTPError:
                    continue
                if new:
                    queue += new
                    last = new[-1].sequence
                    grew = True

    # -- segments, from the sources in order

    def _ordered(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            s
            for s in self.sources
            if s["kind"] == "origin" or self.skip_until.get(s["node_id"], 0.0) <= now
        ]

    async def _fetch_segment(self, entry: SegmentEntry) -> None:
        give_up = time.monotonic() + LOAD_BUDGET_S
        while time.monotonic() < give_up and not self.swarm.stop.is_set():
            for source in self._ordered():
                fetch = await self._fetch_from(source, entry)
                self.swarm.fetches.append(fetch)
                self._receipt(source, entry, fetch)
                if fetch.outcome == "ok":
                    return
                if source["kind"] == "node":
                    pause = math.inf if fetch.outcome == "mismatch" else FAILED_NODE_PAUSE_S
                    self.skip_until[source["node_id"]] = time.monotonic() + pause
            await asyncio.sleep(ROUND_WAIT_S)
        if not self.swarm.stop.is_set():
            self.swarm.missed.append((self.number, entry.sequence))

    async def _fetch_from(self, source: dict[str, Any], entry: SegmentEntry) -> Fetch:
        url = f"{source['base_url']}/hls/{self.stream}/{entry.name}"
        params = {"session": self.session["token"]} if source["kind"] == "node" else {}
        for attempt in range(NOT_YET_RETRIES + 1):
            started = time.monotonic()
            outcome, size = await self._get(url, params, entry)
            retry = outcome == "not-yet" and source["kind"] == "node"
            if not retry or attempt == NOT_YET_RETRIES or self.swarm.stop.is_set():
                break
            await asyncio.sleep(NOT_YET_WAIT_S)
        return Fetch(
            done_at=time.monotonic(),
            kind=source["kind"],
            node_id=source["node_id"],
            sequence=entry.sequence,
            bytes=size,
            outcome="error" if outcome == "not-yet" else outcome,
            seconds=time.monotonic() - started,
        )

    async def _get(self, url: str, params: dict[str, str], entry: SegmentEntry) -> tuple[str, int]:
        timeout = httpx.Timeout(FIRST_BYTE_S, read=PROGRESS_S)
        received = 0
        try:
            async with asyncio.timeout(max(4.0, 2 * entry.duration_ms / 1000)):
                request = self.http.stream("GET", url, params=params, timeout=timeout)
                async with request as response:
                    if response.status_code != 200:
                        return ("not-yet" if response.status_code == 404 else "error"), 0
                    digest = hashlib.sha256()
                    async for chunk in response.aiter_raw():
                        received += len(chunk)
                        if received > entry.size:
                            return "mismatch", received
                        digest.update(chunk)
        except (TimeoutError, httpx.TimeoutException):
            return "stall", received
        except httpx.HTTPError:
            return "error", received
        if received != entry.size or digest.hexdigest() != entry.sha256:
            return "mismatch", received
        return "ok", received

    # -- what the page sends back: sources, receipts

    async def _follow_sources(self) -> None:
        path = f"{self.base}/api/v1/sessions/{self.session['session_id']}/sources"
        headers = {"X-Streamr-Session": self.session["token"]}
        while True:
            await asyncio.sleep(self.refresh_s)
            with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                answer = await self.http.get(path, headers=headers)
                if answer.status_code == 200:
                    body = answer.json()
                    self.sources = body["sources"]
                    self.refresh_s = max(0.5, float(body["refresh_s"]))

    def _receipt(self, source: dict[str, Any], entry: SegmentEntry, fetch: Fetch) -> None:
        self.receipts.append(
            {
                "source_kind": source["kind"],
                "node_id": source["node_id"] if source["kind"] == "node" else None,
                "segment": entry.name,
                "sequence": entry.sequence,
                "bytes": fetch.bytes,
                "ttfb_ms": None,
                "download_ms": min(600_000, round(fetch.seconds * 1000)),
                "outcome": fetch.outcome,
            }
        )
        if fetch.outcome != "ok" or len(self.receipts) >= RECEIPTS_AT:
            self.urgent.set()

    async def _send_receipts(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.urgent.wait(), RECEIPTS_EVERY_S)
            self.urgent.clear()
            with contextlib.suppress(httpx.HTTPError):
                await self._flush()

    async def _flush(self) -> None:
        while self.pending is not None or self.receipts:
            if self.pending is None:
                batch, self.receipts = self.receipts[:100], self.receipts[100:]
                self.pending = {"batch_id": uuid.uuid4().hex, "receipts": batch}
            answer = await self.http.post(
                f"{self.base}/api/v1/sessions/{self.session['session_id']}/receipts",
                json=self.pending,
                headers={"X-Streamr-Session": self.session["token"]},
            )
            if answer.status_code == 429 or answer.status_code >= 500:
                return  # the same batch goes again later
            if answer.status_code == 200:
                ack = answer.json()
                self.swarm.receipts_stored += 0 if ack["duplicate"] else ack["receipts"]
            else:
                self.swarm.receipts_refused += len(self.pending["receipts"])
            self.pending = None
