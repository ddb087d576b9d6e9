from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..database import ID, Base, UTCDateTime, new_id, utcnow
from .lifecycle import StreamStatus


class Stream(Base):
    __tablename__ = "streams"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    title: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    owner_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=StreamStatus.READY.value, index=True)
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_rotated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the stream last entered each state (None: never).
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    testing_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    live_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    offline_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    stale_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Set when the ingest checks the stream key; the HLS publish that follows must come within
    # a minute, and uses it up. A local process publishing to the HLS application directly,
    # without a key, is therefore refused.
    publish_authorized_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class StreamTransition(Base):
    """The stream's history: every state change, who made it and when."""

    __tablename__ = "stream_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stream_id: Mapped[str] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(80))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
