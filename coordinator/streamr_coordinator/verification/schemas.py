from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class StandingOut(BaseModel):
    """A node's trust right now and what it means for its pay and its viewers."""

    level: str = Field(description="vetting, good, warned or penalised")
    score: float = Field(description="Trust, 0 to 1: the share of evidence that it delivers")
    pay_bps: int = Field(description="Share of the full rate it earns, in 1/10000 (10000 = all)")
    routing_weight: float = Field(description="How readily viewers are sent to it; 0 = none")
    message: str = Field(description="What this means, in plain words, and what to do")
    probes_passed: int
    first_seen_at: datetime | None
    warned_at: datetime | None
    penalised_at: datetime | None


class BudgetOut(BaseModel):
    state: str = Field(description="The stream budget: funded, low or exhausted")
    message: str


class NodeStanding(StandingOut):
    node_id: str
    budget: BudgetOut | None = Field(
        default=None, description="The stream's budget, when payouts has one for it"
    )


class TrustEventOut(BaseModel):
    at: datetime
    source: str = Field(description="probe, reconciliation or viewers")
    success: float
    failure: float
    score: float = Field(description="Trust after this event")
    level: str
    detail: str


class NodeTrust(BaseModel):
    node_id: str
    standing: StandingOut
    history: list[TrustEventOut] = Field(description="Newest first")


class ProbeOut(BaseModel):
    id: int
    node_id: str
    reason: str = Field(description="scheduled (random) or targeted (after a viewer's mismatch)")
    segment: str
    sequence: int
    started_at: datetime
    ttfb_ms: int | None
    duration_ms: int | None
    bytes: int
    throughput_bps: int | None
    outcome: str = Field(description="ok, mismatch, error, timeout or missing")
    detail: str


class ProbeList(BaseModel):
    probes: list[ProbeOut] = Field(description="Newest first")


class DiscrepancyOut(BaseModel):
    id: int
    reconciliation_id: int
    node_id: str
    kind: str
    session_id: str | None
    claimed: int
    receipted: int
    evidence: dict[str, Any]
    created_at: datetime


class ReconciliationOut(BaseModel):
    id: int
    node_id: str
    stream_id: str
    interval_start: datetime
    interval_end: datetime
    claimed_bytes: int = Field(description="Bytes the node reported in the interval")
    receipted_bytes: int = Field(description="Bytes viewers confirmed (counted receipts)")
    plausible_bytes: int = Field(description="Most that could have been delivered")
    paid_bytes: int = Field(description="Bytes paid for this interval")
    outcome: str = Field(description="agree, disagree or idle")
    ratio: float | None
    excluded_sessions: int
    discrepancies: list[DiscrepancyOut]


class ReconciliationList(BaseModel):
    reconciliations: list[ReconciliationOut] = Field(description="Newest first")


class NodeTrustSummary(StandingOut):
    node_id: str
    node_name: str
    stream_id: str
    owner_id: str


class TrustOverview(BaseModel):
    nodes: list[NodeTrustSummary] = Field(description="Lowest trust first")


class DiscrepancyList(BaseModel):
    discrepancies: list[DiscrepancyOut] = Field(description="Newest first")
