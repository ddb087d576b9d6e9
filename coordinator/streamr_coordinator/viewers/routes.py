from __future__ import annotations

from fastapi import APIRouter, Request

from streamr_protocol.receipts import ReceiptAck, ReceiptBatch
from streamr_protocol.viewer_sessions import SessionSources, ViewerSession

from ..accounts.auth import Context, Session
from ..accounts.routes import client_address
from ..routing import DocumentedRoute
from ..streams.routes import StreamName
from ..streams.service import get_stream
from ..verification.prober import request_targeted_probe
from .auth import SessionIdPath, ViewerClaims
from .receipts import record_receipts
from .service import open_session, session_sources, throttle_session_calls, throttle_sessions

router = APIRouter(route_class=DocumentedRoute, prefix="/api/v1", tags=["viewers"])


@router.post("/streams/{name}/sessions", status_code=201, response_model=ViewerSession)
async def open_session_route(
    name: StreamName, request: Request, ctx: Context, session: Session
) -> ViewerSession:
    """Open a viewer session: a signed token and the sources to fetch from, best first.

    Anonymous. Present the token to every source (``?session=`` or ``X-Streamr-Session``); it
    verifies with the key at ``/api/v1/attestation/key``. Only while the stream is LIVE or
    TESTING; sessions per client address are rate-limited. The address itself is not stored,
    only a keyed hash of its /24 (or /48) network.
    """
    address = client_address(request)
    await throttle_sessions(ctx, address)
    stream = await get_stream(session, name)
    return await open_session(ctx, session, stream, client_network=ctx.networks.hash(address))


@router.get("/sessions/{session_id}/sources", response_model=SessionSources)
async def session_sources_route(
    session_id: SessionIdPath, claims: ViewerClaims, ctx: Context, session: Session
) -> SessionSources:
    """The session's sources as they are now, best first, and whether the stream is on air.

    The watch page asks every ``refresh_s`` (one segment duration), so viewers of a node that
    left, filled up or was flagged move within one segment. A session keeps its node while that
    node stays healthy. Only with the session's own token (``X-Streamr-Session`` or
    ``Authorization: Bearer``); at most 120 requests a minute.
    """
    await throttle_session_calls(ctx, claims.session_id, "sources")
    return await session_sources(ctx, session, claims)


@router.post("/sessions/{session_id}/receipts", response_model=ReceiptAck)
async def session_receipts_route(
    session_id: SessionIdPath,
    claims: ViewerClaims,
    body: ReceiptBatch,
    ctx: Context,
    session: Session,
) -> ReceiptAck:
    """Report which source delivered which segment: bytes, time to first byte, outcome.

    Idempotent: a batch id already stored for this session is answered again with
    ``duplicate``, so resend freely after a network fault. A ``mismatch`` moves this session
    away from the node and has the worker probe the node within seconds; the node leaves routing
    for every viewer (``STREAMR_VIEWER_FLAG_S``) when the probe confirms it or viewers of two
    sessions report mismatches. Errors and stalls move this session away from it. Only with the
    session's own token; at most 120 batches a minute.
    """
    await throttle_session_calls(ctx, claims.session_id, "receipts")
    ack = await record_receipts(session, claims, body, bucket_s=ctx.settings.reconcile_interval_s)
    if not ack.duplicate:
        for node_id in sorted(
            {r.node_id for r in body.receipts if r.outcome == "mismatch" and r.node_id}
        ):
            await request_targeted_probe(ctx, node_id)
    return ack
