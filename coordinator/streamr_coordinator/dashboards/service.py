"""The numbers behind the dashboards, read through other domains' service functions or plain
queries. Nothing here writes.

Hourly series are one query each: a conditional sum per hour (as ``usage.service`` does for
days), which reads the same on SQLite and PostgreSQL and never loads report rows into Python.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, case, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import join

from streamr_protocol.nodes import ReachabilityStatus

from ..accounts.models import Account
from ..context import AppContext
from ..database import utcnow
from ..invites.service import invite_out, list_invites
from ..jobs.catalog import CATALOG
from ..jobs.service import jobs_overview
from ..nodes.models import Node
from ..nodes.reachability import Verdict, advice
from ..nodes.schemas import NodeOut
from ..nodes.service import describe, stream_nodes
from ..streams.lifecycle import StreamStatus
from ..streams.models import Stream
from ..streams.service import node_counts
from ..usage.models import IntegrityFailure, UsageLine, UsageReport
from ..verification.models import Discrepancy, Probe
from ..viewers.models import Receipt, ViewerSession
from . import payments, standing
from .formatting import format_duration
from .money import format_usd, saved_micro_usd
from .schemas import (
    DiscrepancyRow,
    ErrorRates,
    FlaggedNode,
    FriendDashboard,
    FriendNode,
    HourlySeries,
    JobRunRow,
    LeaderboardEntry,
    LiveStream,
    Notice,
    OperatorDashboard,
    OperatorJob,
    OperatorNode,
    OperatorStream,
    OperatorTotals,
    ProbeFailureRow,
    PublicDashboard,
    StreamBytes,
    StreamerDashboard,
    StreamerStream,
    StreamViewers,
    SupportingNode,
)

HOURS_SHOWN = 24
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
# Reports against a node this recent make it "flagged" on the operator's page.
FLAG_WINDOW = timedelta(days=7)
LEADERBOARD_SIZE = 20
LIVE_STREAMS_SHOWN = 100
STREAMS_PER_STREAMER = 50
OPERATOR_ROWS = 500

ORIGIN_NOTE = (
    "Origin bytes come from the receipts viewers' watch pages send (source: origin), so players "
    "that send none are not counted. Receipts are deleted with their viewer session, which is "
    "why hours older than {hours} are left blank."
)
# The statements as CSV for the logged-in browser (pages.py serves them with the cookie).
FRIEND_CSV = "/dashboard/friend/statement.csv"
STREAMER_CSV = "/dashboard/streamer/statement.csv"
OPERATOR_CSV = "/dashboard/operator/statement.csv"
JOB_RUNS_SHOWN = 5
OPERATOR_EVENTS_SHOWN = 20


def watch_path(stream_name: str) -> str:
    return f"/watch/{stream_name}"


def hour_starts(now: datetime, hours: int = HOURS_SHOWN) -> list[datetime]:
    """The beginnings of the last ``hours`` hours, the current (partial) hour last."""
    top = now.replace(minute=0, second=0, microsecond=0)
    return [top - timedelta(hours=hours - 1 - i) for i in range(hours)]


async def per_hour(
    session: AsyncSession,
    when: Any,
    value: Any,
    starts: list[datetime],
    *where: ColumnElement[bool],
    select_from: Any = None,
) -> list[int]:
    """Sum of ``value`` per hour of ``starts``, by the time column ``when``."""
    columns = [
        func.coalesce(func.sum(case(((when >= start) & (when < start + HOUR), value), else_=0)), 0)
        for start in starts
    ]
    query = select(*columns).where(when >= starts[0], *where)
    if select_from is not None:
        query = query.select_from(select_from)
    row = (await session.execute(query)).one()
    return [int(v) for v in row]  # PostgreSQL sums are Decimal


async def display_names(session: AsyncSession, account_ids: Iterable[str]) -> dict[str, str]:
    ids = set(account_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(Account.id, Account.display_name).where(Account.id.in_(ids))
    )
    return {row.id: row.display_name for row in rows}


async def failures_against(
    session: AsyncSession, node_ids: list[str], since: datetime
) -> dict[str, int]:
    """Integrity failures that other nodes reported against each node since ``since``."""
    if not node_ids:
        return {}
    rows = await session.execute(
        select(IntegrityFailure.upstream_node_id, func.count())
        .where(
            IntegrityFailure.upstream_node_id.in_(node_ids), IntegrityFailure.received_at >= since
        )
        .group_by(IntegrityFailure.upstream_node_id)
    )
    return {str(node_id): int(count) for node_id, count in rows}


# --- Public -------------------------------------------------------------------------------


async def public_dashboard(ctx: AppContext, session: AsyncSession) -> PublicDashboard:
    streams = await session.scalars(
        select(Stream)
        .where(Stream.status == StreamStatus.LIVE.value)
        .order_by(Stream.live_at.desc(), Stream.name)
        .limit(LIVE_STREAMS_SHOWN)
    )
    live = []
    for stream in streams:
        counts = await node_counts(session, ctx.presence, stream)
        live.append(
            LiveStream(
                name=stream.name,
                title=stream.title,
                live_since=stream.live_at,
                nodes_online=counts.online,
                watch_path=watch_path(stream.name),
            )
        )
    now = utcnow()
    hidden = await standing.penalised_nodes(session, ctx.settings, now)
    return PublicDashboard(
        generated_at=now, live_streams=live, leaderboard=await leaderboard(session, hidden=hidden)
    )


async def leaderboard(
    session: AsyncSession, size: int = LEADERBOARD_SIZE, hidden: Iterable[str] = ()
) -> list[LeaderboardEntry]:
    """Friends by the bytes their nodes delivered (counted usage), display names only.

    ``hidden`` nodes (penalised ones) do not count: a friend whose only nodes are penalised
    is not named in public.
    """
    delivered = func.sum(UsageReport.counted_bytes)
    query = (
        select(Account.display_name, func.count(distinct(Node.id)), delivered)
        .select_from(UsageReport)
        .join(Node, Node.id == UsageReport.node_id)
        .join(Account, Account.id == Node.owner_id)
        .where(Account.disabled_at.is_(None))
    )
    hidden = list(hidden)
    if hidden:
        query = query.where(Node.id.not_in(hidden))
    rows = await session.execute(
        query.group_by(Account.id, Account.display_name)
        .having(delivered > 0)
        .order_by(delivered.desc(), Account.display_name, Account.id)
        .limit(size)
    )
    return [
        LeaderboardEntry(rank=rank, display_name=name, nodes=int(nodes), delivered_bytes=int(total))
        for rank, (name, nodes, total) in enumerate(rows, start=1)
    ]


# --- Streamer -----------------------------------------------------------------------------


def node_health(node: NodeOut, failures_24h: int) -> tuple[str, str]:
    """One word for a supporting node's state, and a sentence a streamer understands."""
    if failures_24h:
        return (
            "flagged",
            f"Other nodes got {failures_24h} segment(s) from it in the last 24 hours that did "
            "not match the stream's signatures.",
        )
    if not node.online:
        return "offline", "No heartbeat: the node is not running or cannot reach the coordinator."
    if node.reachable is None:
        return "unchecked", "Online; whether viewers can reach it has not been checked yet."
    if not node.reachable:
        return (
            "unreachable",
            "Online, but viewers cannot reach it, so it is sent none; its owner sees what to fix.",
        )
    load = node.load
    if (
        load is not None
        and load.egress_cap_bps is not None
        and load.egress_bps >= load.egress_cap_bps
    ):
        return "at_capacity", "At its upload cap: new viewers go to other sources."
    return "healthy", "Online, reachable and serving viewers."


