from __future__ import annotations

from fastapi import APIRouter, Query

from streamr_protocol.attestation import AttestationKey, SegmentIndex

from ..accounts.auth import Context, Session
from ..routing import DocumentedRoute
from ..streams.routes import StreamName
from ..streams.service import get_stream
from .service import signed_index

router = APIRouter(route_class=DocumentedRoute, prefix="/api/v1", tags=["attestation"])


@router.get("/attestation/key", response_model=AttestationKey)
async def attestation_key(ctx: Context) -> AttestationKey:
    """The public key that verifies every segment signature (raw Ed25519, base64url)."""
    return ctx.signer.public()


@router.get("/streams/{name}/segments", response_model=SegmentIndex)
async def segment_index(
    name: StreamName,
    ctx: Context,
    session: Session,
    since: int | None = Query(
        default=None, ge=-1, le=2**62, description="Only segments after this sequence"
    ),
    limit: int = Query(default=30, ge=1, le=500),
) -> SegmentIndex:
    """The stream's signed segment index: the newest segments, or those after ``since``.

    Public: it holds hashes and signatures, nothing secret, and is what lets an untrusted node
    (and the viewer behind it) prove a segment is the streamer's.
    """
    stream = await get_stream(session, name)
    entries = await signed_index(session, stream, since, limit)
    return SegmentIndex(stream=stream.name, key_id=ctx.signer.key_id, segments=entries)
