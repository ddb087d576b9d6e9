"""The payouts API: economics (operators), stream budgets (streamers), a node's earnings, and
statements for friends, streamers and operators (JSON, or CSV with ``?format=csv``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import exists, select

from ..accounts.auth import Context, CurrentAccount, Session, is_admin, require_admin
from ..accounts.models import Account, Role
from ..errors import AppError, Forbidden
from ..nodes.models import Node
from ..nodes.routes import CallingNode, NodeIdPath, account_unless_node
from ..nodes.service import visible_node
from ..routing import DocumentedRoute
from ..streams.models import Stream
from ..streams.routes import StreamName
from ..streams.service import ensure_manager, get_stream, may_manage
from . import terms
from .budgets import budget_state, fund_stream
from .economics import Economics, format_usd
from .models import Accrual, EconomicsVersion
from .schemas import (
    BudgetOut,
    EconomicsChange,
    EconomicsOut,
    EconomicsView,
    FundBudget,
    FundingOut,
    NodeEarnings,
    Statement,
)
from .statements import (
    Scope,
    accrual_lines,
    budget_out,
    build_statement,
    friend_scope,
    node_balances,
    payout_lines,
    streamer_scope,
    to_csv,
)

router = APIRouter(route_class=DocumentedRoute, prefix="/api/v1", tags=["payouts"])

Admin = Annotated[Account, Depends(require_admin)]
CSV_RESPONSE = {200: {"content": {"text/csv": {}}, "description": "The statement"}}


def economics_out(economics: Economics, row: EconomicsVersion | None) -> EconomicsOut:
    return EconomicsOut(
        version=row.id if row else None,
        rate_micro_usd_per_gb=economics.rate_micro_usd_per_gb,
        rate_usd_per_gb=format_usd(economics.rate_micro_usd_per_gb),
        platform_fee_bps=economics.platform_fee_bps,
        minimum_payout_micro_usd=economics.minimum_payout_micro_usd,
        minimum_payout_usd=format_usd(economics.minimum_payout_micro_usd),
        vetting_pay_bps=economics.vetting_pay_bps,
        payout_period_s=economics.payout_period_s,
        set_by=row.set_by if row else None,
        set_at=row.set_at if row else None,
        note=row.note if row else "",
    )


async def _current_out(session: Session, ctx: Context) -> EconomicsOut:
    row = await terms.latest_version(session)
    economics = terms.from_row(row) if row else terms.from_settings(ctx.settings)
    return economics_out(economics, row)


@router.get("/admin/economics", response_model=EconomicsView)
async def get_economics_route(_admin: Admin, ctx: Context, session: Session) -> EconomicsView:
    """The economics in force (rate, fee, minimum payout, vetting pay, payout period) and the
    versions operators set, newest first. Admins only."""
    rows = await terms.history(session)
    return EconomicsView(
        current=await _current_out(session, ctx),
        history=[economics_out(terms.from_row(r), r) for r in rows],
    )


@router.post("/admin/economics", status_code=201, response_model=EconomicsOut)
async def set_economics_route(
    body: EconomicsChange, admin: Admin, ctx: Context, session: Session
) -> EconomicsOut:
    """Change the economics: a new version with the terms given, the others as they were.

    Accruals from now on use it (each records its version); earlier ones keep theirs. Admins
    only. Values out of range are refused with what is allowed.
    """
    changes = body.model_dump(exclude_none=True, exclude={"note"})
    row = await terms.set_economics(
        session, ctx.settings, changes, actor=f"account:{admin.id}", note=body.note
    )
    return economics_out(terms.from_row(row), row)


async def _may_see_budget(session: Session, stream: Stream, account: Account) -> bool:
    """The streamer, admins, and friends with a node in the stream (they are told when it runs
    out)."""
    if may_manage(stream, account):
        return True
    return bool(
        await session.scalar(
            select(exists().where(Node.stream_id == stream.id, Node.owner_id == account.id))
        )
    )


@router.post(
    "/streams/{name}/budget",
    status_code=201,
    response_model=FundingOut,
    responses={200: {"description": "This funding id was recorded before"}},
)
async def fund_budget_route(
    name: StreamName,
    body: FundBudget,
    account: CurrentAccount,
    response: Response,
    session: Session,
) -> FundingOut:
    """Add funds to the stream's budget, from which friends' nodes are paid.

    There is no payment rail: this records money the operator received from the streamer. A
    ``funding_id`` makes a retry safe (recorded once; a repeat answers 200 with
    ``duplicate``). The stream's owner or an admin.
    """
    stream = await get_stream(session, name)
    ensure_manager(stream, account)
    funding = await fund_stream(
        session,
        stream,
        body.amount_micro_usd,
        actor=f"account:{account.id}",
        funding_id=body.funding_id,
        note=body.note,
    )
    if funding.duplicate:
        response.status_code = 200
    state = await budget_state(session, stream.id)
    return FundingOut(
        stream=stream.name,
        transaction_key=funding.key,
        amount_micro_usd=funding.amount_micro_usd,
        duplicate=funding.duplicate,
        budget=budget_out(stream.name, state),
    )


@router.get("/streams/{name}/budget", response_model=BudgetOut)
async def get_budget_route(
    name: StreamName, account: CurrentAccount, session: Session
) -> BudgetOut:
    """The stream's budget: balance, funded, spent, unfunded delivery and its state (``ok``,
    ``low``, ``exhausted``). The streamer, admins and friends with a node in the stream."""
    stream = await get_stream(session, name)
    if not await _may_see_budget(session, stream, account):
        raise Forbidden(
            f"Only the owner of stream {stream.name!r}, its friends' accounts or an admin may "
            "see its budget."
        )
    return budget_out(stream.name, await budget_state(session, stream.id))


@router.get("/nodes/{node_id}/earnings", response_model=NodeEarnings)
async def node_earnings_route(
    node_id: NodeIdPath,
    node: CallingNode,
    account: Annotated[Account | None, Depends(account_unless_node)],
    ctx: Context,
    session: Session,
) -> NodeEarnings:
    """A node's money: balance, what it earned and was paid, its latest accruals and payouts,
    its stream's budget and the economics in force.

    For the node itself (``streamr-node status``), its owner, the stream's owner and admins.
    """
    target, stream = await visible_node(session, node_id, node, account, "a node's earnings")
    economics = await _current_out(session, ctx)
    scope = Scope("friend", node_ids=(target.id,))
    recent = await accrual_lines(session, scope, None, None, 20, newest=True)
    last_pay = await session.scalar(
        select(Accrual.pay_bps)
        .where(Accrual.node_id == target.id, Accrual.paid_bytes > 0)
        .order_by(Accrual.interval_start.desc(), Accrual.id.desc())
        .limit(1)
    )
    (balance,) = await node_balances(session, [target.id], economics.minimum_payout_micro_usd)
    return NodeEarnings(
        node=balance,
        budget=budget_out(stream.name, await budget_state(session, stream.id)),
        economics=economics,
        pay_bps_last=last_pay,
        recent=recent,
        payouts=await payout_lines(session, [target.id], None, None, 10, newest=True),
    )


Format = Annotated[
    Literal["json", "csv"], Query(description="json, or csv for a spreadsheet (text/csv)")
]
Since = Annotated[datetime | None, Query(description="Lines from this time on (UTC)")]
Until = Annotated[datetime | None, Query(description="Lines before this time (UTC)")]
Limit = Annotated[int, Query(ge=1, le=100_000, description="At most this many lines per kind")]


def _utc(value: datetime | None, field: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise AppError(f"{field} needs a time zone, e.g. 2026-01-01T00:00:00Z.")
    return value


async def _answer(
    session: Session,
    ctx: Context,
    scope: Scope,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    fmt: str,
) -> Statement | Response:
    economics, _ = await terms.current_economics(session, ctx.settings)
    statement = await build_statement(
        session,
        scope,
        minimum_payout=economics.minimum_payout_micro_usd,
        since=_utc(since, "since"),
        until=_utc(until, "until"),
        limit=limit,
    )
    if fmt == "csv":
        return Response(
            to_csv(statement),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="streamr-{scope.kind}-statement.csv"'
            },
        )
    return statement


@router.get("/statements/friend", response_model=Statement, responses=CSV_RESPONSE)
async def friend_statement_route(
    account: CurrentAccount,
    ctx: Context,
    session: Session,
    since: Since = None,
    until: Until = None,
    limit: Limit = 1000,
    format: Format = "json",
    account_id: Annotated[
        str | None, Query(max_length=64, description="Admins: another friend's statement")
    ] = None,
) -> Statement | Response:
    """Your nodes' statement: each interval's bytes, rate, pay factor, fee and net; payouts
    and carry-overs; balances. Any account (the nodes you own); admins may name another."""
    if account_id is not None and account_id != account.id and not is_admin(account):
        raise Forbidden("Only an admin may see another account's statement; leave out account_id.")
    scope = await friend_scope(session, account_id or account.id)
    return await _answer(session, ctx, scope, since, until, limit, format)


@router.get("/statements/streamer", response_model=Statement, responses=CSV_RESPONSE)
async def streamer_statement_route(
    account: CurrentAccount,
    ctx: Context,
    session: Session,
    since: Since = None,
    until: Until = None,
    limit: Limit = 1000,
    format: Format = "json",
    account_id: Annotated[
        str | None, Query(max_length=64, description="Admins: another streamer's statement")
    ] = None,
) -> Statement | Response:
    """Your streams' statement: fundings, spend per node, unfunded delivery, budgets.

    Streamers (their own streams) and admins (any streamer's, with ``account_id``).
    """
    if account.role not in (Role.STREAMER, Role.ADMIN):
        raise Forbidden("Only streamers have streams, and so a streamer's statement.")
    if account_id is not None and account_id != account.id and not is_admin(account):
        raise Forbidden("Only an admin may see another account's statement; leave out account_id.")
    scope = await streamer_scope(session, account_id or account.id)
    return await _answer(session, ctx, scope, since, until, limit, format)


@router.get("/statements/operator", response_model=Statement, responses=CSV_RESPONSE)
async def operator_statement_route(
    _admin: Admin,
    ctx: Context,
    session: Session,
    since: Since = None,
    until: Until = None,
    limit: Limit = 1000,
    format: Format = "json",
) -> Statement | Response:
    """Everything: all budgets, fundings, accruals, payouts, and the platform's fees, with
    the books' balance check (``ledger_sum_micro_usd`` is always 0). Admins only."""
    return await _answer(session, ctx, Scope("operator"), since, until, limit, format)
