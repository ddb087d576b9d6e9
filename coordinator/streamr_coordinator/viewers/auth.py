"""Who is calling a session's own routes: the viewer holding that session's token.

The watch page presents the token it got when it opened the session, as ``X-Streamr-Session``
(what nodes accept too) or ``Authorization: Bearer``. It is checked offline, like a node checks
it: the coordinator's attestation key signed it. An account's access token or a node token is
a credential of another kind: 403, so a client does not refresh and retry in vain.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from streamr_protocol.attestation import public_key_from
from streamr_protocol.viewer_sessions import (
    HEADER,
    SessionClaims,
    SessionTokenError,
    decode_session_token,
)

from ..context import AppContext
from ..credentials import NODE_TOKEN_PREFIX
from ..errors import Forbidden, Unauthorized

SessionIdPath = Annotated[str, Path(max_length=64)]

_HOW = f"send the token from opening the session as {HEADER} or 'Authorization: Bearer <token>'"


def _presented_token(request: Request) -> str | None:
    token = request.headers.get(HEADER)
    if token is None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = value
    return token.strip() or None


async def viewer_claims(request: Request, session_id: SessionIdPath) -> SessionClaims:
    """The claims of the session token presented, which must be for ``session_id``."""
    token = _presented_token(request)
    if token is None:
        raise Unauthorized(f"This route needs the viewer session's token: {_HOW}.")
    if token.startswith(NODE_TOKEN_PREFIX) or token.count(".") == 2:
        raise Forbidden(
            "This is a node token or an account's access token; a session's routes take only "
            f"that session's viewer token: {_HOW}."
        )
    ctx: AppContext = request.app.state.ctx
    keys = {ctx.signer.key_id: public_key_from(ctx.signer.public())}
    try:
        claims = decode_session_token(token, keys)
    except SessionTokenError as exc:
        raise Unauthorized(
            f"The viewer session token was refused ({exc}); open a new session with "
            "POST /api/v1/streams/{name}/sessions."
        ) from None
    if claims.session_id != session_id:
        raise Forbidden("This token is for another viewer session; use that session's own path.")
    return claims


ViewerClaims = Annotated[SessionClaims, Depends(viewer_claims)]
