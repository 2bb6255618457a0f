"""campaigns and their queue items

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 10:00:00

Hand-written. The indexes serve the queue's hot paths so that work per item stays flat:
claim (campaign, state, next_attempt_at), lease reclaim (state, lease_expires_at), paging a
campaign's items (campaign, id).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

IdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", IdType, autoincrement=True, nullable=False),
        sa.Column("user_id", IdType, nullable=False),
        sa.Column("agent_id", IdType, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("pause_reason", sa.String(length=32), nullable=True),
        sa.Column("max_concurrency", sa.Integer(), nullable=False),
        sa.Column("start_at", sa.DateTime(), nullable=True),
        sa.Column("window_start", sa.String(length=5), nullable=True),
        sa.Column("window_end", sa.String(length=5), nullable=True),
        sa.Column("window_timezone", sa.String(length=64), nullable=True),
        sa.Column("retry_max_attempts", sa.Integer(), nullable=False),
        sa.Column("retry_on", sa.String(length=64), nullable=False),
        sa.Column("retry_backoff_seconds", sa.Integer(), nullable=False),
        sa.Column("total_items", sa.Integer(), nullable=False),
        sa.Column("duplicates_skipped", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_campaigns_status", "campaigns", ["status"])
    op.create_index("ix_campaigns_user_id_id", "campaigns", ["user_id", "id"])

    op.create_table(
        "campaign_items",
        sa.Column("id", IdType, autoincrement=True, nullable=False),
        sa.Column("campaign_id", IdType, nullable=False),
        sa.Column("contact_id", IdType, nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("phone_number", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("dialed_at", sa.DateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("call_id", IdType, nullable=True),
        sa.Column("last_outcome", sa.String(length=32), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_campaign_items_claim", "campaign_items", ["campaign_id", "state", "next_attempt_at"]
    )
    op.create_index("ix_campaign_items_lease", "campaign_items", ["state", "lease_expires_at"])
    op.create_index("ix_campaign_items_campaign_id_id", "campaign_items", ["campaign_id", "id"])
    op.create_index("ix_campaign_items_contact_id", "campaign_items", ["contact_id"])


def downgrade() -> None:
    op.drop_index("ix_campaign_items_contact_id", table_name="campaign_items")
    op.drop_index("ix_campaign_items_campaign_id_id", table_name="campaign_items")
    op.drop_index("ix_campaign_items_lease", table_name="campaign_items")
    op.drop_index("ix_campaign_items_claim", table_name="campaign_items")
    op.drop_table("campaign_items")
    op.drop_index("ix_campaigns_user_id_id", table_name="campaigns")
    op.drop_index("ix_campaigns_status", table_name="campaigns")
    op.drop_table("campaigns")