async def streamer_dashboard(
    ctx: AppContext, session: AsyncSession, account: Account
) -> StreamerDashboard:
    now = utcnow()
    starts = hour_starts(now)
    price = ctx.settings.cdn_price_micro_usd_per_gb
    streams = await session.scalars(
        select(Stream)
        .where(Stream.owner_id == account.id)
        .order_by(Stream.created_at.desc(), Stream.name)
        .limit(STREAMS_PER_STREAMER)
    )
    economics = await payments.economics_now(session, ctx.settings)
    shown = [
        await streamer_stream(ctx, session, stream, now, starts, economics.vetting_pay_bps)
        for stream in streams
    ]
    total = sum(s.bytes.friend_bytes_total for s in shown)
    saved = saved_micro_usd(total, price)
    return StreamerDashboard(
        generated_at=now,
        display_name=account.display_name,
        cdn_price_micro_usd_per_gb=price,
        friend_bytes_total=total,
        money_saved_micro_usd=saved,
        money_saved=format_usd(saved),
        funded=format_usd(sum(s.budget.funded_micro_usd for s in shown)),
        spent=format_usd(sum(s.budget.spent_micro_usd for s in shown)),
        rate_per_gb=format_usd(economics.rate_micro_usd_per_gb),
        statement_csv=STREAMER_CSV,
        streams=shown,
    )


