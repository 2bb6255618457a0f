"""ORM models, one class per table. Alembic (migrations/) owns the schema."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from annotated_types import Interval
from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow

IdType = BigInteger().with_variant(Integer(), "sqlite")
MAX_ID: Final = 2**63 - 1  # both variants of IdType are signed 64-bit
# An id as the API accepts it, in a path or a body: no row has any other, and the
# database driver raises on one outside 64 bits instead of finding nothing.
ApiId = Annotated[int, Interval(ge=1, le=MAX_ID)]
EXECUTION_ID_CHARS: Final = 64  # Bolna's execution ids are UUIDs (36)
HANGUP_REASON_CHARS: Final = 200


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    credits_balance: Mapped[int] = mapped_column(BigInteger, default=0)
    low_balance_since: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    bolna_agent_id: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    phone_number: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Call(Base):
    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_user_status_id", "user_id", "status", "id"),
        Index("ix_calls_user_id_desc", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), default=None
    )
    phone_number: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(32), default="queued")
    call_source: Mapped[str] = mapped_column(String(16), default="direct")
    campaign_id: Mapped[int | None] = mapped_column(BigInteger, default=None, index=True)
    campaign_item_id: Mapped[int | None] = mapped_column(BigInteger, default=None, index=True)
    execution_id: Mapped[str | None] = mapped_column(
        String(EXECUTION_ID_CHARS), unique=True, default=None
    )
    duration_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    transcript: Mapped[str | None] = mapped_column(Text, default=None)
    recording_url: Mapped[str | None] = mapped_column(Text, default=None)
    credits_charged: Mapped[int] = mapped_column(BigInteger, default=0)
    failure_reason: Mapped[str | None] = mapped_column(Text, default=None)
    hangup_reason: Mapped[str | None] = mapped_column(String(HANGUP_REASON_CHARS), default=None)
    # W3C traceparent of the initiating span, so a later webhook's span can link to it.
    traceparent: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """One raw webhook POST, stored before it is processed (append-only payload)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_state_next", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    execution_id: Mapped[str | None] = mapped_column(
        String(EXECUTION_ID_CHARS), index=True, default=None
    )
    bolna_status: Mapped[str | None] = mapped_column(String(32), default=None)
    payload: Mapped[str] = mapped_column(Text)
    # received | processed | duplicate | unmatched | failed | given_up
    state: Mapped[str] = mapped_column(String(16), default="received")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)


class CreditLedgerEntry(Base):
    """Append-only. `idempotency_key` makes every deduction happen at most once."""

    __tablename__ = "credit_ledger"
    __table_args__ = (UniqueConstraint("idempotency_key", name="uq_credit_ledger_idempotency"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)  # negative for a deduction
    balance_after: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    call_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TelemetryBudget(Base):
    """Error events sent per month and level, shared by every process on this database."""

    __tablename__ = "telemetry_budget"

    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    level: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
