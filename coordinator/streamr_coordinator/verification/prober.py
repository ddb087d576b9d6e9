"""The spot-check prober: it watches a node for a little while exactly as a viewer's page does,
and checks every byte against the signed segment index.

A probe is a viewer session in every way a node can observe:

- it is opened by the same service function as a viewer's (``open_session``); the token has the
  same form and claims, and only the session's row says ``is_probe`` (never sent anywhere);
- segments are fetched from the node's public URL with the page's path and query
  (``/hls/<stream>/<segment>?session=<token>``), the headers a browser sends for the page's
  ``fetch(url, {mode: "cors", credentials: "omit"})`` (User-Agent, Origin of the watch page,
  Accept, Accept-Language, Accept-Encoding, Sec-Fetch-* and client hints where a browser sends
  them, in a browser's order; one of a few common browser profiles per session), and no Referer
  (the page's Referrer-Policy is ``same-origin``);
- it starts near the live edge as hls.js does, fetches a few segments in a row on one kept-alive
  connection, follows new segments as they appear, asks the coordinator for its sources and
  sends receipts like the page (the node never sees those calls), then goes away as a viewer
  who stops watching;
- a segment whose fetch fails (error or timeout) is asked once more on the same session about a
  second later, as hls.js retries a fragment; only that second answer is judged (trust), both are
  recorded and receipted. A mismatch is never asked again;
- when it happens is random: per node, exponential inter-arrival times (a Poisson process with
  mean ``probe_interval_s``) from the operating system's randomness, so the past says nothing
  about the next probe.

What is left for a node to tell: the address a probe comes from (in production the prober
should egress from addresses viewers also use, e.g. the same mobile and residential ranges, or
through the same CDN edge as the watch page), TLS and TCP fingerprints of the HTTP client,
that a probe never plays more than ``probe_segments`` segments, and that after a failed fetch a
probe asks the same node again where a page would go on to its next source (a node sees that
only after failing a fetch, and what it does to viewers that way shows in their receipts).
None of these is visible per request to a node that must serve every viewer well, and every
probe also pays (its receipts count like any viewer's), so serving "only probes well" means
serving everyone well.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from streamr_protocol.receipts import Receipt, ReceiptBatch
from streamr_protocol.viewer_sessions import SessionClaims

from ..attestation.models import Segment
from ..context import AppContext
from ..database import utcnow
from ..nodes.models import Node
from ..nodes.relays import RelayCandidate, relay_candidates
from ..streams.lifecycle import ON_AIR, on_air
from ..streams.models import Stream
from ..viewers.receipts import record_receipts
from ..viewers.service import open_session, session_sources
from .models import Probe

log = logging.getLogger("streamr.verification")

_random = random.SystemRandom()  # probe times must not be predictable from earlier ones

WINDOW = 6  # segments the page's index starts with (segment-index.js)
LIVE_EDGE_SEGMENTS = 3  # hls.js liveSyncDurationCount: playback starts this far from the edge
SOURCES_EVERY_S = 2.0  # the page asks for its sources this often
RECEIPTS_EVERY_S = 5.0  # ...and sends receipts this often
DB_POLL_S = 0.5  # how often a probe looks for the stream's next segment while following


@dataclass(frozen=True)
class Timings:
    """The page's limits (loader.js): a fetch that breaks them is a stall (``timeout``)."""

    first_byte_s: float = 3.0
    progress_s: float = 3.0
    min_deadline_s: float = 4.0  # whole segment within max(this, 2 x its duration)
    not_yet_retries: int = 4  # a node's 404 for a new segment is asked again this often...
    not_yet_wait_s: float = 0.3  # ...this far apart, then it is ``missing``
    # An error or a timeout is asked again once, this long after (the page's ROUND_WAIT_MS,
    # hls.js's fragment retry), before it is judged: a lost packet is not the node's doing.
    retry_wait_s: float = 1.0


@dataclass(frozen=True)
class SignedSegment:
    sequence: int
    name: str
    size: int
    sha256: str
    duration_ms: int


