"""What the node serves: live HLS for its stream, plus ``/health`` and ``/stats``.

Paths mirror the origin's (``/hls/<stream>/index.m3u8`` and ``/hls/<stream>/<segment>``), so a
viewer, a child node or a probe can swap one source for another by changing the base URL only.
Segments are looked up by exact name in the in-memory window: no path ever reaches a file
system, so traversal has nothing to traverse.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from streamr_protocol.viewer_sessions import HEADER, QUERY_PARAMETER, SessionTokenError

from .accounting import UsageLedger
from .http import HttpError, Request, Response, error_response, json_response
from .meter import RateMeter
from .sessions import SessionVerifier
from .window import Segment, SegmentWindow

PLAYLIST_NAME = "index.m3u8"
SEGMENT_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")
CONTENT_TYPES = {
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".aac": "audio/aac",
}
SESSION_HEADER = HEADER.lower()
MAX_TRACKED_VIEWERS = 10_000

# On every response (errors too), so that a browser page can read why a request failed.
CORS_HEADERS = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Expose-Headers", "Content-Length, Content-Range, ETag, Retry-After"),
]
_PREFLIGHT = [
    ("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"),
    ("Access-Control-Allow-Headers", f"Range, If-None-Match, {HEADER}"),
    ("Access-Control-Max-Age", "600"),
]


class NodeApp:
    """The request handler. Everything it needs is given; it owns no tasks."""

    def __init__(
        self,
        *,
        stream: str,
        window: SegmentWindow,
        verifier: SessionVerifier,
        ledger: UsageLedger,
        meter: RateMeter,
        egress_cap_bps: int | None,
        health: Callable[[], dict[str, Any]],
        stats: Callable[[], dict[str, Any]],
    ) -> None:
        self.stream = stream
        self.window = window
        self.verifier = verifier
        self.ledger = ledger
        self.meter = meter
        self.egress_cap_bps = egress_cap_bps
        self.health = health
        self.stats = stats
        self.draining = False
        self.refused_over_cap = 0
        self.refused_sessions = 0
        self.viewers_seen: dict[str, float] = {}  # session id -> last request (monotonic)
        self._prefix = f"/hls/{stream}/"

    def __call__(self, request: Request) -> Response | Awaitable[Response]:
        path = request.path
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            response = error_response(405, "only GET, HEAD and OPTIONS are served")
            response.headers.append(("Allow", "GET, HEAD, OPTIONS"))
            return response
        if request.method == "OPTIONS":
            return Response(204, list(_PREFLIGHT))
        if path.startswith(self._prefix):
            name = path[len(self._prefix) :]
            if name == PLAYLIST_NAME:
                return self._playlist(request)
            if SEGMENT_NAME.match(name) and ".." not in name:
                return self._segment(request, name)
            raise HttpError(400, "segment names are letters, digits, '.', '_' and '-' only")
        if path == "/health":
            body = self.health()
            return json_response(body, 503 if body.get("status") != "ok" else 200)
        if path == "/stats":
            return json_response(self.stats())
        if path.startswith("/hls/"):
            return error_response(
                404, f"this node relays the stream {self.stream!r}; use /hls/{self.stream}/"
            )
        return error_response(404, "not found; this node serves /hls/<stream>/, /health, /stats")

    # ------------------------------------------------------------------ media

    def _refuse_if_busy(self) -> None:
        if self.draining:
            raise HttpError(
                503,
                "this node is shutting down; use another source",
                close=True,
                headers=[("Retry-After", "1")],
            )
        if self.egress_cap_bps is not None and self.meter.bits_per_second() > self.egress_cap_bps:
            self.refused_over_cap += 1
            raise _Busy()

    def _playlist(self, request: Request) -> Response | Awaitable[Response]:
        self._refuse_if_busy()
        msn_text = request.query.get("_HLS_msn")
        if msn_text is not None and request.method == "GET":
            if not msn_text.isdigit() or len(msn_text) > 18:
                raise HttpError(400, "_HLS_msn must be a media sequence number")
            msn = int(msn_text)
            last = self.window.playlist.last_media_sequence
            if msn > last and not self.window.ended:
                if last >= 0 and msn > last + 2:
                    raise HttpError(400, f"_HLS_msn {msn} is too far ahead of {last}")
                return self._held_playlist(request, msn)
        return self._playlist_now(request)

    async def _held_playlist(self, request: Request, msn: int) -> Response:
        # Low-latency HLS blocking reload: answer as soon as segment ``msn`` is listed.
        await self.window.wait_for(msn, max(3 * self.window.target_duration_s, 3))
        return self._playlist_now(request)

    def _playlist_now(self, request: Request) -> Response:
        rendered = self.window.playlist
        if not rendered.body:
            raise HttpError(404, "no segments yet: the stream is not live here (yet)")
        headers = [
            ("Content-Type", "application/vnd.apple.mpegurl"),
            ("Cache-Control", "no-cache"),
            ("ETag", rendered.etag.decode()),
        ]
        if _matches(request.headers.get("if-none-match"), rendered.etag):
            return Response(304, headers)
        return Response(200, headers, rendered.body)

    def _segment(self, request: Request, name: str) -> Response:
        self._refuse_if_busy()
        segment = self.window.get(name)
        if segment is None:
            raise HttpError(
                404, f"{name} is not in this node's window (too old or not yet here); reload"
            )
        session_id = self._session(request)
        headers = [
            (
                "Content-Type",
                CONTENT_TYPES.get(name[name.rfind(".") :], "application/octet-stream"),
            ),
            ("Cache-Control", "public, max-age=60"),
            ("ETag", segment.etag.decode()),
            ("Accept-Ranges", "bytes"),
        ]
        if _matches(request.headers.get("if-none-match"), segment.etag):
            return Response(304, headers)
        size = len(segment.data)
        span = _byte_range(request.headers.get("range"), size)
        if span is None:
            # A view, not bytes: a send that the kernel takes only in part is not copied again.
            body: bytes | memoryview = memoryview(segment.data)
            status = 200
        else:
            start, end = span
            body = memoryview(segment.data)[start : end + 1]
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
            status = 206
        response = Response(status, headers, body)
        if request.method == "HEAD":
            response.content_length = len(body)
            response.body = b""
        else:
            response.on_delivered = self._delivered(session_id, len(body), span is None, segment)
        return response

    def _delivered(
        self, session_id: str | None, nbytes: int, full: bool, segment: Segment
    ) -> Callable[[], None]:
        def done() -> None:
            self.meter.add(nbytes)
            self.ledger.served(session_id, nbytes, full_segment=full)

        return done

    def _session(self, request: Request) -> str | None:
        token = request.query.get(QUERY_PARAMETER) or request.headers.get(SESSION_HEADER)
        if not token:
            return None
        try:
            session_id = self.verifier.session_id(token)
        except SessionTokenError as exc:
            self.refused_sessions += 1
            raise HttpError(
                403, f"the viewer session token is not valid here ({exc}); open a new session"
            ) from None
        self.viewers_seen[session_id] = time.monotonic()
        if len(self.viewers_seen) > MAX_TRACKED_VIEWERS:
            self.active_viewers()  # forget viewers gone quiet, so the map stays bounded
        return session_id

    def active_viewers(self, within_s: float = 30.0) -> int:
        cutoff = time.monotonic() - within_s
        for sid in [s for s, seen in self.viewers_seen.items() if seen < cutoff]:
            del self.viewers_seen[sid]
        return len(self.viewers_seen)


class _Busy(HttpError):
    def __init__(self) -> None:
        super().__init__(
            503,
            "this node is at its egress cap; fetch from another source",
            headers=[("Retry-After", "2")],
        )


def _matches(if_none_match: str | None, etag: bytes) -> bool:
    if not if_none_match:
        return False
    wanted = etag.decode()
    return any(tag.strip() in (wanted, "*", "W/" + wanted) for tag in if_none_match.split(","))


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single ``bytes=`` range; None to send everything.

    Another unit, or several ranges, are ignored (RFC 9110 14.2 allows it); a malformed or
    unsatisfiable byte range is a 416 that says so.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    if not dash or not (first_text or last_text):
        raise _Unsatisfiable(size, f"Range {header[:60]!r} is not 'bytes=first-last'")
    if not (first_text.isdigit() or not first_text) or not (last_text.isdigit() or not last_text):
        raise _Unsatisfiable(size, f"Range {header[:60]!r} is not 'bytes=first-last'")
    if not first_text:  # the last N bytes
        length = int(last_text)
        if length == 0:
            raise _Unsatisfiable(size, "a suffix range of zero bytes selects nothing")
        return max(size - length, 0), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if first > last:
        raise _Unsatisfiable(size, f"Range {header[:60]!r} ends before it starts")
    if first >= size:
        raise _Unsatisfiable(size, f"the segment has {size} bytes; the range starts beyond them")
    return first, min(last, size - 1)


class _Unsatisfiable(HttpError):
    def __init__(self, size: int, message: str) -> None:
        super().__init__(416, message, headers=[("Content-Range", f"bytes */{size}")])
