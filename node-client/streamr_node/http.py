"""A small, strict HTTP/1.1 server on asyncio's protocol layer, made for serving live HLS.

Why not a framework: the node's job is to move bytes, and a friend's uplink (not Python) should
be the limit. Working directly on ``asyncio.Protocol`` keeps a request to a few dict lookups and
two ``write`` calls, and gives exact control over what is refused: only ``GET``, ``HEAD`` and
``OPTIONS``, no request bodies, bounded request heads (414/431), a deadline for slow heads (408),
and keep-alive with an idle limit.

A response counts as delivered only once the kernel has taken its last byte (the transport's
write buffer is empty): ``Response.on_delivered`` runs then, and never for a response that a
disconnect cut short. That is what the node's accounting is built on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

log = logging.getLogger("streamr_node.http")

MAX_REQUEST_LINE = 8 * 1024
MAX_HEAD = 16 * 1024
MAX_HEADERS = 100
HEAD_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 30.0
SMALL_BODY = 16 * 1024  # sent with the head in one write; larger bodies are not copied

REASONS = {
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

_TOKEN_CHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


@dataclass(slots=True)
class Request:
    method: str
    path: str  # percent-decoded
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    version: str
    peer: str


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | memoryview = b""
    content_length: int | None = None  # for HEAD: the length a GET would have had
    on_delivered: Callable[[], None] | None = None
    close: bool = False


Handler = Callable[[Request], "Response | Awaitable[Response]"]


class HttpError(Exception):
    """Raised by a handler: answered with the JSON error shape and these extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        close: bool = False,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.close = close
        self.headers = headers or []

    def response(self) -> Response:
        response = error_response(self.status, str(self))
        response.headers.extend(self.headers)
        response.close = self.close
        return response


def error_response(status: int, message: str, *, code: str | None = None) -> Response:
    """The same error shape as the coordinator's: a message that says what to do."""
    body = json.dumps(
        {"error": {"status": status, "code": code or _code(status), "message": message}}
    ).encode()
    return Response(status, [("Content-Type", "application/json")], body)


def json_response(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, separators=(",", ":"), default=str).encode()
    return Response(
        status, [("Content-Type", "application/json"), ("Cache-Control", "no-store")], body
    )


def _code(status: int) -> str:
    return REASONS.get(status, "error").lower().replace(" ", "_")


class _Clock:
    """The Date header, formatted once a second rather than once a request."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode()
        return self._value


class HttpServer:
    def __init__(self, handler: Handler, *, server_name: str, base_headers: list[tuple[str, str]]):
        self.handler = handler
        self.server_name = server_name
        self._base = b"".join(f"{k}: {v}\r\n".encode() for k, v in base_headers)
        self._base += f"Server: {server_name}\r\n".encode()
        self.connections: set[_Connection] = set()
        self.clock = _Clock()
        self.draining = False
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.requests_total = 0
        self.responses_by_status: dict[int, int] = {}

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, reuse_address=True, backlog=1024
        )
        self._sweeper = asyncio.create_task(self._sweep())
        return self._server.sockets[0].getsockname()[1]

    async def drain(self, grace_s: float) -> None:
        """Stop taking connections and requests; give responses in flight ``grace_s``."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        for connection in list(self.connections):
            if connection.idle:
                connection.close()
        while any(not c.idle for c in self.connections) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # polled: responses finish inside the kernel, unobserved

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            # awaited, so the task has ended before a caller stops the loop under it
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        for connection in list(self.connections):
            connection.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for connection in list(self.connections):
                connection.check_timeouts(now)

    def head(self, response: Response, keep_alive: bool) -> bytes:
        length = response.content_length
        if length is None:
            length = len(response.body)
        status = response.status
        lines = [
            f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n".encode(),
            b"Date: ",
            self.clock.date(),
            b"\r\n",
            self._base,
        ]
        lines.extend(f"{k}: {v}\r\n".encode() for k, v in response.headers)
        if status != 304 and status != 204:
            lines.append(b"Content-Length: %d\r\n" % length)
        lines.append(
            b"Connection: keep-alive\r\n\r\n" if keep_alive else b"Connection: close\r\n\r\n"
        )
        return b"".join(lines)


