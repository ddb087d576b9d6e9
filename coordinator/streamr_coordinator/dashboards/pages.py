"""The dashboards' HTML pages and the forms they post. Not part of the API schema.

Private pages send anonymous visitors to /login (303) and answer 403 with a page that says
whose page it is. Every POST checks its CSRF token before it does anything else (403 without
it). A stream key or invite code is shown once, on the answer to the POST that made it, with
``Cache-Control: no-store``; the coordinator keeps only its hash.
"""

from __future__ import annotations

import logging
import uuid
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from ..accounts.auth import Context, Session
from ..accounts.models import Account, Role
from ..accounts.routes import client_address
from ..accounts.schemas import LoginRequest
from ..accounts.service import login, logout, throttle
from ..errors import AppError, Unauthorized
from ..invites.schemas import InviteCreate
from ..invites.service import create_invite
from ..payouts import terms
from ..payouts.budgets import fund_stream
from ..payouts.schemas import FundBudget
from ..payouts.statements import Scope, build_statement, friend_scope, streamer_scope, to_csv
from ..streams.models import Stream
from ..streams.service import ensure_manager, get_stream, rotate_key
from .money import format_usd, parse_percent, parse_usd
from .rendering import PageError, page_headers, render
from .service import (
    FRIEND_CSV,
    OPERATOR_CSV,
    STREAMER_CSV,
    friend_dashboard,
    operator_dashboard,
    public_dashboard,
    streamer_dashboard,
)
from .sessions import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    WebSession,
    end_session,
    login_csrf,
    remember_login_csrf,
    same_token,
    start_session,
    web_session,
)

router = APIRouter(include_in_schema=False)
log = logging.getLogger("streamr.dashboards")

STREAMER_PAGE = "/dashboard/streamer"
FRIEND_PAGE = "/dashboard/friend"
OPERATOR_PAGE = "/dashboard/operator"
PRIVATE_PAGES = (STREAMER_PAGE, FRIEND_PAGE, OPERATOR_PAGE)
HOME_BY_ROLE = {Role.STREAMER: STREAMER_PAGE, Role.FRIEND: FRIEND_PAGE, Role.ADMIN: OPERATOR_PAGE}
MAX_FORM_FIELDS = 20

CSRF_REJECTED = (
    "This form's CSRF token is missing or wrong, so nothing was changed. The form may be older "
    "than your current login, or it did not come from this site. Reload the page and try again."
)


class LoginRequired(PageError):
    """Raised for anonymous visitors of private pages; answered with a redirect to /login."""

    def __init__(self, back_to: str | None) -> None:
        super().__init__(401, "Log in to see this page.")
        self.back_to = back_to


def back_to(value: str | None) -> str | None:
    """Where to go after logging in: only one of our own pages, never an outside address."""
    return value if value in PRIVATE_PAGES else None


async def require_login(request: Request, session: Session, page: str | None) -> WebSession:
    web = await web_session(request, session)
    if web is None:
        raise LoginRequired(page)
    return web


def require_streamer(account: Account) -> None:
    if account.role not in (Role.STREAMER, Role.ADMIN):
        raise PageError(
            403,
            "This page is for streamers, and yours is a friend's account: your nodes are on "
            f"the friend dashboard ({FRIEND_PAGE}).",
            "Not a streamer's account",
        )


async def read_form(request: Request) -> dict[str, str]:
    """The posted form's fields (the first value of each), as the pages' forms send them.

    Anything else is read as an empty form, which no CSRF check passes: a POST that did not
    come from one of our pages is refused with 403 before its body is even looked at.
    """
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        return {}
    body = await request.body()
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise PageError(
            400, f"The form could not be read: send UTF-8, at most {MAX_FORM_FIELDS} fields."
        ) from None
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    if any("\x00" in value for value in form.values()):
        raise PageError(400, "A form field holds a NUL character; no value of ours can.")
    return form


def check_csrf(web: WebSession, form: dict[str, str]) -> None:
    if not same_token(web.csrf_token, form.get(CSRF_FIELD)):
        log.warning("csrf token rejected", extra={"account_id": web.account.id})
        raise PageError(403, CSRF_REJECTED, "Form rejected")


