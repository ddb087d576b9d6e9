"""Verification: probes, reconciliation, trust, viewer and node network hashes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 15:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column],
        [f"{target}.id"],
        name=op.f(f"fk_{table}_{column}_{target}"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "probes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("stream_id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("segment", sa.String(length=128), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ttfb_ms", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("throughput_bps", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("detail", sa.String(length=300), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        _fk("probes", "node_id", "nodes"),
        _fk("probes", "stream_id", "streams"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_probes")),
    )
    op.create_index(op.f("ix_probes_node_id"), "probes", ["node_id", "started_at"], unique=False)

    op.create_table(
        "reconciliations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("stream_id", sa.String(length=36), nullable=False),
        sa.Column("interval_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("interval_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_bytes", sa.BigInteger(), nullable=False),
        sa.Column("receipted_bytes", sa.BigInteger(), nullable=False),
        sa.Column("plausible_bytes", sa.BigInteger(), nullable=False),
        sa.Column("paid_bytes", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("ratio", sa.Float(), nullable=True),
        sa.Column("excluded_sessions", sa.Integer(), nullable=False),
        sa.Column("viewer_ok", sa.Integer(), nullable=False),
        sa.Column("viewer_failed", sa.Integer(), nullable=False),
        sa.Column("viewer_mismatch_sessions", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliations")),
        sa.UniqueConstraint(
            "node_id", "stream_id", "interval_start", name=op.f("uq_reconciliations_node_id")
        ),
    )
    op.create_index(
        op.f("ix_reconciliations_interval_start"),
        "reconciliations",
        ["interval_start"],
        unique=False,
    )

    op.create_table(
        "reconciliation_sessions",
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("stream_id", sa.String(length=36), nullable=False),
        sa.Column("claimed", sa.BigInteger(), nullable=False),
        sa.Column("receipted", sa.BigInteger(), nullable=False),
        sa.Column("paid", sa.BigInteger(), nullable=False),
        sa.Column("excluded_reason", sa.String(length=32), nullable=True),
        sa.Column("ok_segments", sa.BigInteger(), nullable=False),
        sa.Column("max_sequence", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "session_id", name=op.f("pk_reconciliation_sessions")),
    )

    op.create_table(
        "discrepancies",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("reconciliation_id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("claimed", sa.BigInteger(), nullable=False),
        sa.Column("receipted", sa.BigInteger(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["reconciliation_id"],
            ["reconciliations.id"],
            name=op.f("fk_discrepancies_reconciliation_id_reconciliations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_discrepancies")),
    )
    op.create_index(
        op.f("ix_discrepancies_node_id"), "discrepancies", ["node_id", "created_at"], unique=False
    )
    op.create_index(
        op.f("ix_discrepancies_created_at"), "discrepancies", ["created_at"], unique=False
    )
    op.create_index(
        op.f("ix_discrepancies_reconciliation_id"),
        "discrepancies",
        ["reconciliation_id"],
        unique=False,
    )

    op.create_table(
        "trust_states",
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("beta", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("probes_passed", sa.Integer(), nullable=False),
        sa.Column("warned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("penalised_at", sa.DateTime(timezone=True), nullable=True),
        _fk("trust_states", "node_id", "nodes"),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_trust_states")),
    )

    op.create_table(
        "trust_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("success", sa.Float(), nullable=False),
        sa.Column("failure", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=300), nullable=False),
        _fk("trust_events", "node_id", "nodes"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trust_events")),
    )
    op.create_index(
        op.f("ix_trust_events_node_id"), "trust_events", ["node_id", "at"], unique=False
    )

    op.create_table(
        "node_networks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("network", sa.String(length=32), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        _fk("node_networks", "node_id", "nodes"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_networks")),
        sa.UniqueConstraint("node_id", "network", name=op.f("uq_node_networks_node_id")),
    )

    op.create_table(
        "verification_watermarks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_verification_watermarks")),
    )

    # Reconciliation reads one interval of every node's reports and receipts at once.
    op.create_index(
        op.f("ix_usage_reports_received_at"), "usage_reports", ["received_at"], unique=False
    )
    op.create_index(
        op.f("ix_viewer_receipts_received_at"), "viewer_receipts", ["received_at"], unique=False
    )

    with op.batch_alter_table("viewer_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_network", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("sources_polls", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("is_probe", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("viewer_sessions", schema=None) as batch_op:
        batch_op.drop_column("is_probe")
        batch_op.drop_column("sources_polls")
        batch_op.drop_column("client_network")
    op.drop_index(op.f("ix_viewer_receipts_received_at"), table_name="viewer_receipts")
    op.drop_index(op.f("ix_usage_reports_received_at"), table_name="usage_reports")
    op.drop_table("verification_watermarks")
    op.drop_table("node_networks")
    op.drop_index(op.f("ix_trust_events_node_id"), table_name="trust_events")
    op.drop_table("trust_events")
    op.drop_table("trust_states")
    op.drop_index(op.f("ix_discrepancies_reconciliation_id"), table_name="discrepancies")
    op.drop_index(op.f("ix_discrepancies_created_at"), table_name="discrepancies")
    op.drop_index(op.f("ix_discrepancies_node_id"), table_name="discrepancies")
    op.drop_table("discrepancies")
    op.drop_table("reconciliation_sessions")
    op.drop_index(op.f("ix_reconciliations_interval_start"), table_name="reconciliations")
    op.drop_table("reconciliations")
    op.drop_index(op.f("ix_probes_node_id"), table_name="probes")
    op.drop_table("probes")
