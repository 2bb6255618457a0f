"""The simulator's fault configuration and the pure rules that update and consume it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.simulator._scenario import Outcome

CallFaultMode = Literal["ok", "500", "503", "429", "401", "timeout"]


class CallFault(BaseModel):
    """How the next ``POST /call`` requests are answered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: CallFaultMode = "ok"
    # Requests left in this mode before it reverts to "ok"; None means until changed.
    count: int | None = Field(default=None, ge=1)
    # Retry-After header (seconds) on 429 and 503; None sends no header, as Bolna documents none.
    retry_after: int | None = Field(default=None, ge=0)
    # How long a "timeout" request is held before a 504, unless the client leaves first.
    timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("mode", mode="before")
    @classmethod
    def _accept_numeric_mode(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


class WebhookFaults(BaseModel):
    """How the webhooks of the next calls are played."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome: Outcome = "completed"
    # Consumed one per call, in order, before falling back to ``outcome``.
    outcomes: list[Outcome] = Field(default_factory=list)
    duplicate: bool = False
    out_of_order: bool = False
    malformed: bool = False


class FaultConfig(BaseModel):
    """The whole fault configuration, as ``GET /_sim/faults`` shows it."""

    model_config = ConfigDict(frozen=True)

    call: CallFault = Field(default_factory=CallFault)
    webhooks: WebhookFaults = Field(default_factory=WebhookFaults)
    latency_ms: int = Field(default=0, ge=0)
    step_delay_ms: int = Field(default=200, ge=0)


class FaultsUpdate(BaseModel):
    """Body of ``POST /_sim/faults``: every omitted part keeps its current value."""

    model_config = ConfigDict(extra="forbid")

    call: CallFault | None = None
    webhooks: WebhookFaults | None = None
    latency_ms: int | None = Field(default=None, ge=0)
    step_delay_ms: int | None = Field(default=None, ge=0)


def merge_faults(current: FaultConfig, update: FaultsUpdate) -> FaultConfig:
    """Apply an update: ``call`` is replaced whole, ``webhooks`` field by field."""
    changes: dict[str, object] = {}
    if update.call is not None:
        changes["call"] = update.call
    if update.webhooks is not None:
        given = {name: getattr(update.webhooks, name) for name in update.webhooks.model_fields_set}
        changes["webhooks"] = current.webhooks.model_copy(update=given)
    if update.latency_ms is not None:
        changes["latency_ms"] = update.latency_ms
    if update.step_delay_ms is not None:
        changes["step_delay_ms"] = update.step_delay_ms
    return current.model_copy(update=changes)


def consume_call_fault(current: FaultConfig) -> tuple[CallFault, FaultConfig]:
    """The fault for this request, and the configuration for the following ones."""
    fault = current.call
    if fault.mode == "ok" or fault.count is None:
        return fault, current
    following = (
        CallFault() if fault.count == 1 else fault.model_copy(update={"count": fault.count - 1})
    )
    return fault, current.model_copy(update={"call": following})


def consume_outcome(current: FaultConfig) -> tuple[Outcome, FaultConfig]:
    """The outcome for a new call, and the configuration for the following ones."""
    webhooks = current.webhooks
    if not webhooks.outcomes:
        return webhooks.outcome, current
    remaining = webhooks.model_copy(update={"outcomes": webhooks.outcomes[1:]})
    return webhooks.outcomes[0], current.model_copy(update={"webhooks": remaining})
