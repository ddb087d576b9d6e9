from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from ..database import ID, Base, UTCDateTime, new_id, utcnow


class ViewerSession(Base):
    """One watch of one stream. Viewers are anonymous: no account and no address is kept.

    The row is what makes a session "known" when a node reports the bytes it served under it;
    the token the viewer holds is signed, so nodes check it without asking the coordinator.
    """

    __tablename__ = "viewer_sessions"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    stream_id: Mapped[str] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
