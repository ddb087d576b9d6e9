from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..database import Base, UTCDateTime, utcnow


class UsageReport(Base):
    """One report of one node. ``(node_id, report_id)`` is unique: that constraint, not a read
    before the write, is what makes a report sent twice (or twice at once) count once."""

    __tablename__ = "usage_reports"
    __table_args__ = (
        UniqueConstraint("node_id", "report_id"),
        Index(None, "node_id", "received_at"),
        Index(None, "received_at"),  # reconciliation reads one interval of every node at once
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    report_id: Mapped[str] = mapped_column(String(64))
    stream_id: Mapped[str] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"), index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    # Totals of the lines below, kept so a duplicate is answered without adding them up again.
    counted_bytes: Mapped[int] = mapped_column(BigInteger)
    counted_sessions: Mapped[int] = mapped_column(Integer)
    unknown_sessions: Mapped[int] = mapped_column(Integer)
    unattributed_bytes: Mapped[int] = mapped_column(BigInteger)
    unattributed_requests: Mapped[int] = mapped_column(BigInteger)


class UsageLine(Base):
    """Bytes served under one viewer session in one report. ``known`` is False for a session
    the coordinator never issued for this stream; such lines are kept, never counted."""

    __tablename__ = "usage_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_pk: Mapped[int] = mapped_column(
        ForeignKey("usage_reports.id", ondelete="CASCADE"), index=True
    )
    session_id: Mapped[str] = mapped_column(String(64), index=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    segments: Mapped[int] = mapped_column(BigInteger)
    requests: Mapped[int] = mapped_column(BigInteger)
    known: Mapped[bool] = mapped_column(Boolean)


class IntegrityFailure(Base):
    """A segment a node received from its upstream that did not match its signed index entry."""

    __tablename__ = "integrity_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_pk: Mapped[int] = mapped_column(
        ForeignKey("usage_reports.id", ondelete="CASCADE"), index=True
    )
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    upstream_url: Mapped[str] = mapped_column(String(2083))
    upstream_node_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    segment: Mapped[str] = mapped_column(String(128))
    sequence: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reason: Mapped[str] = mapped_column(String(300))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
