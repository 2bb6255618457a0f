from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.agents.service import create_agent, list_agents
from app.auth.deps import CurrentUser
from app.db import SessionDep

router = APIRouter(prefix="/agents", tags=["agents"])


class AgentIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    bolna_agent_id: str = Field(min_length=1, max_length=100)


class AgentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    bolna_agent_id: str
    created_at: datetime


@router.post("", status_code=201)
async def create(body: AgentIn, user: CurrentUser, session: SessionDep) -> AgentOut:
    """Register a Bolna agent (its id from Bolna's dashboard) to place calls with."""
    agent = await create_agent(
        session, user_id=user.user_id, name=body.name, bolna_agent_id=body.bolna_agent_id
    )
    return AgentOut.model_validate(agent)


@router.get("")
async def index(user: CurrentUser, session: SessionDep) -> list[AgentOut]:
    """Your agents."""
    return [AgentOut.model_validate(a) for a in await list_agents(session, user_id=user.user_id)]
