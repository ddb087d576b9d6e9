from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..database import ID, Base, UTCDateTime, utcnow


class JobLease(Base):
    """Who runs a job right now. Taken, renewed and released by conditional UPDATEs only
    (jobs/leases.py); ``fence`` grows by one at every acquisition, so a worker that lost its
    lease can tell (and a write guarded by the fence fails) even if it never noticed."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128), nullable=True)
    fence: Mapped[int] = mapped_column(BigInteger, default=0)
    # When the latest run started (by whoever): a job is due again ``interval`` after it.
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class JobRun(Base):
    """One run of one job: inserted as ``running`` when it starts, completed when it ends.

    Outcomes: ok, error, abandoned (the worker stopped or lost the lease mid-run). A run left
    ``running`` by a worker that died is shown as lost once its lease moved on. Runs skipped
    because another worker held the lease are not recorded.
    """

    __tablename__ = "job_runs"
    __table_args__ = (Index(None, "job", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(64))
    holder: Mapped[str] = mapped_column(String(128))
    fence: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(String(300), nullable=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class NodeStats(Base):
    """A compact snapshot of a node's own ``/stats``, fetched through its public URL.

    Counters are as the node reported them (cumulative since the node started, so they drop at
    a restart); they are the node's word, shown to operators, never paid on. ``error`` says why
    a fetch failed, and then the counters are empty.
    """

    __tablename__ = "node_stats"
    __table_args__ = (Index(None, "node_id", "collected_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    collected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    latency_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(String(200), nullable=True)
    state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    uptime_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    served_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    unattributed_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    requests: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    connections: Mapped[int | None] = mapped_column(Integer, nullable=True)
    viewers: Mapped[int | None] = mapped_column(Integer, nullable=True)
    egress_bps: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class UsageHourly(Base):
    """Per node, stream and UTC hour: what the node claimed (usage reports' counted bytes) and
    what viewers receipted as received well from it. Recomputed idempotently from the raw rows
    (jobs/rollups.py), kept after those are pruned; for the dashboards."""

    __tablename__ = "usage_hourly"
    __table_args__ = (Index(None, "stream_id", "hour"), Index(None, "hour"))

    node_id: Mapped[str] = mapped_column(
        ID, ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    )
    stream_id: Mapped[str] = mapped_column(
        ID, ForeignKey("streams.id", ondelete="CASCADE"), primary_key=True
    )
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    reports: Mapped[int] = mapped_column(Integer, default=0)
    claimed_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    receipts_ok: Mapped[int] = mapped_column(Integer, default=0)
    receipted_ok_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    receipts_failed: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
