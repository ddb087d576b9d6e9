from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..database import ID, Base, UTCDateTime, new_id, utcnow


class ViewerSession(Base):
    """One watch of one stream. Viewers are anonymous: no account and no address is kept.

    The row is what makes a session "known" when a node reports the bytes it served under it;
    the token the viewer holds is signed, so nodes check it without asking the coordinator.
    ``node_id`` is the node the session was last sent to first, which keeps a viewer on its node
    (stickiness) while that node stays healthy. It is a hint, not a reference: a node that is
    gone is simply not among the candidates any more.

    No viewer address is stored: ``client_network`` is a keyed hash of the /24 (IPv4) or /48
    (IPv6) the session was opened from (verification/networks.py), enough to tell that a viewer
    shares a network with a node and nothing more. ``is_probe`` marks the prober's sessions; it
    never leaves the coordinator (the token and every answer are the same as a viewer's).
    """

    __tablename__ = "viewer_sessions"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    stream_id: Mapped[str] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    node_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    client_network: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Counted by the sources route up to a cap: 0 means the page never played.
    sources_polls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    is_probe: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ReceiptBatch(Base):
    """One batch of receipts from one session. ``(session_id, batch_id)`` is unique: that
    constraint, not a read before the write, makes a batch sent twice (or twice at once) count
    once."""

    __tablename__ = "viewer_receipt_batches"
    __table_args__ = (UniqueConstraint("session_id", "batch_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("viewer_sessions.id", ondelete="CASCADE"))
    batch_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    receipts: Mapped[int] = mapped_column(Integer)


class Receipt(Base):
    """One fetch of one segment from one source, as the viewer saw it. ``stream_id`` and
    ``received_at`` are copied from the session and the batch, so routing reads a stream's
    recent receipts with one indexed range scan."""

    __tablename__ = "viewer_receipts"
    __table_args__ = (
        Index(None, "stream_id", "received_at"),
        Index(None, "session_id", "received_at"),
        Index(None, "node_id", "received_at"),
        Index(None, "received_at"),  # reconciliation reads one interval of every node at once
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_pk: Mapped[int] = mapped_column(
        ForeignKey("viewer_receipt_batches.id", ondelete="CASCADE"), index=True
    )
    session_id: Mapped[str] = mapped_column(ForeignKey("viewer_sessions.id", ondelete="CASCADE"))
    stream_id: Mapped[str] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"))
    node_id: Mapped[str | None] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE"), nullable=True
    )
    source_kind: Mapped[str] = mapped_column(String(8))
    segment: Mapped[str] = mapped_column(String(128))
    sequence: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    ttfb_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    download_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    outcome: Mapped[str] = mapped_column(String(8))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
