"""Contacts: people to call, with an E.164 phone number."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import NotFound, ValidationFailed
from app.models import Contact
from app.phone import normalize_e164


async def create_contact(
    session: AsyncSession, *, user_id: int, name: str, phone_number: str
) -> Contact:
    if not name.strip():
        raise ValidationFailed("name must not be empty.")
    phone = normalize_e164(phone_number)
    if phone is None:
        raise ValidationFailed(
            "phone_number must be in E.164 form, a + and 7 to 15 digits, e.g. +919876543210."
        )
    contact = Contact(user_id=user_id, name=name.strip(), phone_number=phone)
    session.add(contact)
    await session.flush()
    return contact


async def get_contact(session: AsyncSession, *, user_id: int, contact_id: int) -> Contact:
    contact = await session.scalar(
        select(Contact).where(Contact.id == contact_id, Contact.user_id == user_id)
    )
    if contact is None:
        raise NotFound(f"Contact {contact_id} was not found.")
    return contact


async def list_contacts(session: AsyncSession, *, user_id: int) -> list[Contact]:
    return list(
        await session.scalars(
            select(Contact).where(Contact.user_id == user_id).order_by(Contact.id)
        )
    )