def as_page_error(exc: AppError) -> PageError:
    return PageError(exc.status, exc.message, headers=exc.headers)


# --- Public and login ----------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
async def public_page(request: Request, ctx: Context, session: Session) -> Response:
    web = await web_session(request, session)
    data = await public_dashboard(ctx, session)
    return render(request, "public.html", private=web is not None, web=web, data=data)


def _login_form(
    request: Request,
    ctx: Context,
    web: WebSession | None,
    *,
    status: int = 200,
    error: str | None = None,
    email: str = "",
    next_page: str | None = None,
) -> Response:
    token = login_csrf(request)
    response = render(
        request,
        "login.html",
        status=status,
        web=web,
        csrf=token,
        error=error,
        email=email,
        next_page=next_page,
    )
    remember_login_csrf(response, token, ctx.settings)
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, ctx: Context, session: Session) -> Response:
    web = await web_session(request, session)
    return _login_form(request, ctx, web, next_page=back_to(request.query_params.get("next")))


@router.post("/login", response_class=HTMLResponse)
async def login_submit(request: Request, ctx: Context, session: Session) -> Response:
    form = await read_form(request)
    if not same_token(request.cookies.get(LOGIN_CSRF_COOKIE), form.get(CSRF_FIELD)):
        raise PageError(
            403,
            "This login form has expired or did not come from this site (its CSRF token is "
            "missing or wrong). Reload the login page and log in again.",
            "Form rejected",
        )
    next_page = back_to(form.get("next"))
    try:
        await throttle(ctx, "login", client_address(request))
    except AppError as exc:
        raise as_page_error(exc) from exc
    email, password = form.get("email", "").strip(), form.get("password", "")
    try:
        LoginRequest(email=email, password=password)
    except ValidationError:
        return _login_form(
            request,
            ctx,
            None,
            status=400,
            error="Enter the email address and password of your account.",
            email=email[:254],
            next_page=next_page,
        )
    try:
        pair = await login(ctx, session, email, password)
    except Unauthorized:
        return _login_form(
            request,
            ctx,
            None,
            status=401,
            error="Email or password is wrong.",
            email=email,
            next_page=next_page,
        )
    home = HOME_BY_ROLE.get(Role(pair.account.role), FRIEND_PAGE)
    response = RedirectResponse(next_page or home, status_code=303)
    start_session(response, pair.refresh_token, pair.refresh_expires_in, ctx.settings)
    return response


@router.post("/logout")
async def logout_submit(request: Request, ctx: Context, session: Session) -> Response:
    form = await read_form(request)
    web = await web_session(request, session)
    if web is not None:
        check_csrf(web, form)
        await logout(session, web.token, everywhere=False)
    response = RedirectResponse("/login", status_code=303)
    end_session(response, ctx.settings)
    return response


# --- Private pages -------------------------------------------------------------------------


@router.get(STREAMER_PAGE, response_class=HTMLResponse)
async def streamer_page(request: Request, ctx: Context, session: Session) -> Response:
    web = await require_login(request, session, STREAMER_PAGE)
    return await _streamer_page(request, ctx, session, web)


async def _streamer_page(
    request: Request, ctx: Context, session: Session, web: WebSession, recorded: str | None = None
) -> Response:
    require_streamer(web.account)
    data = await streamer_dashboard(ctx, session, web.account)
    return render(
        request,
        "streamer.html",
        web=web,
        data=data,
        price_per_gb=format_usd(data.cdn_price_micro_usd_per_gb),
        # One id per page view: the same form sent twice (a double click, a resend) records
        # the funds once.
        funding_id=uuid.uuid4().hex,
        recorded=next((s for s in data.streams if s.name == recorded), None),
    )


@router.get(FRIEND_PAGE, response_class=HTMLResponse)
async def friend_page(request: Request, ctx: Context, session: Session) -> Response:
    web = await require_login(request, session, FRIEND_PAGE)
    data = await friend_dashboard(ctx, session, web.account)
    return render(request, "friend.html", web=web, data=data)


