"""Campaign tables: the campaign and its queue (one item per contact to call).

An item moves  pending → dialing → in_progress → completed | failed | canceled,  going
back to pending when an attempt is to be retried. `dialing` items carry a lease (owner and
expiry) so that an item whose process died is reclaimed; `in_progress` items wait for their
call's final webhook (the lease expiry then bounds how long).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow
from app.models import IdType

CAMPAIGN_STATUSES = ("draft", "scheduled", "running", "paused", "completed", "canceled")
ITEM_STATES = ("pending", "dialing", "in_progress", "completed", "failed", "canceled")
OPEN_ITEM_STATES = ("pending", "dialing", "in_progress")
IN_FLIGHT_STATES = ("dialing", "in_progress")


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (
        Index("ix_campaigns_status", "status"),
        Index("ix_campaigns_user_id_id", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    # insufficient_credits | user_requested | provider_unauthorized
    pause_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    max_concurrency: Mapped[int] = mapped_column(Integer, default=2)
    start_at: Mapped[datetime | None] = mapped_column(default=None)
    window_start: Mapped[str | None] = mapped_column(String(5), default=None)  # "HH:MM"
    window_end: Mapped[str | None] = mapped_column(String(5), default=None)
    window_timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    retry_max_attempts: Mapped[int] = mapped_column(Integer, default=2)
    retry_on: Mapped[str] = mapped_column(String(64), default="no-answer,busy,failed")
    retry_backoff_seconds: Mapped[int] = mapped_column(Integer, default=300)
    total_items: Mapped[int] = mapped_column(Integer, default=0)
    duplicates_skipped: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class CampaignItem(Base):
    __tablename__ = "campaign_items"
    __table_args__ = (
        # The claim (pending and due, oldest first), the in-flight count and progress counts.
        Index("ix_campaign_items_claim", "campaign_id", "state", "next_attempt_at"),
        # Reclaiming expired leases across campaigns.
        Index("ix_campaign_items_lease", "state", "lease_expires_at"),
        # Paging through a campaign's items.
        Index("ix_campaign_items_campaign_id_id", "campaign_id", "id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), default=None, index=True
    )
    # A snapshot taken at creation: what was uploaded is what is dialed.
    name: Mapped[str] = mapped_column(String(200))
    phone_number: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When the current attempt was claimed: calls created since belong to it.
    dialed_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    call_id: Mapped[int | None] = mapped_column(IdType, default=None)
    last_outcome: Mapped[str | None] = mapped_column(String(32), default=None)
    failure_reason: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