async def streamer_stream(
    ctx: AppContext,
    session: AsyncSession,
    stream: Stream,
    now: datetime,
    starts: list[datetime],
    vetting_pay_bps: int,
) -> StreamerStream:
    invites = [invite_out(i, stream.name) for i in await list_invites(session, stream)]
    nodes = await stream_nodes(session, stream)
    described = await describe(ctx, nodes, {stream.id: stream.name})
    friends = await display_names(session, (n.owner_id for n in nodes))
    against = await failures_against(session, [n.id for n in nodes], now - DAY)
    trust = await standing.trust_now(
        session, ctx.settings, [n.id for n in nodes], now, vetting_pay_bps
    )
    supporting = []
    for node in described:
        health, text = node_health(node, against.get(node.id, 0))
        supporting.append(
            SupportingNode(
                id=node.id,
                name=node.name,
                friend=friends.get(node.owner_id, "(deleted account)"),
                trust_level=trust[node.id].level,
                trust_percent=trust[node.id].score_percent,
                online=node.online,
                connections=node.load.connections if node.load else None,
                egress_bps=node.load.egress_bps if node.load else None,
                egress_cap_bps=node.load.egress_cap_bps if node.load else None,
                last_seen_at=node.last_seen_at,
                reachability_status=node.reachability_status,
                integrity_failures_24h=against.get(node.id, 0),
                health=health,  # type: ignore[arg-type]
                health_text=text,
            )
        )

    window_s = int(max(60, 3 * ctx.settings.usage_report_interval_s))
    open_sessions = await session.scalar(
        select(func.count())
        .select_from(ViewerSession)
        .where(ViewerSession.stream_id == stream.id, ViewerSession.expires_at > now)
    )
    served_recently = await session.scalar(
        select(func.count(distinct(UsageLine.session_id)))
        .select_from(UsageLine)
        .join(UsageReport, UsageReport.id == UsageLine.report_pk)
        .where(
            UsageReport.stream_id == stream.id,
            UsageReport.received_at >= now - timedelta(seconds=window_s),
            UsageLine.known.is_(True),
        )
    )
    viewers = StreamViewers(
        open_sessions=open_sessions or 0,
        served_by_friends_recently=served_recently or 0,
        recent_window_s=window_s,
        node_connections=sum(n.connections or 0 for n in supporting if n.online),
    )

    friend_total = int(
        await session.scalar(
            select(func.coalesce(func.sum(UsageReport.counted_bytes), 0)).where(
                UsageReport.stream_id == stream.id
            )
        )
        or 0
    )
    of_stream = UsageReport.stream_id == stream.id
    friend_by_hour = await per_hour(
        session, UsageReport.received_at, UsageReport.counted_bytes, starts, of_stream
    )
    friend_24h = await _sum_since(
        session, UsageReport.counted_bytes, UsageReport.received_at, now - DAY, of_stream
    )

    # Receipts live as long as their viewer session, which is pruned a session lifetime after
    # it expired: those received within one session lifetime are all still there.
    complete_since = now - timedelta(seconds=ctx.settings.viewer_session_ttl_s)
    from_origin = (
        Receipt.stream_id == stream.id,
        Receipt.source_kind == "origin",
        Receipt.outcome == "ok",
    )
    origin_all = await per_hour(session, Receipt.received_at, Receipt.bytes, starts, *from_origin)
    origin_by_hour = [
        value if start >= complete_since else None
        for start, value in zip(starts, origin_all, strict=True)
    ]
    friend_recent = await _sum_since(
        session, UsageReport.counted_bytes, UsageReport.received_at, complete_since, of_stream
    )
    origin_recent = await _sum_since(
        session, Receipt.bytes, Receipt.received_at, complete_since, *from_origin
    )
    saved = saved_micro_usd(friend_total, ctx.settings.cdn_price_micro_usd_per_gb)
    return StreamerStream(
        name=stream.name,
        title=stream.title,
        status=stream.status,
        is_test=stream.is_test,
        watch_path=watch_path(stream.name),
        obs_server=ctx.settings.ingest_rtmp_url,
        key_rotated_at=stream.key_rotated_at,
        invites=invites,
        nodes=supporting,
        viewers=viewers,
        bytes=StreamBytes(
            friend_bytes_total=friend_total,
            friend_bytes_24h=friend_24h,
            recent_window_s=int(ctx.settings.viewer_session_ttl_s),
            friend_bytes_recent=friend_recent,
            origin_bytes_recent=origin_recent,
            friend_share_recent_percent=share_percent(friend_recent, origin_recent),
            origin_note=ORIGIN_NOTE.format(
                hours=format_duration(ctx.settings.viewer_session_ttl_s)
            ),
            money_saved_micro_usd=saved,
            money_saved=format_usd(saved),
        ),
        friend_bytes_by_hour=HourlySeries(starts=starts, values=friend_by_hour),
        origin_bytes_by_hour=origin_by_hour,
        friend_share_by_hour=[
            None if origin is None else share_percent(friend, origin)
            for friend, origin in zip(friend_by_hour, origin_by_hour, strict=True)
        ],
        budget=await payments.stream_budget(session, stream.id),
        spend=await payments.stream_spend(session, stream.id),
    )


