from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Response

from streamr_protocol.ingest import (
    RELAY_HEADER,
    PublishingNow,
    SegmentBatch,
    SegmentBatchResult,
    SyncResult,
)

from ..accounts.auth import Context, Session
from ..attestation.service import ReportedSegment, register_segments
from ..database import utcnow
from ..errors import AppError
from ..routing import DocumentedRoute
from .auth import require_ingest
from .service import authorize_publish, publish_ended, publish_started, reconcile

router = APIRouter(
    route_class=DocumentedRoute,
    prefix="/api/v1/ingest",
    tags=["ingest"],
    dependencies=[Depends(require_ingest)],
)


async def _hook_fields(request: Request) -> dict[str, str]:
    """nginx-rtmp posts its hooks form-encoded; read the fields it sends."""
    body = (await request.body()).decode("utf-8", errors="replace")
    fields = {key: values[0] for key, values in parse_qs(body, max_num_fields=50).items()}
    if not fields.get("name"):
        raise AppError("The hook carried no stream name (form field 'name').")
    return fields


@router.post("/hooks/authorize", status_code=302)
async def authorize_hook(request: Request, ctx: Context, session: Session) -> Response:
    """Authorize a publish (nginx-rtmp on_publish of the ingest application).

    Checks the stream key, then sends the stream on to
    the HLS application under its public name (a 3xx with an rtmp:// Location makes nginx-rtmp
    relay it there), so the key never appears in a path a viewer sees."""
    fields = await _hook_fields(request)
    relay_base = request.headers.get(RELAY_HEADER, "")
    if not relay_base.startswith("rtmp://"):
        raise AppError(f"The ingest must send {RELAY_HEADER}: rtmp://host:port/app.")
    stream = await authorize_publish(ctx, session, fields["name"], fields.get("addr", "unknown"))
    return Response(
        status_code=302, headers={"Location": f"{relay_base.rstrip('/')}/{stream.name}"}
    )


@router.post("/hooks/publish")
async def publish_hook(request: Request, session: Session) -> dict[str, str]:
    """The stream is on air (on_publish of the HLS application)."""
    stream = await publish_started(session, (await _hook_fields(request))["name"])
    return {"stream": stream.name, "status": stream.status}


@router.post("/hooks/publish-done")
async def publish_done_hook(request: Request, session: Session) -> dict[str, str | None]:
    """The stream went off air (on_publish_done of the HLS application)."""
    name = (await _hook_fields(request))["name"]
    stream = await publish_ended(session, name)
    return {"stream": name, "status": stream.status if stream else None}


@router.post("/segments", response_model=SegmentBatchResult)
async def segments_route(body: SegmentBatch, ctx: Context, session: Session) -> SegmentBatchResult:
    """The origin watcher reports finished segments; each is signed once and kept."""
    reported = [ReportedSegment(**item.model_dump()) for item in body.segments]
    replace_before = utcnow() - timedelta(seconds=ctx.settings.segment_retention_s)
    accepted, known = await register_segments(session, ctx.signer, reported, replace_before)
    return SegmentBatchResult(accepted=accepted, known=known)


@router.post("/sync", response_model=SyncResult)
async def sync_route(body: PublishingNow, session: Session) -> SyncResult:
    """The ingest says which streams it is really publishing; states follow."""
    return SyncResult(changed=await reconcile(session, set(body.publishing), body.complete))
