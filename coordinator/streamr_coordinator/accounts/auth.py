"""Who is calling: FastAPI dependencies that turn a bearer token into an account.

Routes declare what they need (``CurrentAccount``, ``OptionalAccount``, ``require_admin``) and
never parse headers themselves.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from ..context import AppContext, get_context, get_session
from ..credentials import NODE_TOKEN_PREFIX
from ..errors import Forbidden, Unauthorized
from .models import Account, Role
from .tokens import InvalidToken, verify_access_token


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send the token as 'Authorization: Bearer <token>'.")
    return token.strip()


async def _account_from_token(token: str, ctx: AppContext, session: AsyncSession) -> Account:
    if token.startswith(NODE_TOKEN_PREFIX):
        raise Forbidden(
            "A node token only works for that node's own routes (heartbeat, assignment, usage, "
            "reachability, details, deregistration); this route needs an account's access "
            "token from POST /api/v1/auth/login."
        )
    try:
        claims = verify_access_token(ctx.keys, token)
    except InvalidToken as exc:
        raise Unauthorized(f"The access token is {exc}.") from exc
    account = await session.get(Account, claims.account_id)
    if account is None or account.disabled_at is not None:
        raise Unauthorized("The account behind this token no longer exists or is disabled.")
    return account


async def optional_account(
    request: Request,
    ctx: AppContext = Depends(get_context),
    session: AsyncSession = Depends(get_session),
) -> Account | None:
    """The caller's account, or None for anonymous callers. A bad token is still an error.

    A node token counts as anonymous: public routes serve a node as they serve anyone.
    """
    token = bearer_token(request)
    if token is None or token.startswith(NODE_TOKEN_PREFIX):
        return None
    return await _account_from_token(token, ctx, session)


async def current_account(
    request: Request,
    ctx: AppContext = Depends(get_context),
    session: AsyncSession = Depends(get_session),
) -> Account:
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("Log in first: send 'Authorization: Bearer <access token>'.")
    return await _account_from_token(token, ctx, session)


async def require_admin(account: Account = Depends(current_account)) -> Account:
    if account.role != Role.ADMIN:
        raise Forbidden("Only an admin may do this.")
    return account


CurrentAccount = Annotated[Account, Depends(current_account)]
OptionalAccount = Annotated[Account | None, Depends(optional_account)]
Session = Annotated[AsyncSession, Depends(get_session)]
Context = Annotated[AppContext, Depends(get_context)]


def is_admin(account: Account | None) -> bool:
    return account is not None and account.role == Role.ADMIN