async def _sum_since(
    session: AsyncSession, value: Any, when: Any, since: datetime, *where: ColumnElement[bool]
) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(value), 0)).where(when >= since, *where)
    )
    return int(total or 0)


def share_percent(friend_bytes: int, origin_bytes: int) -> int | None:
    """Whole percent of all delivered bytes that friends delivered; None when nothing was."""
    total = friend_bytes + origin_bytes
    return None if total == 0 else friend_bytes * 100 // total


# --- Friend -------------------------------------------------------------------------------


def reachability_advice(node: Node) -> list[str]:
    """The coordinator's advice for the node's latest check, as the node itself was told."""
    if node.reachable:
        return []
    if node.reachability_status is None:
        return [
            "Not checked yet: a running node asks for a check when it starts; run "
            "`streamr-node run` and look again in a minute."
        ]
    verdict = Verdict(cast(ReachabilityStatus, node.reachability_status), "")
    return advice(verdict, node.reachability_url)


async def friend_dashboard(
    ctx: AppContext, session: AsyncSession, account: Account
) -> FriendDashboard:
    now = utcnow()
    starts = hour_starts(now)
    nodes = list(
        await session.scalars(
            select(Node)
            .where(Node.owner_id == account.id, Node.deregistered_at.is_(None))
            .order_by(Node.registered_at, Node.id)
        )
    )
    streams = {
        s.id: s
        for s in await session.scalars(
            select(Stream).where(Stream.id.in_({n.stream_id for n in nodes}))
        )
    }
    described = {
        d.id: d for d in await describe(ctx, nodes, {sid: s.name for sid, s in streams.items()})
    }
    ids = [n.id for n in nodes]
    delivered: dict[str, int] = {}
    if ids:
        rows = await session.execute(
            select(UsageReport.node_id, func.sum(UsageReport.counted_bytes))
            .where(UsageReport.node_id.in_(ids))
            .group_by(UsageReport.node_id)
        )
        delivered = {node_id: int(total or 0) for node_id, total in rows}
    against = await failures_against(session, ids, now - DAY)
    economics = await payments.economics_now(session, ctx.settings)
    trust = await standing.trust_now(session, ctx.settings, ids, now, economics.vetting_pay_bps)
    earnings, money = await payments.friend_earnings(session, account.id, ids, economics, now)
    budgets = {sid: await payments.stream_budget(session, sid) for sid in sorted(streams)}
    mine = Node.owner_id == account.id
    reports_of_mine = join(UsageReport, Node, Node.id == UsageReport.node_id)
    by_hour = await per_hour(
        session,
        UsageReport.received_at,
        UsageReport.counted_bytes,
        starts,
        mine,
        select_from=reports_of_mine,
    )
    total, last_day = (
        await session.execute(
            select(
                func.coalesce(func.sum(UsageReport.counted_bytes), 0),
                func.coalesce(
                    func.sum(
                        case(
                            (UsageReport.received_at >= now - DAY, UsageReport.counted_bytes),
                            else_=0,
                        )
                    ),
                    0,
                ),
            )
            .select_from(reports_of_mine)
            .where(mine)
        )
    ).one()
    out = []
    alerts = []
    told: set[str] = set()
    for node in nodes:
        d = described[node.id]
        stream = streams[node.stream_id]
        budget = budgets[node.stream_id]
        if trust[node.id].alert:
            alerts.append(f"{node.name}: {trust[node.id].message}")
        if budget.needs_funds and stream.id not in told:
            told.add(stream.id)  # once per stream, however many of the friend's nodes relay it
            alerts.append(f"{stream.title}: {budget.message}")
        out.append(
            FriendNode(
                id=node.id,
                name=node.name,
                stream=stream.name,
                stream_title=stream.title,
                online=d.online,
                connections=d.load.connections if d.load else None,
                egress_bps=d.load.egress_bps if d.load else None,
                egress_cap_bps=d.load.egress_cap_bps if d.load else None,
                public_url=d.public_url,
                last_seen_at=d.last_seen_at,
                reachable=node.reachable,
                reachability_status=node.reachability_status,
                reachability_checked_at=node.reachability_checked_at,
                advice=reachability_advice(node),
                delivered_bytes=delivered.get(node.id, 0),
                integrity_failures_24h=against.get(node.id, 0),
                trust=trust[node.id],
                trust_history=await standing.history(session, node.id),
                probes=await standing.probes(session, node.id),
                reconciliations=await standing.reconciliations(session, node.id),
                money=money[node.id],
                budget=Notice(state=budget.state, message=budget.message),
            )
        )
    return FriendDashboard(
        generated_at=now,
        display_name=account.display_name,
        nodes=out,
        delivered_bytes_total=int(total),
        delivered_bytes_24h=int(last_day),
        delivered_by_hour=HourlySeries(starts=starts, values=by_hour),
        trust=standing.summary(trust),
        alerts=alerts,
        earnings=earnings,
        statement_csv=FRIEND_CSV,
    )


