"""Friend-node relay: viewer sessions, usage reports with integrity failures, reachability.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 12:08:04.367747
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "viewer_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("stream_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["stream_id"],
            ["streams.id"],
            name=op.f("fk_viewer_sessions_stream_id_streams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_viewer_sessions")),
    )
    with op.batch_alter_table("viewer_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_viewer_sessions_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_viewer_sessions_stream_id"), ["stream_id"], unique=False
        )

    op.create_table(
        "usage_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("report_id", sa.String(length=64), nullable=False),
        sa.Column("stream_id", sa.String(length=36), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("counted_bytes", sa.BigInteger(), nullable=False),
        sa.Column("counted_sessions", sa.Integer(), nullable=False),
        sa.Column("unknown_sessions", sa.Integer(), nullable=False),
        sa.Column("unattributed_bytes", sa.BigInteger(), nullable=False),
        sa.Column("unattributed_requests", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.id"],
            name=op.f("fk_usage_reports_node_id_nodes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["stream_id"],
            ["streams.id"],
            name=op.f("fk_usage_reports_stream_id_streams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_reports")),
        sa.UniqueConstraint("node_id", "report_id", name=op.f("uq_usage_reports_node_id")),
    )
    with op.batch_alter_table("usage_reports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_usage_reports_node_id"), ["node_id", "received_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_usage_reports_stream_id"), ["stream_id"], unique=False)

    op.create_table(
        "integrity_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("report_pk", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("upstream_url", sa.String(length=2083), nullable=False),
        sa.Column("upstream_node_id", sa.String(length=64), nullable=True),
        sa.Column("segment", sa.String(length=128), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.id"],
            name=op.f("fk_integrity_failures_node_id_nodes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["report_pk"],
            ["usage_reports.id"],
            name=op.f("fk_integrity_failures_report_pk_usage_reports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integrity_failures")),
    )
    with op.batch_alter_table("integrity_failures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_integrity_failures_node_id"), ["node_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_integrity_failures_report_pk"), ["report_pk"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_integrity_failures_upstream_node_id"), ["upstream_node_id"], unique=False
        )

    op.create_table(
        "usage_lines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("report_pk", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("segments", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("known", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_pk"],
            ["usage_reports.id"],
            name=op.f("fk_usage_lines_report_pk_usage_reports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_lines")),
    )
    with op.batch_alter_table("usage_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_usage_lines_report_pk"), ["report_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_usage_lines_session_id"), ["session_id"], unique=False)

    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reachable", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("reachability_status", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("reachability_checked_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("reachability_url", sa.String(length=2083), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("reachability_url")
        batch_op.drop_column("reachability_checked_at")
        batch_op.drop_column("reachability_status")
        batch_op.drop_column("reachable")

    with op.batch_alter_table("usage_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_lines_session_id"))
        batch_op.drop_index(batch_op.f("ix_usage_lines_report_pk"))

    op.drop_table("usage_lines")
    with op.batch_alter_table("integrity_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_integrity_failures_upstream_node_id"))
        batch_op.drop_index(batch_op.f("ix_integrity_failures_report_pk"))
        batch_op.drop_index(batch_op.f("ix_integrity_failures_node_id"))

    op.drop_table("integrity_failures")
    with op.batch_alter_table("usage_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_reports_stream_id"))
        batch_op.drop_index(batch_op.f("ix_usage_reports_node_id"))

    op.drop_table("usage_reports")
    with op.batch_alter_table("viewer_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_viewer_sessions_stream_id"))
        batch_op.drop_index(batch_op.f("ix_viewer_sessions_expires_at"))

    op.drop_table("viewer_sessions")
