"""Receipt tallies: per (node, viewer session, interval) sums of receipts kept as they arrive,
so reconciliation reads a row per session instead of every receipt.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 18:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTS = (
    "plausible",
    "reordered",
    "size_mismatches",
    "before_segment",
    "too_fast",
    "stale",
    "unknown_segment",
    "ok_receipts",
    "mismatches",
    "failures",
)


def upgrade() -> None:
    op.create_table(
        "receipt_tallies",
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("bucket_s", sa.Integer(), nullable=False),
        sa.Column("interval_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stream_id", sa.String(length=36), nullable=False),
        sa.Column("counted_bytes", sa.BigInteger(), nullable=False),
        sa.Column("min_sequence", sa.BigInteger(), nullable=False),
        sa.Column("max_sequence", sa.BigInteger(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in _COUNTS),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "node_id", "session_id", "bucket_s", "interval_start", name=op.f("pk_receipt_tallies")
        ),
    )
    op.create_index(
        op.f("ix_receipt_tallies_bucket_s"),
        "receipt_tallies",
        ["bucket_s", "interval_start"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_receipt_tallies_bucket_s"), table_name="receipt_tallies")
    op.drop_table("receipt_tallies")