# --- Operator -----------------------------------------------------------------------------


async def _counts_by(session: AsyncSession, column: Any) -> dict[str, int]:
    rows = await session.execute(select(column, func.count()).group_by(column))
    return {str(key): int(count) for key, count in rows}


async def operator_dashboard(ctx: AppContext, session: AsyncSession) -> OperatorDashboard:
    now = utcnow()
    starts = hour_starts(now)
    since_day = now - DAY

    # Every registered node's presence in one read, for the per-stream and total counts.
    registered = (
        await session.execute(select(Node.id, Node.stream_id).where(Node.deregistered_at.is_(None)))
    ).all()
    online = set(await ctx.presence.get_many([row.id for row in registered]))
    per_stream: dict[str, list[int]] = {}
    for row in registered:
        counts = per_stream.setdefault(row.stream_id, [0, 0])
        counts[0] += 1
        counts[1] += row.id in online

    stream_rows = await session.execute(
        select(Stream, Account.display_name)
        .join(Account, Account.id == Stream.owner_id)
        .order_by(Stream.created_at.desc(), Stream.name)
        .limit(OPERATOR_ROWS)
    )
    streams = [
        OperatorStream(
            name=stream.name,
            title=stream.title,
            status=stream.status,
            owner=owner,
            created_at=stream.created_at,
            nodes_registered=per_stream.get(stream.id, [0, 0])[0],
            nodes_online=per_stream.get(stream.id, [0, 0])[1],
        )
        for stream, owner in stream_rows
    ]

    reported = (
        await session.execute(
            select(
                IntegrityFailure.upstream_node_id,
                func.count(),
                func.coalesce(
                    func.sum(case((IntegrityFailure.received_at >= since_day, 1), else_=0)), 0
                ),
                func.count(distinct(IntegrityFailure.node_id)),
                func.max(IntegrityFailure.received_at),
            )
            .where(IntegrityFailure.upstream_node_id.is_not(None))
            .group_by(IntegrityFailure.upstream_node_id)
        )
    ).all()
    against = {str(r[0]): (int(r[1]), int(r[2]), int(r[3]), r[4]) for r in reported}

    node_rows = (
        await session.execute(
            select(Node, Stream.name, Account.display_name)
            .join(Stream, Stream.id == Node.stream_id)
            .join(Account, Account.id == Node.owner_id)
            .where(Node.deregistered_at.is_(None))
            .order_by(Node.registered_at.desc(), Node.id)
            .limit(OPERATOR_ROWS)
        )
    ).all()
    economics = await payments.economics_now(session, ctx.settings)
    trust = await standing.trust_now(
        session, ctx.settings, [row[0].id for row in node_rows], now, economics.vetting_pay_bps
    )
    nodes = []
    for node, stream_name, owner in node_rows:
        total, last_day, _, last_at = against.get(node.id, (0, 0, 0, None))
        nodes.append(
            OperatorNode(
                id=node.id,
                name=node.name,
                stream=stream_name,
                owner=owner,
                online=node.id in online,
                reachable=node.reachable,
                reachability_status=node.reachability_status,
                integrity_failures_24h=last_day,
                integrity_failures_total=total,
                flagged=last_at is not None and last_at >= now - FLAG_WINDOW,
                trust_level=trust[node.id].level,
                trust_percent=trust[node.id].score_percent,
                pay_percent=trust[node.id].pay_percent,
            )
        )

    flagged = await flagged_nodes(session, against, now - FLAG_WINDOW)
    error_rates = ErrorRates(
        starts=starts,
        integrity_failures=await per_hour(session, IntegrityFailure.received_at, 1, starts),
        reachability_failures=await per_hour(
            session,
            Node.reachability_checked_at,
            1,
            starts,
            Node.reachable.is_(False),
            Node.deregistered_at.is_(None),
        ),
        usage_reports=await per_hour(session, UsageReport.received_at, 1, starts),
    )
    failures_day = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(
                    func.sum(case((IntegrityFailure.upstream_node_id.is_(None), 1), else_=0)), 0
                ),
            ).where(IntegrityFailure.received_at >= since_day)
        )
    ).one()
    unreachable = await session.scalar(
        select(func.count())
        .select_from(Node)
        .where(Node.deregistered_at.is_(None), Node.reachable.is_(False))
    )
    return OperatorDashboard(
        generated_at=now,
        totals=OperatorTotals(
            accounts_by_role=await _counts_by(session, Account.role),
            streams_by_status=await _counts_by(session, Stream.status),
            nodes_registered=len(registered),
            nodes_online=len(online),
            nodes_unreachable=unreachable or 0,
            integrity_failures_24h=int(failures_day[0]),
            origin_integrity_failures_24h=int(failures_day[1]),
        ),
        streams=streams,
        streams_shown_of=int(await session.scalar(select(func.count()).select_from(Stream)) or 0),
        nodes=nodes,
        nodes_shown_of=len(registered),
        flagged=flagged,
        error_rates=error_rates,
        economics=await payments.economics_view(session, ctx.settings),
        money=await payments.platform_money(session),
        jobs=await operator_jobs(ctx, session),
        discrepancies=await recent_discrepancies(session),
        probe_failures=await recent_probe_failures(session),
        statement_csv=OPERATOR_CSV,
    )


