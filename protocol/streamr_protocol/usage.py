"""Usage reports: what a node served, per viewer session, in one reporting interval.

A report carries an id chosen by the node before it is first sent. The node keeps the report on
disk until the coordinator acknowledges it and sends it again after a fault; the coordinator
stores report ids per node, so a report sent twice is counted once.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from .messages import Message
from .nodes import MAX_URL_LENGTH

MAX_BYTES_PER_INTERVAL = 10**13  # far above any uplink over a reporting interval
MAX_SESSIONS_PER_REPORT = 5_000
MAX_INTEGRITY_FAILURES = 100
REPORT_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"


class SessionUsage(Message):
    session_id: str = Field(min_length=1, max_length=64)
    bytes: int = Field(ge=0, le=MAX_BYTES_PER_INTERVAL, description="Body bytes delivered")
    segments: int = Field(ge=0, le=10**9, description="Segments delivered in full")
    requests: int = Field(ge=0, le=10**9)


class IntegrityFailure(Message):
    """A segment from the node's upstream that did not match its signed index entry."""

    upstream_url: str = Field(min_length=1, max_length=MAX_URL_LENGTH)
    upstream_node_id: str | None = Field(default=None, max_length=64)
    segment: str = Field(min_length=1, max_length=128)
    sequence: int | None = Field(default=None, ge=0)
    reason: str = Field(min_length=1, max_length=300)


class UsageReport(Message):
    report_id: str = Field(pattern=REPORT_ID_PATTERN, description="Chosen by the node; idempotent")
    stream: str = Field(min_length=1, max_length=64)
    period_start: datetime = Field(description="Node clock; informational")
    period_end: datetime
    sessions: list[SessionUsage] = Field(default_factory=list, max_length=MAX_SESSIONS_PER_REPORT)
    unattributed_bytes: int = Field(
        default=0, ge=0, le=MAX_BYTES_PER_INTERVAL, description="Served without a valid session"
    )
    unattributed_requests: int = Field(default=0, ge=0, le=10**9)
    integrity_failures: list[IntegrityFailure] = Field(
        default_factory=list, max_length=MAX_INTEGRITY_FAILURES
    )

    @field_validator("sessions")
    @classmethod
    def _one_line_per_session(cls, sessions: list[SessionUsage]) -> list[SessionUsage]:
        seen: set[str] = set()
        for line in sessions:
            if line.session_id in seen:
                raise ValueError(f"session {line.session_id!r} appears twice; send one line each")
            seen.add(line.session_id)
        return sessions


class UsageAck(BaseModel):
    report_id: str
    duplicate: bool = Field(description="True when this report id was already counted")
    counted_bytes: int
    counted_sessions: int
    unknown_sessions: int = Field(description="Lines for sessions of no viewer of this stream")
