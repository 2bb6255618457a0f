from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.auth.deps import CurrentUser
from app.contacts.service import create_contact, list_contacts
from app.db import SessionDep

router = APIRouter(prefix="/contacts", tags=["contacts"])


class ContactIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    phone_number: str = Field(min_length=1, max_length=32)


class ContactOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    phone_number: str
    created_at: datetime


@router.post("", status_code=201)
async def create(body: ContactIn, user: CurrentUser, session: SessionDep) -> ContactOut:
    """Add a contact; the phone number must be E.164 (e.g. +919876543210)."""
    contact = await create_contact(
        session, user_id=user.user_id, name=body.name, phone_number=body.phone_number
    )
    return ContactOut.model_validate(contact)


@router.get("")
async def index(user: CurrentUser, session: SessionDep) -> list[ContactOut]:
    """Your contacts."""
    contacts = await list_contacts(session, user_id=user.user_id)
    return [ContactOut.model_validate(c) for c in contacts]
