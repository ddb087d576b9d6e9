"""The dashboards' cookie session, and the CSRF tokens that every form of theirs carries.

A login through the form is an ordinary login of the accounts service: the refresh token it
returns becomes the session, kept in the browser as an HttpOnly cookie and on the server (as
the accounts domain keeps every refresh token) only as its SHA-256. Logging out revokes it, and
so does logging out everywhere through the API. The cookie is SameSite=Lax, and Secure when the
coordinator's public URL is https. Pages never see the token in JavaScript.

CSRF: a form that changes something carries a token derived from the session (HMAC-SHA256 keyed
with the session's secret). Another site's page cannot read the cookie, so it cannot compute the
token, and the server recomputes and compares it in constant time. The login form comes before
any session, so it uses a double-submit cookie instead: a random value both in a cookie and in
the form, which must match.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..accounts.models import Account, RefreshToken
from ..credentials import REFRESH_TOKEN_PREFIX, secret_hash
from ..database import utcnow
from ..settings import Settings

SESSION_COOKIE = "streamr_session"
LOGIN_CSRF_COOKIE = "streamr_login_csrf"
CSRF_FIELD = "csrf_token"
_CSRF_LABEL = b"streamr dashboards csrf v1"
_MAX_TOKEN_LENGTH = 256


@dataclass(frozen=True)
class WebSession:
    account: Account
    token: str

    @property
    def csrf_token(self) -> str:
        return csrf_for(self.token)


def csrf_for(session_token: str) -> str:
    return hmac.new(session_token.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def same_token(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison that is simply False for a missing value."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def cookie_is_secure(settings: Settings) -> bool:
    return (settings.public_url or "").strip().lower().startswith("https://")


async def web_session(request: Request, session: AsyncSession) -> WebSession | None:
    """The account behind the session cookie, or None (no cookie, or one that ended)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > _MAX_TOKEN_LENGTH or not token.startswith(REFRESH_TOKEN_PREFIX):
        return None
    account = await session.scalar(
        select(Account)
        .join(RefreshToken, RefreshToken.account_id == Account.id)
        .where(
            RefreshToken.token_hash == secret_hash(token),
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > utcnow(),
            Account.disabled_at.is_(None),
        )
    )
    return WebSession(account=account, token=token) if account is not None else None


def start_session(response: Response, token: str, max_age_s: int, settings: Settings) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age_s,
        path="/",
        httponly=True,
        samesite="lax",
        secure=cookie_is_secure(settings),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")


def end_session(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=cookie_is_secure(settings),
    )


def login_csrf(request: Request) -> str:
    """The login form's double-submit value: the browser's current one, or a new one."""
    current = request.cookies.get(LOGIN_CSRF_COOKIE)
    if current and 32 <= len(current) <= 64 and current.isascii():
        return current
    return secrets.token_urlsafe(32)


def remember_login_csrf(response: Response, value: str, settings: Settings) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        value,
        max_age=3600,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=cookie_is_secure(settings),
    )
