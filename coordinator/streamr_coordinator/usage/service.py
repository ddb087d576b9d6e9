"""Recording usage reports exactly once, and adding them up.

A node sends each report until it is acknowledged, so the same report can arrive twice, even
twice at the same moment (a retry racing a slow first attempt). The report row is inserted
first; the unique constraint on (node, report id) lets exactly one insert win, on SQLite and
PostgreSQL alike, and every other attempt answers with the winner's counts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.exceptions import RequestValidationError
from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from streamr_protocol.usage import UsageAck, UsageReport

from ..database import insert_once, utcnow
from ..errors import AppError, NotFound
from ..nodes.auth import NodeIdentity
from ..nodes.models import Node
from ..streams.models import Stream
from ..viewers.models import ViewerSession
from .models import IntegrityFailure as IntegrityFailureRow
from .models import UsageLine
from .models import UsageReport as UsageReportRow
from .schemas import NodeUsage, UsageDay, UsageWindow

log = logging.getLogger("streamr.usage")

DAYS_SHOWN = 7
_LOOKUP_CHUNK = 500  # session ids per IN (...) query, well inside every database's limits


class WrongStream(AppError):
    code = "wrong_stream"


def _utc(field: str, value: datetime) -> datetime:
    """The node's timestamp in UTC; one without an offset is read as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise RequestValidationError(
            [
                {
                    "type": "datetime_range",
                    "loc": ("body", field),
                    "msg": "must be a time between the years 1 and 9999 once converted to UTC",
                }
            ]
        ) from None


async def _known_sessions(session: AsyncSession, stream_id: str, ids: list[str]) -> set[str]:
    known: set[str] = set()
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = ids[start : start + _LOOKUP_CHUNK]
        known.update(
            await session.scalars(
                select(ViewerSession.id).where(
                    ViewerSession.stream_id == stream_id, ViewerSession.id.in_(chunk)
                )
            )
        )
    return known


def _ack(row: UsageReportRow, duplicate: bool) -> UsageAck:
    return UsageAck(
        report_id=row.report_id,
        duplicate=duplicate,
        counted_bytes=row.counted_bytes,
        counted_sessions=row.counted_sessions,
        unknown_sessions=row.unknown_sessions,
    )


async def record_report(
    session: AsyncSession, identity: NodeIdentity, report: UsageReport
) -> UsageAck:
    stream = await session.get(Stream, identity.stream_id)
    if stream is None:  # deleted a moment ago; the token stops working with it
        raise NotFound("This node's stream no longer exists.")
    if report.stream != stream.name:
        raise WrongStream(
            f"This node relays stream {stream.name!r}, but the report is for "
            f"{report.stream[:64]!r}; report only what was served for {stream.name!r}.",
            details={"stream": stream.name},
        )
    period_start = _utc("period_start", report.period_start)
    period_end = _utc("period_end", report.period_end)
    if period_end < period_start:
        raise AppError("period_end is before period_start; send the interval in order.")

    known = await _known_sessions(session, stream.id, [s.session_id for s in report.sessions])
    counted = [s for s in report.sessions if s.session_id in known]
    now = utcnow()
    row = UsageReportRow(
        node_id=identity.node_id,
        report_id=report.report_id,
        stream_id=stream.id,
        received_at=now,
        period_start=period_start,
        period_end=period_end,
        counted_bytes=sum(s.bytes for s in counted),
        counted_sessions=len(counted),
        unknown_sessions=len(report.sessions) - len(counted),
        unattributed_bytes=report.unattributed_bytes,
        unattributed_requests=report.unattributed_requests,
    )
    first = await insert_once(
        session,
        row,
        UsageReportRow.node_id == identity.node_id,
        UsageReportRow.report_id == report.report_id,
    )
    if first is not None:
        return _ack(first, duplicate=True)

    session.add_all(
        UsageLine(
            report_pk=row.id,
            session_id=line.session_id,
            bytes=line.bytes,
            segments=line.segments,
            requests=line.requests,
            known=line.session_id in known,
        )
        for line in report.sessions
    )
    session.add_all(
        IntegrityFailureRow(
            report_pk=row.id,
            node_id=identity.node_id,
            upstream_url=failure.upstream_url,
            upstream_node_id=failure.upstream_node_id,
            segment=failure.segment,
            sequence=failure.sequence,
            reason=failure.reason,
            received_at=now,
        )
        for failure in report.integrity_failures
    )
    await session.commit()
    if report.integrity_failures:
        log.warning(
            "integrity failures reported",
            extra={
                "node_id": identity.node_id,
                "stream": stream.name,
                "failures": len(report.integrity_failures),
                "upstream_node_ids": sorted(
                    {f.upstream_node_id for f in report.integrity_failures if f.upstream_node_id}
                ),
            },
        )
    return _ack(row, duplicate=False)


def _sums(when: ColumnElement[bool]) -> list[ColumnElement[int]]:
    """Reports, counted bytes and unattributed bytes of the reports matching ``when``."""
    report = UsageReportRow
    return [
        func.coalesce(func.sum(case((when, value), else_=0)), 0)
        for value in (1, report.counted_bytes, report.unattributed_bytes)
    ]


def _window(values: Sequence[Any]) -> dict[str, int]:
    reports, counted, unattributed = (int(v) for v in values)  # PostgreSQL sums are Decimal
    return {"reports": reports, "counted_bytes": counted, "unattributed_bytes": unattributed}


async def node_usage(session: AsyncSession, node: Node, stream_name: str) -> NodeUsage:
    """All-time totals, the last hour and the last days, in three indexed queries."""
    report = UsageReportRow
    totals = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(report.counted_bytes), 0),
                func.coalesce(func.sum(report.unattributed_bytes), 0),
                func.coalesce(func.sum(report.unknown_sessions), 0),
                func.max(report.received_at),
            ).where(report.node_id == node.id)
        )
    ).one()
    now = utcnow()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    days = [today - timedelta(days=i) for i in range(DAYS_SHOWN)]
    columns = _sums(report.received_at >= now - timedelta(hours=1))
    for start in days:
        columns += _sums(
            (report.received_at >= start) & (report.received_at < start + timedelta(days=1))
        )
    recent = (
        await session.execute(
            select(*columns).where(report.node_id == node.id, report.received_at >= days[-1])
        )
    ).one()
    failures = await session.scalar(
        select(func.count())
        .select_from(IntegrityFailureRow)
        .where(IntegrityFailureRow.node_id == node.id)
    )
    return NodeUsage(
        node_id=node.id,
        stream=stream_name,
        reports=int(totals[0]),
        counted_bytes=int(totals[1]),
        unattributed_bytes=int(totals[2]),
        unknown_sessions=int(totals[3]),
        integrity_failures=failures or 0,
        last_report_at=totals[4],
        last_hour=UsageWindow(**_window(recent[0:3])),
        days=[
            UsageDay(day=start.date(), **_window(recent[3 + 3 * i : 6 + 3 * i]))
            for i, start in enumerate(days)
        ],
    )
