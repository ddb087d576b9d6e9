"""What payouts keep: economics versions, the ledger (accounts, transactions, entries), one
accrual per reconciled interval, and one payout row per node and period.

Money rows name nodes, streams and accounts without foreign keys on purpose: the books must
outlive a deleted stream or node, as the reconciliations they point at do.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..database import ID, Base, UTCDateTime, utcnow


class EconomicsVersion(Base):
    """One version of the operator's terms; the latest is current. Never updated in place."""

    __tablename__ = "economics"
    __table_args__ = (
        CheckConstraint("rate_micro_usd_per_gb >= 0", name="rate_not_negative"),
        CheckConstraint("platform_fee_bps BETWEEN 0 AND 10000", name="fee_in_range"),
        CheckConstraint("minimum_payout_micro_usd >= 0", name="minimum_not_negative"),
        CheckConstraint("vetting_pay_bps BETWEEN 0 AND 10000", name="vetting_in_range"),
        CheckConstraint("payout_period_s > 0", name="period_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rate_micro_usd_per_gb: Mapped[int] = mapped_column(BigInteger)
    platform_fee_bps: Mapped[int] = mapped_column(Integer)
    minimum_payout_micro_usd: Mapped[int] = mapped_column(BigInteger)
    vetting_pay_bps: Mapped[int] = mapped_column(Integer)
    payout_period_s: Mapped[int] = mapped_column(Integer)
    set_by: Mapped[str] = mapped_column(String(80))  # "account:<id>"
    set_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    note: Mapped[str] = mapped_column(String(200), default="")


class LedgerAccount(Base):
    """A balance. The CHECK makes the database itself refuse an overdraft."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (CheckConstraint("may_go_negative OR balance >= 0", name="balance_covered"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(24))
    stream_id: Mapped[str | None] = mapped_column(ID, nullable=True, index=True)
    node_id: Mapped[str | None] = mapped_column(ID, nullable=True, index=True)
    # Who sees this account in a statement: the stream's streamer or the node's friend.
    owner_id: Mapped[str | None] = mapped_column(ID, nullable=True, index=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    may_go_negative: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LedgerTransaction(Base):
    """Postings that add up to zero, written once per ``key`` (the unique constraint decides)."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (Index(None, "kind", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # What it pays: a payout row (payouts), or for accruals the first of the reconciled
    # intervals it pays (the ``accruals`` rows pointing at it list them all).
    reconciliation_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    payout_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    stream_id: Mapped[str | None] = mapped_column(ID, nullable=True, index=True)
    node_id: Mapped[str | None] = mapped_column(ID, nullable=True, index=True)
    actor: Mapped[str] = mapped_column(String(80))
    memo: Mapped[str] = mapped_column(String(200), default="")


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        Index(None, "account_id", "transaction_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transaction_id: Mapped[int] = mapped_column(
        ForeignKey("ledger_transactions.id", ondelete="RESTRICT"), index=True
    )
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id", ondelete="RESTRICT"))
    amount: Mapped[int] = mapped_column(BigInteger)


class Accrual(Base):
    """How one reconciled interval was priced: the statement line a friend reads. One per
    reconciliation; ``seq`` numbers a (node, stream)'s accruals, so two workers that priced
    from the same cumulative total cannot both write. ``transaction_id``: the ledger transaction
    that moved this interval's money together with the (node, stream)'s other intervals of
    the same run (None when nothing was owed)."""

    __tablename__ = "accruals"
    __table_args__ = (
        UniqueConstraint("node_id", "stream_id", "seq"),
        Index(None, "node_id", "interval_start"),
        Index(None, "stream_id", "interval_start"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reconciliation_id: Mapped[int] = mapped_column(Integer, unique=True)
    node_id: Mapped[str] = mapped_column(ID)
    stream_id: Mapped[str] = mapped_column(ID)
    seq: Mapped[int] = mapped_column(Integer)
    interval_start: Mapped[datetime] = mapped_column(UTCDateTime)
    interval_end: Mapped[datetime] = mapped_column(UTCDateTime)
    paid_bytes: Mapped[int] = mapped_column(BigInteger)
    cum_bytes_before: Mapped[int] = mapped_column(BigInteger)
    # None: the Settings defaults were current (no economics row yet).
    economics_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rate_micro_usd_per_gb: Mapped[int] = mapped_column(BigInteger)
    platform_fee_bps: Mapped[int] = mapped_column(Integer)
    pay_bps: Mapped[int] = mapped_column(Integer)
    earned_micro_usd: Mapped[int] = mapped_column(BigInteger)
    owed_micro_usd: Mapped[int] = mapped_column(BigInteger)
    gross_micro_usd: Mapped[int] = mapped_column(BigInteger)
    friend_micro_usd: Mapped[int] = mapped_column(BigInteger)
    fee_micro_usd: Mapped[int] = mapped_column(BigInteger)
    unfunded_micro_usd: Mapped[int] = mapped_column(BigInteger)
    unfunded_bytes: Mapped[int] = mapped_column(BigInteger)
    transaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_transactions.id", ondelete="RESTRICT"), nullable=True
    )
    accrued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Payout(Base):
    """A node's payout for one period: ``sent`` (the whole balance left for the friend) or
    ``carried_over`` (under the minimum: amount 0, the balance stays and counts next time)."""

    __tablename__ = "payouts"
    __table_args__ = (
        UniqueConstraint("node_id", "period_start"),
        CheckConstraint("amount_micro_usd >= 0", name="amount_not_negative"),
        Index(None, "period_start"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(ID)
    owner_id: Mapped[str | None] = mapped_column(ID, nullable=True, index=True)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # sent | carried_over
    amount_micro_usd: Mapped[int] = mapped_column(BigInteger)
    balance_micro_usd: Mapped[int] = mapped_column(BigInteger)  # earnings when the cycle ran
    minimum_micro_usd: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
