from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from ..database import ID, Base, UTCDateTime, new_id, utcnow


class Node(Base):
    """A friend's relay node attached to one stream. Its token is kept only as a hash.

    Live state (load, last heartbeat) lives in the presence store, not here; ``last_seen_at`` is
    a coarse copy written at most once a minute so history survives restarts.
    """

    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    stream_id: Mapped[str] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    invite_id: Mapped[str | None] = mapped_column(
        ForeignKey("invites.id", ondelete="SET NULL"), nullable=True
    )
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    public_url: Mapped[str | None] = mapped_column(String(2083), nullable=True)
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deregistered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The latest outside check of the node's public URL (POST .../reachability). Only a node
    # whose check passed, for the URL it still reports, is routed to viewers and other nodes.
    reachable: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    reachability_status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reachability_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reachability_url: Mapped[str | None] = mapped_column(String(2083), nullable=True)