@dataclass(frozen=True)
class Fetch:
    """One segment fetched by a probe, as it is recorded."""

    segment: SignedSegment
    started_at: datetime
    outcome: str  # ok | mismatch | error | timeout | missing
    bytes: int
    ttfb_ms: int | None
    duration_ms: int | None
    detail: str = ""
    retried: tuple[Fetch, ...] = ()  # earlier attempts of this segment that failed

    @property
    def attempts(self) -> int:
        return 1 + len(self.retried)

    @property
    def record_detail(self) -> str:
        """What the row says: every attempt, the judged one last."""
        earlier = "; ".join(
            f"attempt {i}: {f.outcome}" + (f" ({f.detail})" if f.detail else "")
            for i, f in enumerate(self.retried, 1)
        )
        if not earlier:
            return self.detail
        return f"{earlier}; attempt {self.attempts}: {self.outcome}" + (
            f" ({self.detail})" if self.detail else ""
        )

    @property
    def throughput_bps(self) -> int | None:
        if self.outcome != "ok" or not self.duration_ms:
            return None
        return self.bytes * 8 * 1000 // self.duration_ms

    @property
    def receipt_outcome(self) -> str:
        """What the page would have reported."""
        return {"ok": "ok", "mismatch": "mismatch", "timeout": "stall"}.get(self.outcome, "error")


# Browser profiles: header names, values and order as the browser sends them for the page's
# fetch. ``{origin}`` is the watch page's origin; ``{site}`` same-site or cross-site. Sec-Fetch-*
# and client hints go only to potentially trustworthy URLs (https, localhost), as browsers do.
_CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
_CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
_FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
_CHROME_HINTS = '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"'


@dataclass(frozen=True)
class BrowserProfile:
    name: str
    headers: tuple[tuple[str, str], ...]  # (name, value); value may hold {origin} and {site}
    secure_only: frozenset[str] = field(default_factory=frozenset)  # names sent only to https


_CHROME_SECURE = frozenset(
    {"sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform", "Sec-Fetch-Site", "Sec-Fetch-Mode",
     "Sec-Fetch-Dest"}
)  # fmt: skip

PROFILES = (
    BrowserProfile(
        "chrome-windows",
        (
            ("Connection", "keep-alive"),
            ("sec-ch-ua-platform", '"Windows"'),
            ("User-Agent", _CHROME_WINDOWS),
            ("sec-ch-ua", _CHROME_HINTS),
            ("sec-ch-ua-mobile", "?0"),
            ("Accept", "*/*"),
            ("Origin", "{origin}"),
            ("Sec-Fetch-Site", "{site}"),
            ("Sec-Fetch-Mode", "cors"),
            ("Sec-Fetch-Dest", "empty"),
            ("Accept-Encoding", "gzip, deflate, br, zstd"),
            ("Accept-Language", "en-US,en;q=0.9"),
        ),
        _CHROME_SECURE,
    ),
    BrowserProfile(
        "chrome-android",
        (
            ("Connection", "keep-alive"),
            ("sec-ch-ua-platform", '"Android"'),
            ("User-Agent", _CHROME_ANDROID),
            ("sec-ch-ua", _CHROME_HINTS),
            ("sec-ch-ua-mobile", "?1"),
            ("Accept", "*/*"),
            ("Origin", "{origin}"),
            ("Sec-Fetch-Site", "{site}"),
            ("Sec-Fetch-Mode", "cors"),
            ("Sec-Fetch-Dest", "empty"),
            ("Accept-Encoding", "gzip, deflate, br, zstd"),
            ("Accept-Language", "en-US,en;q=0.9"),
        ),
        _CHROME_SECURE,
    ),
    BrowserProfile(
        "firefox",
        (
            ("User-Agent", _FIREFOX),
            ("Accept", "*/*"),
            ("Accept-Language", "en-US,en;q=0.5"),
            ("Accept-Encoding", "gzip, deflate, br, zstd"),
            ("Origin", "{origin}"),
            ("Connection", "keep-alive"),
            ("Sec-Fetch-Dest", "empty"),
            ("Sec-Fetch-Mode", "cors"),
            ("Sec-Fetch-Site", "{site}"),
            ("Priority", "u=4"),
        ),
        frozenset({"Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Priority"}),
    ),
)


def page_origin(public_url: str | None, host: str, port: int) -> str:
    """The watch page's origin, as a browser writes it in ``Origin`` (no default port)."""
    url = public_url or f"http://{host}:{port}"
    parts = urlsplit(url)
    scheme = parts.scheme or "http"
    default = {"http": 80, "https": 443}.get(scheme)
    hostname = parts.hostname or host
    if ":" in hostname:
        hostname = f"[{hostname}]"
    port_part = "" if parts.port in (None, default) else f":{parts.port}"
    return f"{scheme}://{hostname}{port_part}"


