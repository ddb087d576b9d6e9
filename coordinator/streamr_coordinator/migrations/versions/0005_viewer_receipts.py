"""Viewer receipts (batches, counted once per batch id) and the node a session sticks to.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 12:59:32.839051
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "viewer_receipt_batches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("receipts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["viewer_sessions.id"],
            name=op.f("fk_viewer_receipt_batches_session_id_viewer_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_viewer_receipt_batches")),
        sa.UniqueConstraint(
            "session_id", "batch_id", name=op.f("uq_viewer_receipt_batches_session_id")
        ),
    )
    op.create_table(
        "viewer_receipts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_pk", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("stream_id", sa.String(length=36), nullable=False),
        sa.Column("node_id", sa.String(length=36), nullable=True),
        sa.Column("source_kind", sa.String(length=8), nullable=False),
        sa.Column("segment", sa.String(length=128), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("ttfb_ms", sa.Integer(), nullable=True),
        sa.Column("download_ms", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_pk"],
            ["viewer_receipt_batches.id"],
            name=op.f("fk_viewer_receipts_batch_pk_viewer_receipt_batches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.id"],
            name=op.f("fk_viewer_receipts_node_id_nodes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["viewer_sessions.id"],
            name=op.f("fk_viewer_receipts_session_id_viewer_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["stream_id"],
            ["streams.id"],
            name=op.f("fk_viewer_receipts_stream_id_streams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_viewer_receipts")),
    )
    with op.batch_alter_table("viewer_receipts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_viewer_receipts_batch_pk"), ["batch_pk"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_viewer_receipts_node_id"), ["node_id", "received_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_viewer_receipts_session_id"), ["session_id", "received_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_viewer_receipts_stream_id"), ["stream_id", "received_at"], unique=False
        )

    with op.batch_alter_table("viewer_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node_id", sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("viewer_receipts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_viewer_receipts_stream_id"))
        batch_op.drop_index(batch_op.f("ix_viewer_receipts_session_id"))
        batch_op.drop_index(batch_op.f("ix_viewer_receipts_node_id"))
        batch_op.drop_index(batch_op.f("ix_viewer_receipts_batch_pk"))

    op.drop_table("viewer_receipts")
    op.drop_table("viewer_receipt_batches")
    with op.batch_alter_table("viewer_sessions", schema=None) as batch_op:
        batch_op.drop_column("node_id")
