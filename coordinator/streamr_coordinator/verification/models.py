"""What verification keeps: probes, reconciled intervals and their discrepancies, running
totals per (node, viewer session), trust per node with its history, the networks nodes use, and
the watermarks that let the jobs read each input once.

Reconciliation records name their node and stream without a foreign key on purpose: they are
what payouts point at, so they must outlive a node's or a stream's deletion.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..database import ID, Base, UTCDateTime, utcnow


class Probe(Base):
    """One segment fetch by the prober from a node's public URL, as a viewer would make it. The
    rows of one probe session share ``session_id`` and are judged together (trust_service)."""

    __tablename__ = "probes"
    __table_args__ = (Index(None, "node_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    stream_id: Mapped[str] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"))
    session_id: Mapped[str] = mapped_column(String(36))
    reason: Mapped[str] = mapped_column(String(16))  # scheduled | targeted
    segment: Mapped[str] = mapped_column(String(128))
    sequence: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ttfb_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    throughput_bps: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    outcome: Mapped[str] = mapped_column(String(8))  # ok | mismatch | error | timeout | missing
    # 2: the first attempt failed (error or timeout) and was asked again, as a player would;
    # ``outcome`` and the timings are the second attempt's, ``detail`` says what the first got.
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    detail: Mapped[str] = mapped_column(String(300), default="")
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Reconciliation(Base):
    """One node's verdict for one stream and one interval. Unique per (node, stream, interval
    start): two workers reconciling the same interval write it once."""

    __tablename__ = "reconciliations"
    __table_args__ = (
        UniqueConstraint("node_id", "stream_id", "interval_start"),
        Index(None, "interval_start"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(ID)
    stream_id: Mapped[str] = mapped_column(ID)
    interval_start: Mapped[datetime] = mapped_column(UTCDateTime)
    interval_end: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_bytes: Mapped[int] = mapped_column(BigInteger)
    receipted_bytes: Mapped[int] = mapped_column(BigInteger)
    plausible_bytes: Mapped[int] = mapped_column(BigInteger)
    paid_bytes: Mapped[int] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String(16))  # agree | disagree | idle
    ratio: Mapped[float | None] = mapped_column(Float, nullable=True)  # receipted / claimed
    excluded_sessions: Mapped[int] = mapped_column(Integer)
    # Receipts of viewers (not probes, not excluded sessions) about the node, for trust: ok,
    # failed (error, stall), and sessions that reported a mismatch.
    viewer_ok: Mapped[int] = mapped_column(Integer, default=0)
    viewer_failed: Mapped[int] = mapped_column(Integer, default=0)
    viewer_mismatch_sessions: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReconciliationSession(Base):
    """Running totals of one (node, viewer session) pair: each interval pays only the growth of
    ``min(claimed, receipted)``, so nothing is paid twice or lost at an interval boundary."""

    __tablename__ = "reconciliation_sessions"

    node_id: Mapped[str] = mapped_column(ID, primary_key=True)
    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stream_id: Mapped[str] = mapped_column(ID)
    claimed: Mapped[int] = mapped_column(BigInteger, default=0)
    receipted: Mapped[int] = mapped_column(BigInteger, default=0)
    paid: Mapped[int] = mapped_column(BigInteger, default=0)
    excluded_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ok_segments: Mapped[int] = mapped_column(BigInteger, default=0)
    # Highest sequence counted so far: an ok receipt for this one or a lower one is a
    # duplicate (live playback fetches in order; reconciliation.py says why that is sound).
    max_sequence: Mapped[int] = mapped_column(BigInteger, default=-1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Discrepancy(Base):
    """Something reconciliation did not accept, with the numbers and the evidence."""

    __tablename__ = "discrepancies"
    __table_args__ = (Index(None, "node_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reconciliation_id: Mapped[int] = mapped_column(
        ForeignKey("reconciliations.id", ondelete="CASCADE"), index=True
    )
    node_id: Mapped[str] = mapped_column(ID)
    kind: Mapped[str] = mapped_column(String(32))
    session_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed: Mapped[int] = mapped_column(BigInteger)
    receipted: Mapped[int] = mapped_column(BigInteger)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class TrustState(Base):
    """A node's trust now: a Beta posterior (``alpha`` successes, ``beta`` failures, decayed)."""

    __tablename__ = "trust_states"

    node_id: Mapped[str] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    )
    alpha: Mapped[float] = mapped_column(Float)
    beta: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    probes_passed: Mapped[int] = mapped_column(Integer, default=0)
    warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    penalised_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class TrustEvent(Base):
    """One change of a node's trust, for its history on dashboards."""

    __tablename__ = "trust_events"
    __table_args__ = (Index(None, "node_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(16))  # probe | reconciliation | viewers
    success: Mapped[float] = mapped_column(Float)
    failure: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    level: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(String(300), default="")


class NodeNetwork(Base):
    """A network (keyed hash of a /24 or /48) a node has used: registration, heartbeats,
    reports, its public URL. Viewer sessions from one of these do not count for that node."""

    __tablename__ = "node_networks"
    __table_args__ = (UniqueConstraint("node_id", "network"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    network: Mapped[str] = mapped_column(String(32))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Watermark(Base):
    """How far a job has read its input (an interval start as Unix seconds, or a row id)."""

    __tablename__ = "verification_watermarks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReceiptTally(Base):
    """What one (node, viewer session)'s receipts of one interval add up to, kept as they
    arrive (``receipt_tallies``), so reconciliation reads a row per session instead of every
    receipt. ``bucket_s`` is the interval length the tally was kept for: a tally is only read
    for intervals of that length."""

    __tablename__ = "receipt_tallies"
    __table_args__ = (Index(None, "bucket_s", "interval_start"),)

    node_id: Mapped[str] = mapped_column(ID, primary_key=True)
    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    bucket_s: Mapped[int] = mapped_column(Integer, primary_key=True)
    interval_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    stream_id: Mapped[str] = mapped_column(ID)
    counted_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    plausible: Mapped[int] = mapped_column(Integer, default=0)
    min_sequence: Mapped[int] = mapped_column(BigInteger, default=-1)
    max_sequence: Mapped[int] = mapped_column(BigInteger, default=-1)
    reordered: Mapped[int] = mapped_column(Integer, default=0)
    size_mismatches: Mapped[int] = mapped_column(Integer, default=0)
    before_segment: Mapped[int] = mapped_column(Integer, default=0)
    too_fast: Mapped[int] = mapped_column(Integer, default=0)
    stale: Mapped[int] = mapped_column(Integer, default=0)
    unknown_segment: Mapped[int] = mapped_column(Integer, default=0)
    ok_receipts: Mapped[int] = mapped_column(Integer, default=0)
    mismatches: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)
