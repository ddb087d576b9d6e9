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
    """A state in one word and what it means, said plainly."""

    state: str
    message: str


TrustLevel = Literal["vetting", "good", "warned", "penalised"]


class TrustNow(BaseModel):
    """A node's trust now (verification's standing), with its numbers already as text."""

    level: TrustLevel
    score: float = Field(description="0 to 1")
    score_percent: str = Field(description='The score as whole percent, e.g. "95%"')
    pay_bps: int = Field(description="Share of the full rate it earns (10000 = all)")
    pay_percent: str
    message: str = Field(description="What this means for its friend, in plain words")
    alert: bool = Field(description="Warned or penalised: the page shows a warning banner")
    probes_passed: int
    warned_at: datetime | None
    penalised_at: datetime | None


class TrustPoint(BaseModel):
    at: datetime
    score: float
    level: str
    source: str = Field(description="probe, reconciliation or viewers")
    detail: str


class ProbeRow(BaseModel):
    started_at: datetime
    outcome: str = Field(description="ok, mismatch, error, timeout or missing")
    reason: str
    segment: str
    bytes: int
    ttfb_ms: int | None
    throughput_bps: int | None
    detail: str


class ReconciliationRow(BaseModel):
    interval_start: datetime
    interval_end: datetime
    claimed_bytes: int
    receipted_bytes: int
    plausible_bytes: int
    paid_bytes: int
    outcome: str = Field(description="agree, disagree or idle")
    excluded_sessions: int
    discrepancies: int
    discrepancy_kinds: str = Field(description="Kinds of its discrepancies, comma separated")


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
    trust_level: TrustLevel
    trust_percent: str
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


class BudgetView(BaseModel):
    """A stream's budget (payouts' budget state), amounts as exact text."""

    state: Literal["ok", "low", "exhausted"]
    message: str
    advice: str = Field(description="What to do, when the budget is low or used up")
    needs_funds: bool
    balance_micro_usd: int
    balance: str
    funded_micro_usd: int
    funded: str
    spent_micro_usd: int
    spent: str
    unfunded_bytes: int = Field(description="Delivered while the budget was empty: not paid")
    unfunded: str = Field(description="What those bytes would have earned: not owed")


class SpendRow(BaseModel):
    node_id: str
    node_name: str | None
    paid_bytes: int
    gross: str = Field(description="Paid from the budget")
    fee: str
    net: str = Field(description="The friend's share")
    unfunded_bytes: int


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
    budget: BudgetView
    spend: list[SpendRow] = Field(description="What each node was paid from the budget")


class StreamerDashboard(BaseModel):
    generated_at: datetime
    display_name: str
    cdn_price_micro_usd_per_gb: int
    friend_bytes_total: int
    money_saved_micro_usd: int
    money_saved: str
    funded: str = Field(description="All streams' fundings")
    spent: str = Field(description="All streams' budgets spent on friends' delivery")
    rate_per_gb: str = Field(description="What friends are paid per GB now")
    statement_csv: str = Field(description="The statement as CSV, for the logged-in browser")
    streams: list[StreamerStream]


# --- Friend -------------------------------------------------------------------------------


class NodeMoney(BaseModel):
    """A node's money, as exact text from integer micro-USD."""

    balance_micro_usd: int
    balance: str
    earned: str
    paid_out: str
    carried_over: str
    below_minimum: bool


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
    trust: TrustNow
    trust_history: list[TrustPoint] = Field(description="Oldest first")
    probes: list[ProbeRow] = Field(description="Newest first")
    reconciliations: list[ReconciliationRow] = Field(description="Newest first")
    money: NodeMoney
    budget: Notice = Field(description="Its stream's budget: ok, low or exhausted")


class AccrualRow(BaseModel):
    interval_start: datetime
    interval_end: datetime
    node_name: str | None
    stream: str | None
    paid_bytes: int
    pay_percent: str = Field(description="The pay factor from trust (vetting pays less)")
    gross: str
    fee: str
    net: str