def _site_of(host: str) -> str:
    labels = host.split(".")
    if host.replace(".", "").isdigit() or ":" in host or len(labels) < 2:
        return host
    return ".".join(labels[-2:])


def fetch_site(origin: str, url: str) -> str:
    """``Sec-Fetch-Site`` of a request from ``origin`` to ``url`` (port does not make a site)."""
    page, target = urlsplit(origin), urlsplit(url)
    if (page.scheme, page.hostname, page.port) == (target.scheme, target.hostname, target.port):
        return "same-origin"
    if page.scheme == target.scheme and _site_of(page.hostname or "") == _site_of(
        target.hostname or ""
    ):
        return "same-site"
    return "cross-site"


def trustworthy(url: str) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return parts.scheme == "https" or host in ("localhost", "127.0.0.1", "::1")


def browser_headers(profile: BrowserProfile, origin: str, url: str) -> list[tuple[str, str]]:
    """The request headers, Host first, as ``profile``'s browser would send them to ``url``."""
    secure = trustworthy(url)
    site = fetch_site(origin, url)
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    headers = [("Host", netloc)]
    for name, value in profile.headers:
        if name in profile.secure_only and not secure:
            continue
        headers.append((name, value.format(origin=origin, site=site)))
    return headers


def segment_url(base_url: str, stream: str, segment: str, token: str) -> str:
    """The URL the page builds (loader.js): encodeURIComponent'd path, the token as a query."""
    path = f"/hls/{quote(stream, safe='')}/{quote(segment, safe='')}"
    return f"{base_url}{path}?session={quote(token, safe='')}"


async def fetch_segment(
    client: httpx.AsyncClient,
    url: str,
    headers: list[tuple[str, str]],
    segment: SignedSegment,
    timings: Timings = Timings(),
) -> Fetch:
    """One GET as the page makes it, with the page's verdict: size and SHA-256 must match.

    An error or a timeout is asked once more, after ``retry_wait_s`` on the same session, as a
    player retries a fragment; the second attempt is the judgement and the first stays in
    ``retried``. A mismatch is never asked again: bytes that differ from the signed index are
    the node's doing whatever the network did."""
    first = await _attempt(client, url, headers, segment, timings)
    if first.outcome not in ("error", "timeout"):
        return first
    await asyncio.sleep(timings.retry_wait_s)
    second = await _attempt(client, url, headers, segment, timings)
    return replace(second, started_at=first.started_at, retried=(first,))


async def _attempt(
    client: httpx.AsyncClient,
    url: str,
    headers: list[tuple[str, str]],
    segment: SignedSegment,
    timings: Timings,
) -> Fetch:
    """One attempt: a GET, asked again while the node says 404 for a brand-new segment."""
    started_at = utcnow()
    for attempt in range(timings.not_yet_retries + 1):
        fetch = await _fetch_once(client, url, headers, segment, timings, started_at)
        if fetch.outcome != "missing" or attempt == timings.not_yet_retries:
            return fetch
        await asyncio.sleep(timings.not_yet_wait_s)
    raise AssertionError("unreachable")