async def operator_jobs(ctx: AppContext, session: AsyncSession) -> list[OperatorJob]:
    overview = await jobs_overview(session, CATALOG, ctx.settings, JOB_RUNS_SHOWN)
    return [
        OperatorJob(
            name=job.name,
            interval_s=job.interval_s,
            holder=(job.lease.holder or "") if job.lease else "",
            held=job.lease.held if job.lease else False,
            last_ok_at=job.last_ok_at,
            last_error_at=job.last_error_at,
            runs=[
                JobRunRow(
                    started_at=run.started_at,
                    outcome=run.outcome,
                    duration_ms=run.duration_ms,
                    error=run.error or "",
                )
                for run in job.runs
            ],
        )
        for job in overview.jobs
    ]


async def recent_discrepancies(
    session: AsyncSession, limit: int = OPERATOR_EVENTS_SHOWN
) -> list[DiscrepancyRow]:
    rows = await session.execute(
        select(Discrepancy, Node.name, Account.display_name)
        .outerjoin(Node, Node.id == Discrepancy.node_id)
        .outerjoin(Account, Account.id == Node.owner_id)
        .order_by(Discrepancy.created_at.desc(), Discrepancy.id.desc())
        .limit(limit)
    )
    return [
        DiscrepancyRow(
            created_at=d.created_at,
            node_name=name or d.node_id,
            owner=owner or "(deleted account)",
            kind=d.kind,
            session_id=d.session_id,
            claimed=d.claimed,
            receipted=d.receipted,
            evidence=payments.evidence_text(d.evidence),
        )
        for d, name, owner in rows
    ]