class PayoutRow(BaseModel):
    period_start: datetime
    period_end: datetime
    node_name: str | None
    status: Literal["sent", "carried_over"]
    amount: str
    balance: str = Field(description="The node's earnings when the cycle ran")


class FriendEarnings(BaseModel):
    balance_micro_usd: int
    balance: str = Field(description="Earned and not paid out yet")
    earned: str = Field(description="Accrued, all time")
    paid_out: str
    carried_over: str = Field(description="What the latest cycles left below the minimum")
    minimum_payout: str
    rate_per_gb: str
    next_payout_at: datetime = Field(description="When the current payout period ends")
    next_payout: str = Field(description="What happens then, in plain words")
    accruals: list[AccrualRow] = Field(description="Latest statement lines, newest first")
    payouts: list[PayoutRow] = Field(description="Latest payouts and carry-overs, newest first")


class FriendDashboard(BaseModel):
    generated_at: datetime
    display_name: str
    nodes: list[FriendNode]
    delivered_bytes_total: int
    delivered_bytes_24h: int
    delivered_by_hour: HourlySeries
    trust: Notice = Field(description="The worst standing of the nodes, in plain words")
    alerts: list[str] = Field(description="Warnings to show in a banner: trust and budgets")
    earnings: FriendEarnings
    statement_csv: str = Field(description="The statement as CSV, for the logged-in browser")


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
    trust_level: TrustLevel
    trust_percent: str
    pay_percent: str


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


class EconomicsView(BaseModel):
    """The operator's terms, each also as the text the form takes."""

    version: int | None = Field(description="None: the configured defaults")
    rate_micro_usd_per_gb: int
    rate_per_gb: str
    rate_usd: str = Field(description="USD per GB as the form takes it, e.g. 0.05")
    platform_fee_bps: int
    platform_fee_percent: str
    minimum_payout_micro_usd: int
    minimum_payout: str
    minimum_payout_usd: str
    vetting_pay_bps: int
    vetting_pay_percent: str
    payout_period_s: int
    payout_period: str
    set_by: str | None
    set_at: datetime | None
    note: str


class JobRunRow(BaseModel):
    started_at: datetime
    outcome: str
    duration_ms: int | None
    error: str


class OperatorJob(BaseModel):
    name: str
    interval_s: float | None
    holder: str = Field(description="The worker that took the lease last; empty: never run")
    held: bool = Field(description="A worker holds the lease now")
    last_ok_at: datetime | None
    last_error_at: datetime | None
    runs: list[JobRunRow] = Field(description="Latest runs, newest first")


class DiscrepancyRow(BaseModel):
    created_at: datetime
    node_name: str
    owner: str
    kind: str
    session_id: str | None
    claimed: int
    receipted: int
    evidence: str = Field(description="The evidence as JSON text, shortened")


class ProbeFailureRow(BaseModel):
    started_at: datetime
    node_name: str
    owner: str
    outcome: str
    segment: str
    ttfb_ms: int | None
    detail: str


class PlatformMoney(BaseModel):
    fees: str = Field(description="The platform's fees, all time")
    funded: str
    budgets_left: str
    earnings_owed: str = Field(description="Friends' balances not paid out yet")
    payouts_sent: str
    books_balance: str = Field(description="The sum of every account: always $0.00")


class OperatorDashboard(BaseModel):
    generated_at: datetime
    totals: OperatorTotals
    streams: list[OperatorStream]
    streams_shown_of: int
    nodes: list[OperatorNode]
    nodes_shown_of: int
    flagged: list[FlaggedNode]
    error_rates: ErrorRates
    economics: EconomicsView
    money: PlatformMoney
    jobs: list[OperatorJob]
    discrepancies: list[DiscrepancyRow] = Field(description="Newest first")
    probe_failures: list[ProbeFailureRow] = Field(description="Newest first")
    statement_csv: str
