"""The heartbeat, the busiest request there is: its handling, and a shortcut to it.

With thousands of nodes beating every few seconds, nearly every request a coordinator answers
is a heartbeat, and FastAPI's routing, dependency and response machinery cost about as much
CPU as the heartbeat's own work. So ``HeartbeatShortcut``, a plain ASGI layer in front of the
framework, answers a well-formed heartbeat from a node with its own token by calling the same
two functions the route calls (``parse_heartbeat`` and ``accept_heartbeat``). Anything else (any
other request, no token or another kind, a token of another node, a body that does not parse
or validate, the database away during the token lookup) goes to the application unchanged,
with the body it already read handed on, so every error answer is the route's own.
"""

from __future__ import annotations

import logging
import re

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streamr_protocol.nodes import Heartbeat

from ..context import AppContext
from ..credentials import NODE_TOKEN_PREFIX
from ..errors import AppError
from ..verification.networks import url_address
from .auth import NodeIdentity, lookup_node_token
from .service import heartbeat

log = logging.getLogger("streamr.nodes")

_PATH = re.compile(r"^/api/v1/nodes/([^/]+)/heartbeat$")
_JSON_ONLY = "send the heartbeat as a JSON object with Content-Type: application/json"


def is_json(content_type: str | None) -> bool:
    """Whether a heartbeat's Content-Type is JSON (absent counts as JSON, as it always has)."""
    if content_type is None:
        return True
    return content_type.split(";")[0].strip().lower() == "application/json"


def parse_heartbeat(content_type: str | None, body: bytes) -> Heartbeat:
    """The heartbeat in ``body``; the route's 400/422 errors when it is not one."""
    if not is_json(content_type):
        raise RequestValidationError(
            [{"type": "content_type", "loc": ("body",), "msg": _JSON_ONLY}]
        )
    try:
        body.decode()
    except UnicodeDecodeError:
        raise AppError(
            "The request body could not be read; send a JSON object encoded as UTF-8."
        ) from None
    try:
        return Heartbeat.model_validate_json(body)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_input=False)]
        raise RequestValidationError(errors) from None


async def accept_heartbeat(
    ctx: AppContext, node: NodeIdentity, beat: Heartbeat, client_host: str
) -> bytes:
    """Record the beat (presence, last seen, the node's networks); the acknowledgement's JSON."""
    ack = await heartbeat(ctx, node, beat)
    ctx.networks.seen(  # at most one write a minute per network
        node.node_id,
        client_host,
        url_address(str(beat.public_url)) if beat.public_url else None,
    )
    return ack.model_dump_json().encode()


class HeartbeatShortcut:
    """Answers well-formed heartbeats before the framework sees them; see the module's text."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _PATH.match(scope["path"]) if scope["type"] == "http" else None
        if match is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        token = _node_token(headers.get(b"authorization"))
        content_type = headers.get(b"content-type")
        if token is None or not is_json(content_type):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client went away before it finished sending
            return
        answer = await self._answer(scope, match.group(1), token, content_type, body)
        if answer is None:
            await self.app(scope, _replay(body, receive), send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(answer)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    @staticmethod
    async def _answer(
        scope: Scope, node_id: str, token: str, content_type: str | None, body: bytes
    ) -> bytes | None:
        """The acknowledgement, or None when the route should answer instead."""
        ctx: AppContext = scope["app"].state.ctx
        client = scope.get("client")
        try:
            node = await lookup_node_token(ctx.sessions, token, ctx.node_tokens)
            if node is None or node.node_id != node_id:
                return None
            beat = parse_heartbeat(content_type, body)
            return await accept_heartbeat(ctx, node, beat, client[0] if client else "unknown")
        except Exception as exc:
            # A bad body, the database or Redis away: the route does it again and gives its own
            # answer (recording a beat twice is harmless), so no error is worded twice.
            log.debug("heartbeat left to the route", extra={"error": type(exc).__name__})
            return None


def _headers(scope: Scope) -> dict[bytes, str]:
    # Header names arrive lower-cased (ASGI); the first of a repeated header wins, as in Starlette.
    found: dict[bytes, str] = {}
    for key, value in scope["headers"]:
        if key in (b"authorization", b"content-type") and key not in found:
            found[key] = value.decode("latin-1")
    return found


def _node_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(NODE_TOKEN_PREFIX):
        return None
    return token


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` with the body that was already read given back first."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
