"""Account operations: register, log in, refresh, log out, create admins."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..context import AppContext
from ..credentials import REFRESH_TOKEN_PREFIX, new_secret, secret_hash
from ..database import utcnow
from ..errors import Conflict, TooManyRequests, Unauthorized
from .models import Account, RefreshToken, Role
from .passwords import hash_password, verify_password
from .schemas import AccountOut, TokenPair
from .tokens import issue_access_token

log = logging.getLogger("streamr.accounts")


def normalize_email(email: str) -> str:
    return email.strip().lower()


def account_out(account: Account) -> AccountOut:
    return AccountOut(
        id=account.id,
        email=account.email,
        display_name=account.display_name,
        role=account.role,
        created_at=account.created_at,
    )


async def find_by_email(session: AsyncSession, email: str) -> Account | None:
    return await session.scalar(select(Account).where(Account.email == normalize_email(email)))


async def create_account(
    session: AsyncSession, email: str, password: str, display_name: str, role: Role
) -> Account:
    if await find_by_email(session, email) is not None:
        raise Conflict(f"An account with email {normalize_email(email)} exists already; log in.")
    account = Account(
        email=normalize_email(email),
        display_name=display_name,
        role=role.value,
        password_hash=await hash_password(password),
    )
    session.add(account)
    await session.commit()
    log.info("account created", extra={"account_id": account.id, "role": account.role})
    return account


async def throttle(ctx: AppContext, action: str, client: str) -> None:
    limit = ctx.settings.auth_attempts_per_minute
    if await ctx.attempts.hit(f"{action}:{client}", 60) > limit:
        log.warning("throttled", extra={"action": action, "client": client})
        raise TooManyRequests(
            f"Too many {action} attempts from your address; wait a minute and try again.",
            headers={"Retry-After": "60"},
        )


async def issue_tokens(ctx: AppContext, session: AsyncSession, account: Account) -> TokenPair:
    refresh = new_secret(REFRESH_TOKEN_PREFIX)
    ttl = ctx.settings.refresh_token_ttl_s
    session.add(
        RefreshToken(
            account_id=account.id,
            token_hash=secret_hash(refresh),
            expires_at=utcnow() + timedelta(seconds=ttl),
        )
    )
    await session.commit()
    access_ttl = ctx.settings.access_token_ttl_s
    return TokenPair(
        access_token=issue_access_token(ctx.keys, account.id, account.role, access_ttl),
        expires_in=access_ttl,
        refresh_token=refresh,
        refresh_expires_in=ttl,
        account=account_out(account),
    )


async def login(ctx: AppContext, session: AsyncSession, email: str, password: str) -> TokenPair:
    account = await find_by_email(session, email)
    ok = await verify_password(password, account.password_hash if account else None)
    if account is None or not ok or account.disabled_at is not None:
        log.info("login refused")
        raise Unauthorized("Email or password is wrong.")
    log.info("login", extra={"account_id": account.id})
    return await issue_tokens(ctx, session, account)


async def refresh(ctx: AppContext, session: AsyncSession, token: str) -> TokenPair:
    """Trade a refresh token for a new pair; the old one stops working.

    Presenting a token that was already used or revoked means it leaked (or a client is
    confused): every session of that account is ended, so a thief's copy dies too.
    """
    stored = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == secret_hash(token))
    )
    now = utcnow()
    if stored is None:
        raise Unauthorized("This refresh token is unknown; log in again.")
    if stored.revoked_at is not None:
        await revoke_all(session, stored.account_id)
        log.warning("revoked refresh token reused", extra={"account_id": stored.account_id})
        raise Unauthorized("This refresh token was already used or revoked; log in again.")
    if stored.expires_at <= now:
        raise Unauthorized("This refresh token has expired; log in again.")
    account = await session.get(Account, stored.account_id)
    if account is None or account.disabled_at is not None:
        raise Unauthorized("The account behind this token no longer exists or is disabled.")
    # Conditional update: of two concurrent refreshes with the same token, only one wins.
    claimed = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == stored.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    if claimed.rowcount != 1:
        raise Unauthorized("This refresh token was already used; log in again.")
    return await issue_tokens(ctx, session, account)


async def revoke_all(session: AsyncSession, account_id: str) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.account_id == account_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    await session.commit()


async def logout(session: AsyncSession, token: str, everywhere: bool) -> None:
    """Revoke the given refresh token (and optionally all others). Unknown tokens are ignored:
    logging out twice is not an error."""
    stored = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == secret_hash(token))
    )
    if stored is None:
        return
    if everywhere:
        await revoke_all(session, stored.account_id)
    elif stored.revoked_at is None:
        stored.revoked_at = utcnow()
        await session.commit()
    log.info("logout", extra={"account_id": stored.account_id, "everywhere": everywhere})
