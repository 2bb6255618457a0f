"""Request and response bodies of the campaigns API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.campaigns.scheduler import load_timezone, parse_hhmm
from app.models import ApiId

MAX_CONTACTS = 100_000
RetryOutcome = Literal["no-answer", "busy", "failed", "error"]
DEFAULT_RETRY_ON: tuple[RetryOutcome, ...] = ("no-answer", "busy", "failed")


class DailyWindowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(description='Local time the window opens, "HH:MM" (24-hour).')
    end: str = Field(description="Local time it closes; before `start` means past midnight.")
    timezone: str = Field(description="IANA time zone, e.g. Asia/Kolkata.")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        return parse_hhmm(value).strftime("%H:%M")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return load_timezone(value).key


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start_at: datetime | None = Field(
        None, description="Do not dial before this instant (without an offset: UTC)."
    )
    daily_window: DailyWindowIn | None = None

    @field_validator("start_at")
    @classmethod
    def _as_naive_utc(cls, value: datetime | None) -> datetime | None:
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)


class RetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(2, ge=1, le=10, description="Dials per contact, the first included.")
    on: list[RetryOutcome] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_ON),
        description="Call outcomes worth another attempt.",
    )
    backoff_seconds: int = Field(300, ge=0, le=7 * 86400, description="Wait before a retry.")


class ContactEntry(BaseModel):
    name: str = ""
    phone_number: str


class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    agent_id: ApiId
    contact_ids: list[ApiId] = Field(default_factory=list, max_length=MAX_CONTACTS)
    contacts: list[ContactEntry] = Field(default_factory=list, max_length=MAX_CONTACTS)
    max_concurrency: int = Field(2, ge=1, le=100, description="Calls in flight at most.")
    schedule: ScheduleIn = Field(default_factory=ScheduleIn)
    retry: RetryIn = Field(default_factory=RetryIn)


class DailyWindowOut(BaseModel):
    start: str
    end: str
    timezone: str


class ScheduleOut(BaseModel):
    start_at: datetime | None
    daily_window: DailyWindowOut | None


class RetryOut(BaseModel):
    max_attempts: int
    on: list[str]
    backoff_seconds: int


class Progress(BaseModel):
    pending: int = 0
    dialing: int = 0
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    canceled: int = 0


class CampaignSummary(BaseModel):
    id: int
    name: str
    agent_id: int
    status: str
    pause_reason: str | None
    max_concurrency: int
    total_items: int
    duplicates_skipped: int
    schedule: ScheduleOut
    retry: RetryOut
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class CampaignOut(CampaignSummary):
    progress: Progress
    window_open: bool = Field(description="Whether the daily window allows dialing now.")
    next_window_at: datetime | None = Field(description="When a closed window opens (UTC).")


class CampaignPage(BaseModel):
    items: list[CampaignSummary]
    next_cursor: str | None


class CampaignItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    contact_id: int | None
    name: str
    phone_number: str
    state: str
    attempts: int
    next_attempt_at: datetime
    call_id: int | None
    last_outcome: str | None
    failure_reason: str | None


class CampaignItemPage(BaseModel):
    items: list[CampaignItemOut]
    next_cursor: str | None
