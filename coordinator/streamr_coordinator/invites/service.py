"""Invite codes: created by a stream's owner, redeemed by friends to attach nodes."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..accounts.models import Account
from ..credentials import INVITE_CODE_PREFIX, new_secret, secret_hash
from ..database import utcnow
from ..errors import Gone, NotFound
from ..streams.models import Stream
from .models import Invite
from .schemas import InviteOut

log = logging.getLogger("streamr.invites")


def invite_state(invite: Invite) -> str:
    if invite.revoked_at is not None:
        return "revoked"
    if invite.expires_at <= utcnow():
        return "expired"
    if invite.uses >= invite.max_uses:
        return "used_up"
    return "active"


def invite_out(invite: Invite, stream_name: str) -> InviteOut:
    return InviteOut(
        id=invite.id,
        stream=stream_name,
        label=invite.label,
        created_at=invite.created_at,
        expires_at=invite.expires_at,
        max_uses=invite.max_uses,
        uses=invite.uses,
        state=invite_state(invite),  # type: ignore[arg-type]
    )


async def create_invite(
    session: AsyncSession,
    stream: Stream,
    creator: Account,
    label: str,
    expires_in_s: int,
    max_uses: int,
) -> tuple[Invite, str]:
    code = new_secret(INVITE_CODE_PREFIX, 18)
    invite = Invite(
        stream_id=stream.id,
        code_hash=secret_hash(code),
        label=label,
        created_by=creator.id,
        expires_at=utcnow() + timedelta(seconds=expires_in_s),
        max_uses=max_uses,
    )
    session.add(invite)
    await session.commit()
    log.info("invite created", extra={"stream": stream.name, "invite_id": invite.id})
    return invite, code


async def list_invites(session: AsyncSession, stream: Stream) -> list[Invite]:
    rows = await session.scalars(
        select(Invite).where(Invite.stream_id == stream.id).order_by(Invite.created_at.desc())
    )
    return list(rows)


async def revoke_invite(session: AsyncSession, stream: Stream, invite_id: str) -> None:
    invite = await session.get(Invite, invite_id)
    if invite is None or invite.stream_id != stream.id:
        raise NotFound(f"Stream {stream.name!r} has no invite {invite_id!r}.")
    if invite.revoked_at is None:
        invite.revoked_at = utcnow()
        await session.commit()
        log.info("invite revoked", extra={"stream": stream.name, "invite_id": invite.id})


async def redeem(session: AsyncSession, code: str) -> Invite:
    """Use one of the invite's uses, or say why it cannot be used. Does not commit.

    The use counter is bumped with a conditional update, so concurrent redemptions can never
    exceed ``max_uses``.
    """
    invite = await session.scalar(select(Invite).where(Invite.code_hash == secret_hash(code)))
    if invite is None:
        raise NotFound("This invite code is unknown; check it with the streamer who sent it.")
    state = invite_state(invite)
    if state != "active":
        raise Gone(f"This invite is {state.replace('_', ' ')}; ask the streamer for a new one.")
    result = await session.execute(
        update(Invite)
        .where(
            Invite.id == invite.id,
            Invite.uses < Invite.max_uses,
            Invite.revoked_at.is_(None),
        )
        .values(uses=Invite.uses + 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise Gone("This invite was used up a moment ago; ask the streamer for a new one.")
    return invite