async def _fetch_once(
    client: httpx.AsyncClient,
    url: str,
    headers: list[tuple[str, str]],
    segment: SignedSegment,
    timings: Timings,
    started_at: datetime,
) -> Fetch:
    begun = time.monotonic()
    deadline = begun + max(timings.min_deadline_s, 2 * segment.duration_ms / 1000)
    received = 0
    ttfb_ms: int | None = None

    def result(outcome: str, detail: str = "", done: bool = False) -> Fetch:
        elapsed = round((time.monotonic() - begun) * 1000)
        return Fetch(
            segment=segment,
            started_at=started_at,
            outcome=outcome,
            bytes=received,
            ttfb_ms=ttfb_ms,
            duration_ms=elapsed if done else None,
            detail=detail[:300],
        )

    request = client.build_request("GET", url)
    request.headers = httpx.Headers(headers)
    digest = hashlib.sha256()
    try:
        wait = min(timings.first_byte_s, deadline - time.monotonic())
        response = await asyncio.wait_for(client.send(request, stream=True), wait)
    except TimeoutError:
        return result("timeout", "no answer in time")
    except httpx.HTTPError as exc:
        return result("error", f"{type(exc).__name__}: {exc}")
    try:
        ttfb_ms = round((time.monotonic() - begun) * 1000)
        if response.status_code == 404:
            return result("missing", "the node answered 404 for a signed segment")
        if response.status_code != 200:
            return result("error", f"HTTP {response.status_code}")
        chunks = response.aiter_bytes()  # decoded, as fetch() hands the page
        while True:
            wait = min(timings.progress_s, deadline - time.monotonic())
            if wait <= 0:
                return result("timeout", f"slower than the page allows ({received} bytes)")
            try:
                chunk = await asyncio.wait_for(anext(chunks), wait)
            except StopAsyncIteration:
                break
            except TimeoutError:
                return result("timeout", f"no progress in time ({received} bytes)")
            received += len(chunk)
            if received > segment.size:
                return result("mismatch", f"more than the signed {segment.size} bytes")
            digest.update(chunk)
        if received != segment.size:
            return result("mismatch", f"{received} bytes, signed {segment.size}", done=True)
        if digest.hexdigest() != segment.sha256:
            return result("mismatch", "SHA-256 differs from the signed index", done=True)
        return result("ok", done=True)
    except httpx.HTTPError as exc:
        return result("error", f"{type(exc).__name__}: {exc}")
    finally:
        await response.aclose()


@dataclass(frozen=True)
class ProbeTarget:
    node_id: str
    stream_id: str
    stream_name: str
    base_url: str


@dataclass
class ProbeReport:
    node_id: str
    session_id: str | None
    fetches: list[Fetch]
    skipped: str | None = None

    @property
    def outcomes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for fetch in self.fetches:
            counts[fetch.outcome] = counts.get(fetch.outcome, 0) + 1
        return counts


async def _recent_segments(
    session: AsyncSession, stream_id: str, after: int | None, limit: int
) -> list[SignedSegment]:
    query = select(Segment).where(Segment.stream_id == stream_id)
    if after is None:
        query = query.order_by(Segment.sequence.desc()).limit(limit)
    else:
        query = query.where(Segment.sequence > after).order_by(Segment.sequence).limit(limit)
    rows = list(await session.scalars(query))
    segments = [SignedSegment(r.sequence, r.name, r.size, r.sha256, r.duration_ms) for r in rows]
    return sorted(segments, key=lambda s: s.sequence)


class _ViewerImitation:
    """The coordinator-side half of a probe session: sources polls and receipts, on the page's
    schedule (the node never sees these, but reconciliation does)."""

    def __init__(self, ctx: AppContext, claims: SessionClaims, node_id: str) -> None:
        self.ctx, self.claims, self.node_id = ctx, claims, node_id
        self.opened_at = self.sent_at = time.monotonic()
        self.polled_at: float | None = None
        self.pending: list[Receipt] = []

    async def tick(self, final: bool = False) -> None:
        """Poll and send what is due; ``final``: the session ends (it polled at least once, as
        any page that played did)."""
        now = time.monotonic()
        since_poll = now - (self.polled_at if self.polled_at is not None else self.opened_at)
        if since_poll >= SOURCES_EVERY_S or (final and self.polled_at is None):
            await self._poll()
        if self.pending and (final or now - self.sent_at >= RECEIPTS_EVERY_S):
            batch = ReceiptBatch(batch_id=uuid.uuid4().hex, receipts=self.pending)
            async with self.ctx.sessions() as session:
                await record_receipts(
                    session,
                    self.claims,
                    batch,
                    bucket_s=self.ctx.settings.reconcile_interval_s,
                )
            self.pending = []
            self.sent_at = time.monotonic()

    async def _poll(self) -> None:
        async with self.ctx.sessions() as session:
            await session_sources(self.ctx, session, self.claims)
        self.polled_at = time.monotonic()

    def add(self, fetch: Fetch) -> None:
        """Receipts for every attempt, as the page receipts each one it made."""
        self.pending.extend(
            Receipt(
                source_kind="node",
                node_id=self.node_id,
                segment=f.segment.name,
                sequence=f.segment.sequence,
                bytes=min(f.bytes, 1_000_000_000),
                ttfb_ms=None if f.ttfb_ms is None else min(f.ttfb_ms, 600_000),
                download_ms=None if f.duration_ms is None else min(f.duration_ms, 600_000),
                outcome=f.receipt_outcome,
            )
            for f in (*fetch.retried, fetch)
        )


