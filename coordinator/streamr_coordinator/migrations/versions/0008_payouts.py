"""Payouts: economics versions, the double-entry ledger (accounts with balances that the
database refuses to overdraw, transactions unique per idempotency key, entries), one accrual per
reconciled interval, one payout row per node and period.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 15:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "economics",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rate_micro_usd_per_gb", sa.BigInteger(), nullable=False),
        sa.Column("platform_fee_bps", sa.Integer(), nullable=False),
        sa.Column("minimum_payout_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("vetting_pay_bps", sa.Integer(), nullable=False),
        sa.Column("payout_period_s", sa.Integer(), nullable=False),
        sa.Column("set_by", sa.String(length=80), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.CheckConstraint(
            "minimum_payout_micro_usd >= 0", name=op.f("ck_economics_minimum_not_negative")
        ),
        sa.CheckConstraint("payout_period_s > 0", name=op.f("ck_economics_period_positive")),
        sa.CheckConstraint(
            "platform_fee_bps BETWEEN 0 AND 10000", name=op.f("ck_economics_fee_in_range")
        ),
        sa.CheckConstraint(
            "rate_micro_usd_per_gb >= 0", name=op.f("ck_economics_rate_not_negative")
        ),
        sa.CheckConstraint(
            "vetting_pay_bps BETWEEN 0 AND 10000", name=op.f("ck_economics_vetting_in_range")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_economics")),
    )
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("stream_id", sa.String(length=36), nullable=True),
        sa.Column("node_id", sa.String(length=36), nullable=True),
        sa.Column("owner_id", sa.String(length=36), nullable=True),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("may_go_negative", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "may_go_negative OR balance >= 0", name=op.f("ck_ledger_accounts_balance_covered")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
        sa.UniqueConstraint("key", name=op.f("uq_ledger_accounts_key")),
    )
    with op.batch_alter_table("ledger_accounts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_accounts_node_id"), ["node_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_accounts_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_ledger_accounts_stream_id"), ["stream_id"], unique=False
        )

    op.create_table(
        "ledger_transactions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reconciliation_id", sa.Integer(), nullable=True),
        sa.Column("payout_id", sa.Integer(), nullable=True),
        sa.Column("stream_id", sa.String(length=36), nullable=True),
        sa.Column("node_id", sa.String(length=36), nullable=True),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("memo", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transactions")),
        sa.UniqueConstraint("key", name=op.f("uq_ledger_transactions_key")),
    )
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ledger_transactions_kind"), ["kind", "created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_ledger_transactions_node_id"), ["node_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_ledger_transactions_payout_id"), ["payout_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_ledger_transactions_reconciliation_id"),
            ["reconciliation_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_ledger_transactions_stream_id"), ["stream_id"], unique=False
        )

    op.create_table(
        "payouts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=True),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("balance_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("minimum_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_micro_usd >= 0", name=op.f("ck_payouts_amount_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payouts")),
        sa.UniqueConstraint("node_id", "period_start", name=op.f("uq_payouts_node_id")),
    )
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payouts_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_payouts_period_start"), ["period_start"], unique=False)

    op.create_table(
        "accruals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("reconciliation_id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("stream_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("interval_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("interval_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_bytes", sa.BigInteger(), nullable=False),
        sa.Column("cum_bytes_before", sa.BigInteger(), nullable=False),
        sa.Column("economics_version", sa.Integer(), nullable=True),
        sa.Column("rate_micro_usd_per_gb", sa.BigInteger(), nullable=False),
        sa.Column("platform_fee_bps", sa.Integer(), nullable=False),
        sa.Column("pay_bps", sa.Integer(), nullable=False),
        sa.Column("earned_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("owed_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("gross_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("friend_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("fee_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("unfunded_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("unfunded_bytes", sa.BigInteger(), nullable=False),
        sa.Column("transaction_id", sa.Integer(), nullable=True),
        sa.Column("accrued_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_accruals_transaction_id_ledger_transactions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accruals")),
        sa.UniqueConstraint("node_id", "stream_id", "seq", name=op.f("uq_accruals_node_id")),
        sa.UniqueConstraint("reconciliation_id", name=op.f("uq_accruals_reconciliation_id")),
    )
    with op.batch_alter_table("accruals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_accruals_node_id"), ["node_id", "interval_start"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_accruals_stream_id"), ["stream_id", "interval_start"], unique=False
        )

    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("transaction_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_ledger_entries_amount_not_zero")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_entries_account_id_ledger_accounts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_entries_transaction_id_ledger_transactions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ledger_entries_account_id"),
            ["account_id", "transaction_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_ledger_entries_transaction_id"), ["transaction_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_entries_transaction_id"))
        batch_op.drop_index(batch_op.f("ix_ledger_entries_account_id"))

    op.drop_table("ledger_entries")
    with op.batch_alter_table("accruals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accruals_stream_id"))
        batch_op.drop_index(batch_op.f("ix_accruals_node_id"))

    op.drop_table("accruals")
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payouts_period_start"))
        batch_op.drop_index(batch_op.f("ix_payouts_owner_id"))

    op.drop_table("payouts")
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_transactions_stream_id"))
        batch_op.drop_index(batch_op.f("ix_ledger_transactions_reconciliation_id"))
        batch_op.drop_index(batch_op.f("ix_ledger_transactions_payout_id"))
        batch_op.drop_index(batch_op.f("ix_ledger_transactions_node_id"))
        batch_op.drop_index(batch_op.f("ix_ledger_transactions_kind"))

    op.drop_table("ledger_transactions")
    with op.batch_alter_table("ledger_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_accounts_stream_id"))
        batch_op.drop_index(batch_op.f("ix_ledger_accounts_owner_id"))
        batch_op.drop_index(batch_op.f("ix_ledger_accounts_node_id"))

    op.drop_table("ledger_accounts")
    op.drop_table("economics")
