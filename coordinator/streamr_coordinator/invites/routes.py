from __future__ import annotations

from fastapi import APIRouter, Response

from ..accounts.auth import Context, CurrentAccount, Session
from ..routing import DocumentedRoute
from ..streams.routes import StreamName
from ..streams.service import ensure_manager, get_stream
from .schemas import InviteCreate, InviteCreated, InviteOut
from .service import create_invite, invite_out, list_invites, revoke_invite

router = APIRouter(
    route_class=DocumentedRoute, prefix="/api/v1/streams/{name}/invites", tags=["invites"]
)


@router.post("", status_code=201, response_model=InviteCreated)
async def create_invite_route(
    name: StreamName, body: InviteCreate, account: CurrentAccount, ctx: Context, session: Session
) -> InviteCreated:
    """Create an invite code for friends' nodes. The code is shown only this once."""
    stream = await get_stream(session, name)
    ensure_manager(stream, account)
    invite, code = await create_invite(
        session, stream, account, body.label, body.expires_in_s, body.max_uses
    )
    coordinator = ctx.settings.public_url or f"http://{ctx.settings.host}:{ctx.settings.port}"
    return InviteCreated(
        **invite_out(invite, stream.name).model_dump(),
        code=code,
        join_command=f"streamr-node join {coordinator} --invite {code}",
    )


@router.get("", response_model=list[InviteOut])
async def list_invites_route(
    name: StreamName, account: CurrentAccount, session: Session
) -> list[InviteOut]:
    """The stream's invites and their state. Codes are never shown again."""
    stream = await get_stream(session, name)
    ensure_manager(stream, account)
    return [invite_out(i, stream.name) for i in await list_invites(session, stream)]


@router.delete("/{invite_id}", status_code=204)
async def revoke_invite_route(
    name: StreamName, invite_id: str, account: CurrentAccount, session: Session
) -> Response:
    """Revoke an invite. Nodes that already joined with it stay."""
    stream = await get_stream(session, name)
    ensure_manager(stream, account)
    await revoke_invite(session, stream, invite_id[:64])
    return Response(status_code=204)
