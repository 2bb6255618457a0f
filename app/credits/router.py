from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from app.auth.deps import CurrentUser
from app.credits.service import balance_of, ledger
from app.db import SessionDep

router = APIRouter(prefix="/credits", tags=["credits"])


class LedgerEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    amount: int
    balance_after: int
    reason: str
    call_id: int | None
    created_at: datetime


class CreditsOut(BaseModel):
    balance: int
    ledger: list[LedgerEntryOut]


@router.get("")
async def show(user: CurrentUser, session: SessionDep) -> CreditsOut:
    """Your balance and the latest 100 ledger entries, newest first."""
    entries = await ledger(session, user.user_id)
    return CreditsOut(
        balance=await balance_of(session, user.user_id),
        ledger=[LedgerEntryOut.model_validate(e) for e in entries],
    )
