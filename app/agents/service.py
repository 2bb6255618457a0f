"""Agents: a user's handle on a Bolna agent id."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import NotFound, ValidationFailed
from app.models import Agent


async def create_agent(
    session: AsyncSession, *, user_id: int, name: str, bolna_agent_id: str
) -> Agent:
    if not name.strip():
        raise ValidationFailed("name must not be empty.")
    if not bolna_agent_id.strip():
        raise ValidationFailed("bolna_agent_id must not be empty.")
    agent = Agent(user_id=user_id, name=name.strip(), bolna_agent_id=bolna_agent_id.strip())
    session.add(agent)
    await session.flush()
    return agent


async def get_agent(session: AsyncSession, *, user_id: int, agent_id: int) -> Agent:
    agent = await session.scalar(
        select(Agent).where(Agent.id == agent_id, Agent.user_id == user_id)
    )
    if agent is None:
        raise NotFound(f"Agent {agent_id} was not found.")
    return agent


async def list_agents(session: AsyncSession, *, user_id: int) -> list[Agent]:
    return list(
        await session.scalars(select(Agent).where(Agent.user_id == user_id).order_by(Agent.id))
    )
