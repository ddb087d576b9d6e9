"""What the dashboards show, as JSON: the pages render these and their scripts poll them.

Only display names of accounts appear here, never an email; no stream key, invite code or node
token ever does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from ..invites.schemas import InviteOut

NodeHealth = Literal["healthy", "offline", "unchecked", "unreachable", "flagged", "at_capacity"]


class HourlySeries(BaseModel):
    """Values per hour, oldest first; ``starts`` are the hours' beginnings (UTC)."""

    starts: list[datetime]
    values: list[int]


class Notice(BaseModel):
    """A part of the system that does not exist yet, said plainly."""

    state: str
    message: str


# --- Public -------------------------------------------------------------------------------


class LiveStream(BaseModel):
    name: str
    title: str
    live_since: datetime | None
    nodes_online: int
    watch_path: str


class LeaderboardEntry(BaseModel):
    rank: int
    display_name: str
    nodes: int = Field(description="Nodes of this friend that delivered bytes")
    delivered_bytes: int = Field(description="Bytes counted from usage reports, all time")


class PublicDashboard(BaseModel):
    generated_at: datetime
    live_streams: list[LiveStream]
    leaderboard: list[LeaderboardEntry]


# --- Streamer -----------------------------------------------------------------------------


class SupportingNode(BaseModel):
    id: str
    name: str
    friend: str = Field(description="Display name of the friend who runs it")
    online: bool
    connections: int | None
    egress_bps: int | None
    egress_cap_bps: int | None
    last_seen_at: datetime | None
    reachability_status: str | None
    integrity_failures_24h: int = Field(description="Bad segments other nodes got from it")
    health: NodeHealth
    health_text: str


class StreamViewers(BaseModel):
    open_sessions: int = Field(description="Viewer sessions opened and not yet expired")
    served_by_friends_recently: int = Field(
        description="Sessions friend nodes reported bytes for in the last ``recent_window_s``"
    )
    recent_window_s: int
    node_connections: int = Field(description="Open connections on online friend nodes now")


class StreamBytes(BaseModel):
    friend_bytes_total: int = Field(description="Counted bytes friend nodes delivered")
    friend_bytes_24h: int
    recent_window_s: int = Field(
        description="How far back viewers' receipts are complete (they go with their sessions)"
    )
    friend_bytes_recent: int = Field(description="Counted friend bytes in the recent window")
    origin_bytes_recent: int = Field(
        description="Bytes viewers' receipts say came from the origin in the recent window"
    )
    friend_share_recent_percent: int | None = Field(
        description="Whole percent of the recent window's bytes that friends delivered"
    )
    origin_note: str
    money_saved_micro_usd: int = Field(description="friend_bytes_total at the CDN price")
    money_saved: str


class StreamerStream(BaseModel):
    name: str
    title: str
    status: str
    is_test: bool
    watch_path: str
    obs_server: str
    key_rotated_at: datetime
    invites: list[InviteOut]
    nodes: list[SupportingNode]
    viewers: StreamViewers
    bytes: StreamBytes
    friend_bytes_by_hour: HourlySeries
    origin_bytes_by_hour: list[int | None] = Field(
        description="Per hour of friend_bytes_by_hour; null where receipts may have been pruned"
    )
    friend_share_by_hour: list[int | None] = Field(
        description="Whole percent of each hour's bytes that came from friends; null: unknown"
    )


class StreamerDashboard(BaseModel):
    generated_at: datetime
    display_name: str
    cdn_price_micro_usd_per_gb: int
    friend_bytes_total: int
    money_saved_micro_usd: int
    money_saved: str
    streams: list[StreamerStream]


# --- Friend -------------------------------------------------------------------------------


class FriendNode(BaseModel):
    id: str
    name: str
    stream: str
    stream_title: str
    online: bool
    connections: int | None
    egress_bps: int | None
    egress_cap_bps: int | None
    public_url: str | None
    last_seen_at: datetime | None
    reachable: bool | None
    reachability_status: str | None
    reachability_checked_at: datetime | None
    advice: list[str] = Field(description="What to fix, in plain words; empty when reachable")
    delivered_bytes: int
    integrity_failures_24h: int = Field(description="Bad segments other nodes got from it")


class FriendDashboard(BaseModel):
    generated_at: datetime
    display_name: str
    nodes: list[FriendNode]
    delivered_bytes_total: int
    delivered_bytes_24h: int
    delivered_by_hour: HourlySeries
    trust: Notice
    earnings: Notice


# --- Operator -----------------------------------------------------------------------------


class OperatorStream(BaseModel):
    name: str
    title: str
    status: str
    owner: str
    created_at: datetime
    nodes_registered: int
    nodes_online: int


class OperatorNode(BaseModel):
    id: str
    name: str
    stream: str
    owner: str
    online: bool
    reachable: bool | None
    reachability_status: str | None
    integrity_failures_24h: int
    integrity_failures_total: int
    flagged: bool


class FlaggedNode(BaseModel):
    id: str
    name: str
    stream: str
    owner: str
    failures_total: int
    failures_24h: int
    reported_by_nodes: int = Field(
        description="Distinct nodes that reported it: one node alone may be wrong, or lying"
    )
    last_failure_at: datetime
    last_reason: str


class ErrorRates(BaseModel):
    """Per hour over the last day. Reachability keeps only each node's latest check, so the
    failures count nodes whose latest check failed, by the hour it ran."""

    starts: list[datetime]
    integrity_failures: list[int]
    reachability_failures: list[int]
    usage_reports: list[int]


class OperatorTotals(BaseModel):
    accounts_by_role: dict[str, int]
    streams_by_status: dict[str, int]
    nodes_registered: int
    nodes_online: int
    nodes_unreachable: int
    integrity_failures_24h: int
    origin_integrity_failures_24h: int = Field(
        description="Bad segments nodes got straight from the origin"
    )


class OperatorDashboard(BaseModel):
    generated_at: datetime
    totals: OperatorTotals
    streams: list[OperatorStream]
    streams_shown_of: int
    nodes: list[OperatorNode]
    nodes_shown_of: int
    flagged: list[FlaggedNode]
    error_rates: ErrorRates
