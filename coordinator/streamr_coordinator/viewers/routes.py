from __future__ import annotations

from fastapi import APIRouter, Request

from streamr_protocol.viewer_sessions import ViewerSession

from ..accounts.auth import Context, Session
from ..accounts.routes import client_address
from ..routing import DocumentedRoute
from ..streams.routes import StreamName
from ..streams.service import get_stream
from .service import open_session, throttle_sessions

router = APIRouter(route_class=DocumentedRoute, prefix="/api/v1", tags=["viewers"])


@router.post("/streams/{name}/sessions", status_code=201, response_model=ViewerSession)
async def open_session_route(
    name: StreamName, request: Request, ctx: Context, session: Session
) -> ViewerSession:
    """Open a viewer session: a signed token and the sources to fetch from, best first.

    Anonymous. Present the token to every source (``?session=`` or ``X-Streamr-Session``); it
    verifies with the key at ``/api/v1/attestation/key``. Only while the stream is LIVE or
    TESTING; sessions per client address are rate-limited.
    """
    await throttle_sessions(ctx, client_address(request))
    stream = await get_stream(session, name)
    return await open_session(ctx, session, stream)
