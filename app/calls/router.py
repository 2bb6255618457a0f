from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, model_validator

from app.auth.deps import CurrentUser, SettingsDep
from app.bolna.client import BolnaClient
from app.calls.service import CallRequest, get_call, initiate_call, list_calls
from app.db import SessionDep
from app.models import ApiId

router = APIRouter(prefix="/calls", tags=["calls"])


def get_bolna(request: Request) -> BolnaClient:
    client: BolnaClient = request.app.state.bolna
    return client


BolnaDep = Annotated[BolnaClient, Depends(get_bolna)]


class CallIn(BaseModel):
    agent_id: ApiId
    contact_id: ApiId | None = None
    phone_number: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> CallIn:
        if (self.contact_id is None) == (self.phone_number is None):
            raise ValueError("give exactly one of contact_id or phone_number")
        return self


class CallCreated(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    status: str
    execution_id: str | None


class CallOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    agent_id: int
    contact_id: int | None
    status: str
    call_source: str
    campaign_id: int | None
    execution_id: str | None
    duration_seconds: float | None
    transcript: str | None
    recording_url: str | None
    credits_charged: int
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime


class CallPage(BaseModel):
    items: list[CallOut]
    next_cursor: str | None


@router.post("", status_code=201)
async def create(
    body: CallIn, user: CurrentUser, session: SessionDep, settings: SettingsDep, bolna: BolnaDep
) -> CallCreated:
    """Place a call now to a contact or a phone number, with one of your agents."""
    call = await initiate_call(
        session,
        CallRequest(
            user_id=user.user_id,
            agent_id=body.agent_id,
            contact_id=body.contact_id,
            phone_number=body.phone_number,
        ),
        bolna=bolna,
        settings=settings,
    )
    return CallCreated.model_validate(call)


@router.get("/{call_id}")
async def show(call_id: ApiId, user: CurrentUser, session: SessionDep) -> CallOut:
    """One call: status, duration, transcript, recording and credits charged."""
    return CallOut.model_validate(await get_call(session, user_id=user.user_id, call_id=call_id))


@router.get("")
async def index(
    user: CurrentUser,
    session: SessionDep,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> CallPage:
    """Your calls, newest first; pass `next_cursor` back as `cursor` for the next page."""
    calls, next_cursor = await list_calls(
        session, user_id=user.user_id, status=status, limit=limit, cursor=cursor
    )
    return CallPage(items=[CallOut.model_validate(c) for c in calls], next_cursor=next_cursor)