@router.get(OPERATOR_PAGE, response_class=HTMLResponse)
async def operator_page(request: Request, ctx: Context, session: Session) -> Response:
    web = await require_login(request, session, OPERATOR_PAGE)
    if web.account.role != Role.ADMIN:  # the page says more than require_admin_page
        raise PageError(
            403,
            "The operator's dashboard is for admins of this coordinator. Admins are made with "
            "`streamr admin create` on the coordinator's machine.",
            "Admins only",
        )
    data = await operator_dashboard(ctx, session)
    return render(request, "operator.html", web=web, data=data)


def require_admin_page(account: Account) -> None:
    if account.role != Role.ADMIN:
        raise PageError(403, "Only an admin may do this.", "Admins only")


async def _managed_stream(session: Session, web: WebSession, name: str) -> Stream:
    require_streamer(web.account)
    try:
        stream = await get_stream(session, name)
        ensure_manager(stream, web.account)
    except AppError as exc:
        raise as_page_error(exc) from exc
    return stream


@router.post(STREAMER_PAGE + "/streams/{name}/key", response_class=HTMLResponse)
async def show_new_key(name: str, request: Request, ctx: Context, session: Session) -> Response:
    """Replace the stream key and show the new one, once: the old one cannot be shown."""
    web = await require_login(request, session, None)
    check_csrf(web, await read_form(request))
    stream = await _managed_stream(session, web, name)
    key = await rotate_key(session, stream)
    log.info("stream key shown on the dashboard", extra={"stream": stream.name})
    return render(
        request,
        "secret.html",
        web=web,
        kind="key",
        stream=stream,
        secret=key,
        obs_server=ctx.settings.ingest_rtmp_url,
        join_command=None,
    )


@router.post(STREAMER_PAGE + "/streams/{name}/invites", response_class=HTMLResponse)
async def create_invite_from_page(
    name: str, request: Request, ctx: Context, session: Session
) -> Response:
    web = await require_login(request, session, None)
    form = await read_form(request)
    check_csrf(web, form)
    stream = await _managed_stream(session, web, name)
    try:
        wanted = InviteCreate(
            label=form.get("label", "").strip(),
            max_uses=int(form.get("max_uses", "1") or "1"),
            expires_in_s=int(form.get("expires_in_days", "7") or "7") * 86_400,
        )
    except (ValueError, ValidationError):
        raise PageError(
            400,
            "The invite was not created: the label may have up to 64 characters, an invite "
            "allows 1 to 1000 nodes and lasts 1 to 90 days.",
        ) from None
    invite, code = await create_invite(
        session, stream, web.account, wanted.label, wanted.expires_in_s, wanted.max_uses
    )
    coordinator = ctx.settings.public_url or f"http://{ctx.settings.host}:{ctx.settings.port}"
    return render(
        request,
        "secret.html",
        web=web,
        kind="invite",
        stream=stream,
        secret=code,
        obs_server=None,
        join_command=f"streamr-node join {coordinator} --invite {code}",
        invite=invite,
    )


FUNDS_REFUSED = (
    "The funds were not recorded: enter the amount received in US dollars, more than 0 and "
    "at most 1,000,000, with at most six decimals (e.g. 25 or 12.50); a note may have up to "
    "200 characters."
)


@router.post(STREAMER_PAGE + "/streams/{name}/budget", response_class=HTMLResponse)
async def record_funds(name: str, request: Request, ctx: Context, session: Session) -> Response:
    """Record money the streamer paid outside the platform into the stream's budget."""
    web = await require_login(request, session, None)
    form = await read_form(request)
    check_csrf(web, form)
    stream = await _managed_stream(session, web, name)
    try:
        wanted = FundBudget(
            amount_micro_usd=parse_usd(form.get("amount", "")),
            funding_id=form.get("funding_id") or None,
            note=form.get("note", "").strip(),
        )
    except (ValueError, ValidationError):
        raise PageError(400, FUNDS_REFUSED) from None
    funding = await fund_stream(
        session,
        stream,
        wanted.amount_micro_usd,
        actor=f"account:{web.account.id}",
        funding_id=wanted.funding_id,
        note=wanted.note,
    )
    log.info(
        "funds recorded on the dashboard",
        extra={"stream": stream.name, "duplicate": funding.duplicate},
    )
    # The page itself, saying what was recorded: sending the form again (a reload) records
    # nothing more, as the form's funding id was used.
    return await _streamer_page(request, ctx, session, web, recorded=stream.name)


