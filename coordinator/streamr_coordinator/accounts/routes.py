from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ..routing import DocumentedRoute
from .auth import Context, CurrentAccount, Session
from .models import Role
from .schemas import (
    AccountOut,
    LoginRequest,
    LogoutRequest,
    RefreshRequest,
    RegisterRequest,
    TokenPair,
)
from .service import account_out, create_account, issue_tokens, login, logout, refresh, throttle

router = APIRouter(route_class=DocumentedRoute, prefix="/api/v1", tags=["accounts"])


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/auth/register", status_code=201, response_model=TokenPair)
async def register_route(
    body: RegisterRequest, request: Request, ctx: Context, session: Session
) -> TokenPair:
    """Create a streamer or friend account and log it in. Admins are made with the CLI."""
    await throttle(ctx, "register", client_address(request))
    account = await create_account(
        session, body.email, body.password, body.display_name, Role(body.role)
    )
    return await issue_tokens(ctx, session, account)


@router.post("/auth/login", response_model=TokenPair)
async def login_route(
    body: LoginRequest, request: Request, ctx: Context, session: Session
) -> TokenPair:
    """Log in with email and password; returns an access and a refresh token."""
    await throttle(ctx, "login", client_address(request))
    return await login(ctx, session, body.email, body.password)


@router.post("/auth/refresh", response_model=TokenPair)
async def refresh_route(
    body: RefreshRequest, request: Request, ctx: Context, session: Session
) -> TokenPair:
    """Trade a refresh token for a new pair; the old one stops working."""
    await throttle(ctx, "refresh", client_address(request))
    return await refresh(ctx, session, body.refresh_token)


@router.post("/auth/logout", status_code=204)
async def logout_route(body: LogoutRequest, session: Session) -> Response:
    """Log out: revoke the refresh token (or, with everywhere, every session)."""
    await logout(session, body.refresh_token, body.everywhere)
    return Response(status_code=204)


@router.get("/auth/me", response_model=AccountOut)
async def me_route(account: CurrentAccount) -> AccountOut:
    """The calling account."""
    return account_out(account)