async def recent_probe_failures(
    session: AsyncSession, limit: int = OPERATOR_EVENTS_SHOWN
) -> list[ProbeFailureRow]:
    rows = await session.execute(
        select(Probe, Node.name, Account.display_name)
        .join(Node, Node.id == Probe.node_id)
        .outerjoin(Account, Account.id == Node.owner_id)
        .where(Probe.outcome != "ok")
        .order_by(Probe.started_at.desc(), Probe.id.desc())
        .limit(limit)
    )
    return [
        ProbeFailureRow(
            started_at=p.started_at,
            node_name=name,
            owner=owner or "(deleted account)",
            outcome=p.outcome,
            segment=p.segment,
            ttfb_ms=p.ttfb_ms,
            detail=p.detail,
        )
        for p, name, owner in rows
    ]


async def flagged_nodes(
    session: AsyncSession,
    against: dict[str, tuple[int, int, int, datetime]],
    since: datetime,
    limit: int = 100,
) -> list[FlaggedNode]:
    """Registered nodes that other nodes reported bad segments from since ``since``, the most
    recently reported first, with the latest reason given."""
    recent = sorted(
        ((node_id, v) for node_id, v in against.items() if v[3] >= since),
        key=lambda item: item[1][3],
        reverse=True,
    )
    out = []
    for node_id, (total, last_day, reporters, last_at) in recent:
        row = (
            await session.execute(
                select(Node, Stream.name, Account.display_name)
                .join(Stream, Stream.id == Node.stream_id)
                .join(Account, Account.id == Node.owner_id)
                .where(Node.id == node_id, Node.deregistered_at.is_(None))
            )
        ).first()
        if row is None:  # an id a node made up, or a node that has left
            continue
        node, stream_name, owner = row
        reason = await session.scalar(
            select(IntegrityFailure.reason)
            .where(IntegrityFailure.upstream_node_id == node_id)
            .order_by(IntegrityFailure.received_at.desc(), IntegrityFailure.id.desc())
            .limit(1)
        )
        out.append(
            FlaggedNode(
                id=node.id,
                name=node.name,
                stream=stream_name,
                owner=owner,
                failures_total=total,
                failures_24h=last_day,
                reported_by_nodes=reporters,
                last_failure_at=last_at,
                last_reason=reason or "",
            )
        )
        if len(out) >= limit:
            break
    return out