# (form field, economics term, parser, what to type)
ECONOMICS_FIELDS = (
    ("rate_usd", "rate_micro_usd_per_gb", parse_usd, "US dollars per GB, e.g. 0.05"),
    ("platform_fee_percent", "platform_fee_bps", parse_percent, "percent, e.g. 10 or 12.5"),
    ("minimum_payout_usd", "minimum_payout_micro_usd", parse_usd, "US dollars, e.g. 1.00"),
    ("vetting_pay_percent", "vetting_pay_bps", parse_percent, "percent, e.g. 50"),
    ("payout_period_s", "payout_period_s", int, "whole seconds, e.g. 86400 for a day"),
)


@router.post(OPERATOR_PAGE + "/economics", response_class=HTMLResponse)
async def change_economics(request: Request, ctx: Context, session: Session) -> Response:
    """A new version of the economics: the terms the form changed, the others as they were."""
    web = await require_login(request, session, None)
    form = await read_form(request)
    check_csrf(web, form)
    require_admin_page(web.account)
    current, _ = await terms.current_economics(session, ctx.settings)
    changes: dict[str, int] = {}
    problems = []
    for field, term, parse, hint in ECONOMICS_FIELDS:
        text = form.get(field, "").strip()
        if not text:
            continue  # left empty: unchanged
        try:
            value = parse(text)
        except ValueError:
            problems.append(f"{field.replace('_', ' ')} must be {hint}, not {text[:40]!r}")
            continue
        if value != getattr(current, term):
            changes[term] = value
    note = form.get("note", "").strip()
    if len(note) > 200:
        problems.append("the note may have up to 200 characters")
    if problems:
        raise PageError(400, "The economics were not changed: " + "; ".join(problems) + ".")
    try:
        await terms.set_economics(
            session, ctx.settings, changes, actor=f"account:{web.account.id}", note=note
        )
    except AppError as exc:
        raise as_page_error(exc) from exc
    log.info("economics changed on the dashboard", extra={"terms": sorted(changes)})
    return RedirectResponse(f"{OPERATOR_PAGE}#economics", status_code=303)


# --- Statements as CSV, for the logged-in browser ------------------------------------------


async def _csv(request: Request, ctx: Context, session: Session, scope: Scope) -> Response:
    economics, _ = await terms.current_economics(session, ctx.settings)
    statement = await build_statement(
        session, scope, minimum_payout=economics.minimum_payout_micro_usd, limit=100_000
    )
    headers = page_headers(private=True)
    headers["Content-Disposition"] = f'attachment; filename="streamr-{scope.kind}-statement.csv"'
    return Response(to_csv(statement), media_type="text/csv; charset=utf-8", headers=headers)


@router.get(FRIEND_CSV)
async def friend_csv(request: Request, ctx: Context, session: Session) -> Response:
    web = await require_login(request, session, FRIEND_PAGE)
    return await _csv(request, ctx, session, await friend_scope(session, web.account.id))


@router.get(STREAMER_CSV)
async def streamer_csv(request: Request, ctx: Context, session: Session) -> Response:
    web = await require_login(request, session, STREAMER_PAGE)
    require_streamer(web.account)
    return await _csv(request, ctx, session, await streamer_scope(session, web.account.id))


@router.get(OPERATOR_CSV)
async def operator_csv(request: Request, ctx: Context, session: Session) -> Response:
    web = await require_login(request, session, OPERATOR_PAGE)
    require_admin_page(web.account)
    return await _csv(request, ctx, session, Scope("operator"))