class _Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.peer = "?"
        self.busy = False  # a response is being produced or is still in the kernel's way
        self.paused = False
        self.closing = False
        self.last_active = time.monotonic()
        self.head_started: float | None = None
        self._delivered: Callable[[], None] | None = None
        self._close_after = False
        self._task: asyncio.Future[Response] | None = None  # a held request (blocking reload)

    @property
    def idle(self) -> bool:
        return not self.busy and not self.buffer

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # any loop's stream transport
        # With both limits at zero, pause_writing/resume_writing tell exactly when the kernel
        # has taken every byte of a response: the moment it counts as delivered.
        transport.set_write_buffer_limits(high=0, low=0)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else "?"
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self._delivered = None  # cut short: not delivered, not counted
        if self._task is not None:
            self._task.cancel()
        self.server.connections.discard(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._finish_response()

    def data_received(self, data: bytes) -> None:
        if self.head_started is None:
            self.head_started = time.monotonic()
        self.buffer += data
        if len(self.buffer) > 4 * MAX_HEAD and self.transport is not None:
            self.transport.pause_reading()  # a client pipelining faster than we answer
        self._process()

    # ------------------------------------------------------------------ requests

    def _process(self) -> None:
        while not self.busy and not self.closing and self.buffer:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._send_error(431, "the request head is larger than 16 KiB", close=True)
                elif (
                    self.buffer.find(b"\r\n", 0, MAX_REQUEST_LINE + 2) < 0
                    and len(self.buffer) > MAX_REQUEST_LINE
                ):
                    self._send_error(414, "the request line is longer than 8 KiB", close=True)
                return
            if end > MAX_HEAD:
                self._send_error(431, "the request head is larger than 16 KiB", close=True)
                return
            head = bytes(self.buffer[:end])
            del self.buffer[: end + 4]
            self.head_started = time.monotonic() if self.buffer else None
            self.last_active = time.monotonic()
            if self.transport is not None and len(self.buffer) <= MAX_HEAD:
                self.transport.resume_reading()
            try:
                request, keep_alive = self._parse(head)
            except HttpError as exc:
                self._send_error(exc.status, str(exc), close=True)
                return
            self.server.requests_total += 1
            self._dispatch(request, keep_alive)

    def _parse(self, head: bytes) -> tuple[Request, bool]:
        lines = head.split(b"\r\n")
        request_line = lines[0]
        if len(request_line) > MAX_REQUEST_LINE:
            raise HttpError(414, "the request line is longer than 8 KiB")
        parts = request_line.split(b" ")
        if len(parts) != 3 or not parts[0] or not set(parts[0]) <= _TOKEN_CHARS:
            raise HttpError(400, "the request line must be 'METHOD /path HTTP/1.1'")
        method, target, version = parts
        if version not in (b"HTTP/1.1", b"HTTP/1.0"):
            if version.startswith(b"HTTP/"):
                raise HttpError(505, "only HTTP/1.0 and HTTP/1.1 are served")
            raise HttpError(400, "the request line must end with the HTTP version")
        if len(lines) - 1 > MAX_HEADERS:
            raise HttpError(431, f"more than {MAX_HEADERS} header fields")
        headers: dict[str, str] = {}
        for raw in lines[1:]:
            name, colon, value = raw.partition(b":")
            if not colon or not name or not set(name) <= _TOKEN_CHARS:
                raise HttpError(400, "a header line is not 'Name: value'")
            key = name.decode("ascii").lower()
            text = value.strip(b" \t").decode("latin-1")
            if key in headers:
                if key in ("host", "content-length", "range", "x-streamr-session"):
                    raise HttpError(400, f"the {key} header appears twice")
                headers[key] += ", " + text
            else:
                headers[key] = text
        if version == b"HTTP/1.1" and "host" not in headers:
            raise HttpError(400, "HTTP/1.1 requests need a Host header")
        if "transfer-encoding" in headers:
            raise HttpError(501, "request bodies are not accepted here (Transfer-Encoding)")
        if headers.get("content-length", "0").strip() not in ("", "0"):
            raise HttpError(413, "request bodies are not accepted here")
        try:
            target_text = target.decode("ascii")
        except UnicodeDecodeError:
            raise HttpError(
                400, "the request target must be ASCII (percent-encode the rest)"
            ) from None
        if not target_text.startswith("/"):
            raise HttpError(400, "the request target must be a path starting with '/'")
        raw_path, _, raw_query = target_text.partition("?")
        try:
            path = unquote(raw_path, errors="strict")
        except UnicodeDecodeError:
            raise HttpError(400, "the path is not valid UTF-8 once percent-decoded") from None
        if "\x00" in path:
            raise HttpError(400, "the path must not contain NUL")
        query: dict[str, str] = {}
        if raw_query:
            for pair in raw_query.split("&"):
                key, _, value = pair.partition("=")
                try:
                    query.setdefault(unquote(key, errors="strict"), unquote(value, errors="strict"))
                except UnicodeDecodeError:
                    raise HttpError(
                        400, "the query is not valid UTF-8 once percent-decoded"
                    ) from None
        connection = headers.get("connection", "").lower()
        if version == b"HTTP/1.1":
            keep_alive = "close" not in connection
        else:
            keep_alive = "keep-alive" in connection
        request = Request(
            method=method.decode("ascii"),
            path=path,
            query=query,
            headers=headers,
            version=version.decode("ascii"),
            peer=self.peer,
        )
        return request, keep_alive

    def _dispatch(self, request: Request, keep_alive: bool) -> None:
        try:
            result = self.server.handler(request)
        except HttpError as exc:
            self._send(exc.response(), keep_alive, request)
            return
        except Exception:
            log.exception("request failed", extra={"path": request.path[:200]})
            self._send(error_response(500, "the node failed on this request"), False, request)
            return
        if isinstance(result, Response):
            self._send(result, keep_alive, request)
            return
        self.busy = True
        self._task = asyncio.ensure_future(result)
        self._task.add_done_callback(lambda t: self._async_done(t, request, keep_alive))

    def _async_done(
        self, task: asyncio.Future[Response], request: Request, keep_alive: bool
    ) -> None:
        self.busy = False
        self._task = None
        if self.closing:
            return
        if task.cancelled():
            self._send(error_response(503, "the node is shutting down"), False, request)
        elif task.exception() is not None:
            exc = task.exception()
            if isinstance(exc, HttpError):
                self._send(exc.response(), keep_alive, request)
            else:
                log.error("request failed", exc_info=exc, extra={"path": request.path[:200]})
                self._send(error_response(500, "the node failed on this request"), False, request)
        else:
            self._send(task.result(), keep_alive, request)
        self._process()

    def _send_error(self, status: int, message: str, *, close: bool) -> None:
        self.server.requests_total += 1
        self._send(error_response(status, message), not close, None)

    def _send(self, response: Response, keep_alive: bool, request: Request | None) -> None:
        transport = self.transport
        if transport is None or self.closing:
            return
        keep_alive = keep_alive and not response.close and not self.server.draining
        counts = self.server.responses_by_status
        counts[response.status] = counts.get(response.status, 0) + 1
        head_only = request is not None and request.method == "HEAD"
        head = self.server.head(response, keep_alive)
        body = b"" if head_only else response.body
        if len(body) <= SMALL_BODY:
            transport.write(head + body)  # one send() for a playlist or an error, not two
        else:
            transport.write(head)
            transport.write(body)
        self.last_active = time.monotonic()
        self._delivered = None if head_only else response.on_delivered
        self._close_after = not keep_alive
        if self.paused:
            self.busy = True  # finish when the kernel has taken the rest (resume_writing)
        else:
            self._finish_response()

    def _finish_response(self) -> None:
        delivered, self._delivered = self._delivered, None
        if delivered is not None:
            delivered()
        if self._close_after:
            self.close()
            return
        if self.busy and not self.paused:
            self.busy = False
            self._process()

    # ------------------------------------------------------------------ closing

    def check_timeouts(self, now: float) -> None:
        if self.busy:
            return
        if self.head_started is not None and now - self.head_started > HEAD_TIMEOUT_S:
            self._send_error(408, "the request head took too long to arrive", close=True)
        elif (not self.buffer and now - self.last_active > IDLE_TIMEOUT_S) or (
            self.server.draining and self.idle
        ):
            self.close()

    def close(self) -> None:
        if not self.closing and self.transport is not None:
            self.closing = True
            self.transport.close()