async def probe_target(
    ctx: AppContext,
    target: ProbeTarget,
    reason: str = "scheduled",
    *,
    segments: int | None = None,
    timings: Timings = Timings(),
) -> ProbeReport:
    """Watch ``target`` for a few segments as a viewer would; record every fetch as a probe."""
    wanted = segments or ctx.settings.probe_segments
    async with ctx.sessions() as session:
        stream = await session.get(Stream, target.stream_id)
        if stream is None or not on_air(stream.status):
            return ProbeReport(target.node_id, None, [], skipped="stream not on air")
        window = await _recent_segments(session, stream.id, None, WINDOW)
        if not window:
            return ProbeReport(target.node_id, None, [], skipped="no signed segments yet")
        opened = await open_session(ctx, session, stream, is_probe=True)
    claims = SessionClaims(
        session_id=opened.session_id,
        stream=stream.name,
        expires_at=int(opened.expires_at.timestamp()),
        key_id=ctx.signer.key_id,
    )
    viewer = _ViewerImitation(ctx, claims, target.node_id)

    # hls.js starts LIVE_EDGE_SEGMENTS (or one more) from the edge, then fills its buffer.
    start = max(0, len(window) - LIVE_EDGE_SEGMENTS - _random.randint(0, 1))
    queue = window[start:][:wanted]
    last = queue[-1].sequence if queue else window[-1].sequence
    origin = page_origin(ctx.settings.public_url, ctx.settings.host, ctx.settings.port)
    profile = _random.choice(PROFILES)
    fetches: list[Fetch] = []
    async with httpx.AsyncClient(
        follow_redirects=False, trust_env=False, timeout=httpx.Timeout(60.0)
    ) as client:
        while len(fetches) < wanted:
            if not queue:
                queue = await _next_segments(ctx, target.stream_id, last, fetches, viewer)
                if not queue:
                    break  # the stream stopped producing: a viewer would stop here too
                last = queue[-1].sequence
            segment = queue.pop(0)
            url = segment_url(target.base_url, target.stream_name, segment.name, opened.token)
            fetch = await fetch_segment(
                client, url, browser_headers(profile, origin, url), segment, timings
            )
            fetches.append(fetch)
            viewer.add(fetch)
            await viewer.tick()
    await viewer.tick(final=True)
    await _record(ctx, target, opened.session_id, reason, fetches)
    report = ProbeReport(target.node_id, opened.session_id, fetches)
    if "mismatch" in report.outcomes:
        log.warning(
            "probe got bytes that do not match the signed index",
            extra={"node_id": target.node_id, "stream": target.stream_name, "reason": reason},
        )
    return report


async def _next_segments(
    ctx: AppContext,
    stream_id: str,
    after: int,
    fetches: Sequence[Fetch],
    viewer: _ViewerImitation,
) -> list[SignedSegment]:
    """Wait, as a player at the live edge does, for the segment after ``after``."""
    duration_s = max((f.segment.duration_ms for f in fetches), default=2000) / 1000
    give_up = time.monotonic() + 2 * max(duration_s, 1.0)
    while time.monotonic() < give_up:
        async with ctx.sessions() as session:
            found = await _recent_segments(session, stream_id, after, WINDOW)
        if found:
            return found
        await viewer.tick()
        await asyncio.sleep(DB_POLL_S)
    return []


async def _record(
    ctx: AppContext, target: ProbeTarget, session_id: str, reason: str, fetches: list[Fetch]
) -> None:
    if not fetches:
        return
    recorded_at = utcnow()  # one moment for the session: trust reads it whole or not at all
    async with ctx.sessions() as session:
        session.add_all(
            Probe(
                node_id=target.node_id,
                stream_id=target.stream_id,
                session_id=session_id,
                reason=reason,
                segment=f.segment.name,
                sequence=f.segment.sequence,
                started_at=f.started_at,
                ttfb_ms=f.ttfb_ms,
                duration_ms=f.duration_ms,
                bytes=f.bytes,
                throughput_bps=f.throughput_bps,
                outcome=f.outcome,
                attempts=f.attempts,
                detail=f.record_detail[:300],
                recorded_at=recorded_at,
            )
            for f in fetches
        )
        await session.commit()


