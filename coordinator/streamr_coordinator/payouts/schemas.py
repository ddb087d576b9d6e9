"""Wire shapes of the payouts API. Money is integer micro-USD; each amount also comes as exact
decimal USD text (``*_usd``), formatted from the integer, never through a float."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from .economics import LIMITS

MAX_FUNDING_MICRO_USD = 1_000_000_000_000  # 1 million USD in one funding


def _term(name: str, description: str) -> object:
    low, high, meaning = LIMITS[name]
    return Field(default=None, ge=low, le=high, description=f"{description} ({meaning})")


class EconomicsOut(BaseModel):
    version: int | None = Field(description="None: the configured defaults, never changed here")
    rate_micro_usd_per_gb: int
    rate_usd_per_gb: str
    platform_fee_bps: int
    minimum_payout_micro_usd: int
    minimum_payout_usd: str
    vetting_pay_bps: int
    payout_period_s: int
    set_by: str | None = None
    set_at: datetime | None = None
    note: str = ""


class EconomicsView(BaseModel):
    current: EconomicsOut
    history: list[EconomicsOut] = Field(description="Versions set by operators, newest first")


class EconomicsChange(BaseModel):
    """Terms to change; the others keep their current values."""

    rate_micro_usd_per_gb: int | None = _term("rate_micro_usd_per_gb", "Pay per GB delivered")
    platform_fee_bps: int | None = _term("platform_fee_bps", "The platform's share")
    minimum_payout_micro_usd: int | None = _term(
        "minimum_payout_micro_usd", "Smaller balances carry over"
    )
    vetting_pay_bps: int | None = _term("vetting_pay_bps", "Pay while a node is vetted")
    payout_period_s: int | None = _term("payout_period_s", "Length of a payout period")
    note: str = Field(default="", max_length=200, description="Why, for the history")


class FundBudget(BaseModel):
    amount_micro_usd: int = Field(
        gt=0, le=MAX_FUNDING_MICRO_USD, description="Received from the streamer, in micro-USD"
    )
    funding_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Your id for this funding: sending it again records it once",
    )
    note: str = Field(default="", max_length=200)


class BudgetOut(BaseModel):
    stream: str
    state: Literal["ok", "low", "exhausted"]
    message: str
    balance_micro_usd: int
    balance_usd: str
    funded_micro_usd: int
    spent_micro_usd: int
    unfunded_bytes: int = Field(description="Delivered while the budget was empty: not paid")
    unfunded_micro_usd: int = Field(description="What those bytes would have earned: not owed")


class FundingOut(BaseModel):
    stream: str
    transaction_key: str
    amount_micro_usd: int
    duplicate: bool = Field(description="This funding id was recorded before; nothing was added")
    budget: BudgetOut


class AccrualLine(BaseModel):
    """What one reconciled interval earned a node."""

    reconciliation_id: int
    node_id: str
    node_name: str | None
    stream: str | None
    interval_start: datetime
    interval_end: datetime
    paid_bytes: int
    rate_micro_usd_per_gb: int
    economics_version: int | None
    pay_bps: int = Field(description="The node's pay factor (10000 = full pay)")
    gross_micro_usd: int = Field(description="Paid by the stream's budget")
    fee_micro_usd: int
    net_micro_usd: int = Field(description="The friend's share")
    net_usd: str
    unfunded_bytes: int
    unfunded_micro_usd: int
    transaction_key: str | None
    accrued_at: datetime


class PayoutLine(BaseModel):
    payout_id: int
    node_id: str
    node_name: str | None
    period_start: datetime
    period_end: datetime
    status: Literal["sent", "carried_over"]
    amount_micro_usd: int
    amount_usd: str
    balance_micro_usd: int = Field(description="The node's earnings when the cycle ran")
    minimum_micro_usd: int


class FundingLine(BaseModel):
    stream: str | None
    at: datetime
    amount_micro_usd: int
    amount_usd: str
    actor: str
    note: str
    transaction_key: str


class NodeSpend(BaseModel):
    stream: str | None
    node_id: str
    node_name: str | None
    paid_bytes: int
    gross_micro_usd: int
    fee_micro_usd: int
    net_micro_usd: int
    unfunded_bytes: int
    unfunded_micro_usd: int


class NodeBalance(BaseModel):
    node_id: str
    node_name: str | None
    stream: str | None
    balance_micro_usd: int = Field(description="Earned and not paid out yet")
    balance_usd: str
    earned_micro_usd: int
    paid_out_micro_usd: int
    below_minimum: bool = Field(description="The balance carries over to the next period")


class NodeEarnings(BaseModel):
    """A node's money: for its friend's dashboard and ``streamr-node status``."""

    node: NodeBalance
    budget: BudgetOut
    economics: EconomicsOut
    pay_bps_last: int | None = Field(description="Pay factor of the node's latest accrual")
    recent: list[AccrualLine]
    payouts: list[PayoutLine]


class Statement(BaseModel):
    kind: Literal["friend", "streamer", "operator"]
    generated_at: datetime
    since: datetime | None
    until: datetime | None
    totals: dict[str, int] = Field(description="All-time totals in micro-USD (bytes for *_bytes)")
    nodes: list[NodeBalance]
    budgets: list[BudgetOut]
    accruals: list[AccrualLine]
    payouts: list[PayoutLine]
    fundings: list[FundingLine]
    spend: list[NodeSpend]
    truncated: bool = Field(description="More lines than the limit: narrow since/until")
