"""The dashboards' JSON: what each page shows, polled by its script every few seconds.

Each route takes an access token like every API route, or the dashboards' cookie session (how
the pages' scripts call them). Only GETs: a cookie alone never changes anything here.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..accounts.auth import Context, Session, bearer_token, current_account, optional_account
from ..accounts.models import Account, Role
from ..errors import Forbidden, Unauthorized
from ..routing import DocumentedRoute
from .schemas import FriendDashboard, OperatorDashboard, PublicDashboard, StreamerDashboard
from .service import friend_dashboard, operator_dashboard, public_dashboard, streamer_dashboard
from .sessions import web_session

router = APIRouter(route_class=DocumentedRoute, prefix="/api/v1/dashboards", tags=["dashboards"])


async def signed_in(request: Request, ctx: Context, session: Session) -> Account:
    """The caller's account from the bearer token if one is sent, else from the cookie."""
    if bearer_token(request) is not None:
        return await current_account(request, ctx, session)
    web = await web_session(request, session)
    if web is None:
        raise Unauthorized(
            "Log in first: at /login in a browser, or send 'Authorization: Bearer <access token>'."
        )
    return web.account


@router.get("/public", response_model=PublicDashboard)
async def public_route(request: Request, ctx: Context, session: Session) -> PublicDashboard:
    """Live streams and the leaderboard of friends by delivered bytes. Public."""
    await optional_account(request, ctx, session)  # a token that does not verify is still a 401
    return await public_dashboard(ctx, session)


@router.get("/streamer", response_model=StreamerDashboard)
async def streamer_route(request: Request, ctx: Context, session: Session) -> StreamerDashboard:
    """The caller's streams: state, invites, supporting nodes, viewers, bytes and savings.

    Never a stream key or an invite code. For streamers and admins, with an access token or
    the dashboards' login cookie.
    """
    account = await signed_in(request, ctx, session)
    if account.role not in (Role.STREAMER, Role.ADMIN):
        raise Forbidden("This dashboard is for streamers; a friend's is /api/v1/dashboards/friend.")
    return await streamer_dashboard(ctx, session, account)


@router.get("/friend", response_model=FriendDashboard)
async def friend_route(request: Request, ctx: Context, session: Session) -> FriendDashboard:
    """The caller's nodes: presence, reachability with what to fix, bytes delivered.

    Any account (whoever runs nodes is a friend here), with an access token or the
    dashboards' login cookie.
    """
    account = await signed_in(request, ctx, session)
    return await friend_dashboard(ctx, session, account)


@router.get("/operator", response_model=OperatorDashboard)
async def operator_route(request: Request, ctx: Context, session: Session) -> OperatorDashboard:
    """Every stream and node, nodes flagged by integrity failures, error rates. Admins only.

    With an access token or the dashboards' login cookie.
    """
    account = await signed_in(request, ctx, session)
    if account.role != Role.ADMIN:
        raise Forbidden("Only an admin may see the operator's dashboard.")
    return await operator_dashboard(ctx, session)