async def probe_targets(ctx: AppContext) -> list[ProbeTarget]:
    """Every node serving an on-air stream right now (present and reachable)."""
    targets = []
    async with ctx.sessions() as session:
        streams = list(await session.execute(select(Stream.id, Stream.name).where(
            Stream.status.in_(ON_AIR)
        )))  # fmt: skip
        for stream_id, name in streams:
            for c in await relay_candidates(session, ctx.presence, stream_id):
                targets.append(ProbeTarget(c.node_id, stream_id, name, c.base_url))
    return targets


async def probe_now(ctx: AppContext, node_id: str, reason: str = "targeted") -> ProbeReport:
    """Probe one node at once (a viewer reported a mismatch from it)."""
    async with ctx.sessions() as session:
        node = await session.get(Node, node_id)
        if node is None or node.deregistered_at is not None:
            return ProbeReport(node_id, None, [], skipped="no such node")
        stream = await session.get(Stream, node.stream_id)
        candidates: list[RelayCandidate] = (
            await relay_candidates(session, ctx.presence, node.stream_id) if stream else []
        )
    found = next((c for c in candidates if c.node_id == node_id), None)
    if stream is None or found is None:
        return ProbeReport(node_id, None, [], skipped="node not serving")
    return await probe_target(
        ctx, ProbeTarget(node_id, stream.id, stream.name, found.base_url), reason
    )


async def request_targeted_probe(ctx: AppContext, node_id: str) -> bool:
    """Ask the prober to probe ``node_id`` on its next run (within the prober job's few
    seconds), unless this node had its share of targeted probes this minute (viewers must not
    be able to make the coordinator hammer a node). The request goes where the worker holding
    the prober's lease finds it (``ctx.probe_requests``: Redis in production), not into a
    task of this replica, which may be stopped or killed at any time."""
    limit = ctx.settings.targeted_probes_per_minute
    if await ctx.attempts.hit(f"targeted-probe:{node_id}", 60) > limit:
        return False
    await ctx.probe_requests.add(node_id)
    return True


class Schedule:
    """When each node is probed next: exponential inter-arrival times, drawn per node."""

    def __init__(self) -> None:
        self.due: dict[str, float] = {}

    def take_due(self, node_ids: Sequence[str], now: float, mean_s: float) -> list[str]:
        live = set(node_ids)
        for gone in self.due.keys() - live:
            del self.due[gone]
        due = []
        for node_id in node_ids:
            when = self.due.get(node_id)
            if when is None:  # a node seen for the first time is probed at a random time too
                self.due[node_id] = now + _random.expovariate(1 / mean_s)
            elif when <= now:
                due.append(node_id)
                self.due[node_id] = now + _random.expovariate(1 / mean_s)
        return due


# One schedule per process: the prober job runs in one worker at a time (its lease), and a
# worker that takes the lease over simply draws fresh random times.
SCHEDULE = Schedule()


async def run_due_probes(
    ctx: AppContext, schedule: Schedule = SCHEDULE, *, timings: Timings = Timings()
) -> dict[str, Any]:
    targets = await probe_targets(ctx)
    by_node = {t.node_id: t for t in targets}
    due = schedule.take_due(list(by_node), time.monotonic(), ctx.settings.probe_interval_s)
    # Viewers' mismatch reports (request_targeted_probe, from any replica) come first.
    requested = await ctx.probe_requests.take(ctx.settings.probe_concurrency * 4)
    limit = asyncio.Semaphore(ctx.settings.probe_concurrency)

    async def one(target: ProbeTarget) -> ProbeReport:
        async with limit:
            return await probe_target(ctx, target, timings=timings)

    async def targeted(node_id: str) -> ProbeReport:
        async with limit:
            target = by_node.get(node_id)
            if target is None:  # not serving an on-air stream: probe_now says why
                return await probe_now(ctx, node_id)
            return await probe_target(ctx, target, "targeted", timings=timings)

    reports = await asyncio.gather(
        *(targeted(n) for n in requested),
        *(one(by_node[n]) for n in due if n not in requested),
        return_exceptions=True,
    )
    outcomes: dict[str, int] = {}
    failed = 0
    for report in reports:
        if isinstance(report, BaseException):
            failed += 1
            log.error("probe failed", exc_info=report)
            continue
        for outcome, count in report.outcomes.items():
            outcomes[outcome] = outcomes.get(outcome, 0) + count
    probed = len(set(due) - set(requested))
    return {
        "nodes": len(targets),
        "probed": probed,
        "targeted": len(requested),
        "failed": failed,
        "fetches": outcomes,
    }
