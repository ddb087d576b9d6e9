"""ASGI middleware: request ids, access logs, and a cap on request body size.

Written as plain ASGI (not BaseHTTPMiddleware) because it sits on the heartbeat hot path.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import PayloadTooLarge, error_body
from .logs import request_id_var

log = logging.getLogger("streamr.access")

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Heartbeats arrive every few seconds from every node; logging each at INFO would drown the log.
_QUIET_PATHS = re.compile(r"^/api/v1/nodes/[^/]+/heartbeat$|^/health$")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _SAFE_REQUEST_ID.match(incoming) else None
        request_id = request_id or secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status_holder: dict[str, int] = {"status": 500}

        if "\x00" in scope.get("path", ""):
            # No name or id holds a NUL, and PostgreSQL cannot even compare text that does.
            await _send_error(
                send, 400, "bad_path", "The path contains a NUL character.", request_id
            )
            self._log(scope, 400, started)
            request_id_var.reset(token)
            return

        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await _send_too_large(send, self.max_body_bytes, request_id)
            status_holder["status"] = 413
            self._log(scope, 413, started)
            request_id_var.reset(token)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise PayloadTooLarge(self.max_body_bytes)
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except PayloadTooLarge:  # raised outside a route; inside one, the handler answers
            status_holder["status"] = 413
            await _send_too_large(send, self.max_body_bytes, request_id)
        finally:
            self._log(scope, status_holder["status"], started)
            request_id_var.reset(token)

    @staticmethod
    def _log(scope: Scope, status: int, started: float) -> None:
        path = scope.get("path", "")
        level = logging.DEBUG if _QUIET_PATHS.match(path) and status < 400 else logging.INFO
        if log.isEnabledFor(level):
            # The path only: query strings are never logged, in case a client put a secret there.
            log.log(
                level,
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": path,
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def _send_too_large(send: Send, limit: int, request_id: str) -> None:
    error = PayloadTooLarge(limit)
    await _send_error(send, 413, error.code, error.detail, request_id)


async def _send_error(send: Send, status: int, code: str, message: str, request_id: str) -> None:
    """Answer in the one error shape from here, before the application sees the request."""
    payload = json.dumps(error_body(status, code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
