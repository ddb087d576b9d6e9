from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field


class UsageWindow(BaseModel):
    reports: int
    counted_bytes: int = Field(description="Bytes served to known viewer sessions")
    unattributed_bytes: int = Field(description="Bytes served without a valid session")


class UsageDay(UsageWindow):
    day: date = Field(description="A UTC day")


class NodeUsage(BaseModel):
    """What a node has reported, counted once per report id."""

    node_id: str
    stream: str
    reports: int
    counted_bytes: int
    unattributed_bytes: int
    unknown_sessions: int = Field(description="Report lines naming no viewer session of the stream")
    integrity_failures: int = Field(description="Bad segments the node received from upstream")
    last_report_at: datetime | None
    last_hour: UsageWindow
    days: list[UsageDay] = Field(description="The last 7 UTC days, today first")
