"""Viewer session tokens: issued by the coordinator, checked by nodes without calling it.

A viewer's page opens a session and gets a token; it presents the token to every source it
fetches from (``?session=`` or the ``X-Streamr-Session`` header). A node checks the Ed25519
signature with the coordinator's public key, which it already holds for segment attestation,
so accounting costs no request per segment. The signed text is prefixed with its own format
name, so a session signature can never be mistaken for a segment signature made by the same
key.

Token: ``<base64url(payload JSON)>.<base64url(signature)>`` where the signature covers
``streamr-session-v1\\n<payload part>``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, Field, ValidationError

from .attestation import b64url_decode, b64url_encode

FORMAT = "streamr-session-v1"
QUERY_PARAMETER = "session"
HEADER = "X-Streamr-Session"
MAX_TOKEN_LENGTH = 512


class SessionClaims(BaseModel):
    """What a session token says: which session, for which stream, until when, signed by whom."""

    session_id: str = Field(alias="sid", min_length=1, max_length=64)
    stream: str = Field(alias="str", min_length=1, max_length=64)
    expires_at: int = Field(alias="exp", ge=0, description="Unix time, seconds")
    key_id: str = Field(alias="kid", min_length=1, max_length=128)

    model_config = {"populate_by_name": True}


class SessionTokenError(Exception):
    """The token is malformed, forged, expired or for another stream."""


def _signed_text(payload_part: str) -> bytes:
    return f"{FORMAT}\n{payload_part}".encode()


def encode_session_token(claims: SessionClaims, sign: Callable[[bytes], bytes]) -> str:
    payload = json.dumps(claims.model_dump(by_alias=True), separators=(",", ":"))
    payload_part = b64url_encode(payload.encode())
    return f"{payload_part}.{b64url_encode(sign(_signed_text(payload_part)))}"


def decode_session_token(
    token: str,
    public_keys: Mapping[str, Ed25519PublicKey],
    *,
    stream: str | None = None,
    now: float | None = None,
) -> SessionClaims:
    """The token's claims, or SessionTokenError saying why it is not acceptable."""
    if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        raise SessionTokenError("not a session token")
    payload_part, signature_part = token.split(".")
    try:
        claims = SessionClaims.model_validate(json.loads(b64url_decode(payload_part)))
        signature = b64url_decode(signature_part)
    except (ValueError, ValidationError, TypeError):
        raise SessionTokenError("not a session token") from None
    key = public_keys.get(claims.key_id)
    if key is None:
        raise SessionTokenError("signed by an unknown key")
    try:
        key.verify(signature, _signed_text(payload_part))
    except (InvalidSignature, ValueError):
        raise SessionTokenError("signature is not valid") from None
    if claims.expires_at <= (time.time() if now is None else now):
        raise SessionTokenError("expired")
    if stream is not None and claims.stream != stream:
        raise SessionTokenError("issued for another stream")
    return claims


class Source(BaseModel):
    """One place a viewer can fetch the stream from, best first."""

    kind: Literal["node", "origin"]
    base_url: str = Field(description="Prefix of the HLS paths, e.g. http://host:8090")
    node_id: str | None = None
    name: str | None = Field(default=None, description="The node's label, shown to the viewer")


class ViewerSession(BaseModel):
    """The answer to opening a viewer session."""

    session_id: str
    stream: str
    token: str = Field(description="Present it to every source: ?session= or X-Streamr-Session")
    expires_at: datetime
    playlist_path: str = Field(description="Append to a source's base_url")
    sources: list[Source]


class SessionSources(BaseModel):
    """A session's sources as they are now; the page asks again every ``refresh_s``."""

    session_id: str
    stream: str
    status: str = Field(description="The stream's state; playback ends when it is not on air")
    on_air: bool
    refresh_s: float = Field(description="Ask again after this long (one segment duration)")
    sources: list[Source]
