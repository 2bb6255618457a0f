"""What a simulated call looks like, and which webhooks it produces.

Plain functions over plain data, no I/O: the server decides *when* to send, this module
decides *what*.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any, Final, Literal

Outcome = Literal["completed", "busy", "no-answer", "failed"]
StepVariant = Literal["normal", "malformed_json", "missing_id"]

_PROGRESS_RANK: Final[dict[str, int]] = {
    "queued": 0,
    "initiated": 1,
    "ringing": 2,
    "in-progress": 3,
    "call-disconnected": 4,
}
_TERMINAL_RANK: Final = 5

RECORDING_HOST: Final = "https://recordings.bolna-sim.invalid"


def status_rank(status: str) -> int:
    """Position of a status in Bolna's usual order; every terminal status ranks last."""
    return _PROGRESS_RANK.get(status, _TERMINAL_RANK)


def status_sequence(outcome: Outcome) -> list[str]:
    """The statuses Bolna reports, in their usual order, for a call ending in ``outcome``."""
    if outcome == "completed":
        return ["queued", "initiated", "ringing", "in-progress", "call-disconnected", "completed"]
    return ["queued", "initiated", "ringing", outcome]


@dataclass(frozen=True, slots=True)
class WebhookStep:
    """One webhook POST: the status it reports and how its body is (mis)formed."""

    status: str
    variant: StepVariant = "normal"


def plan_webhooks(
    outcome: Outcome,
    *,
    duplicate: bool = False,
    out_of_order: bool = False,
    malformed: bool = False,
) -> list[WebhookStep]:
    """The webhook deliveries for one call, faults included, in sending order."""
    statuses = status_sequence(outcome)
    if out_of_order:
        statuses = _scramble(statuses)
    steps = [WebhookStep(status) for status in statuses]
    if malformed:
        steps = [
            WebhookStep("queued", "malformed_json"),
            WebhookStep("queued", "missing_id"),
            *steps,
        ]
    if duplicate:
        steps = [copy for step in steps for copy in (step, step)]
    return steps


def _scramble(statuses: list[str]) -> list[str]:
    """Swap adjacent progress statuses (never the terminal one), then re-send a late ``ringing``."""
    scrambled = list(statuses)
    last = len(scrambled) - 1
    for first in (1, 3):
        if first + 1 < last:
            scrambled[first], scrambled[first + 1] = scrambled[first + 1], scrambled[first]
    return [*scrambled, "ringing"]


@dataclass(frozen=True, slots=True)
class _Hangup:
    by: str
    reason: str
    provider_code: int


_HANGUPS: Final[dict[Outcome, _Hangup]] = {
    "busy": _Hangup("Carrier", "Call recipient was busy", 486),
    "no-answer": _Hangup("Carrier", "Call recipient did not answer", 480),
    "failed": _Hangup("Carrier", "Call could not be connected", 503),
}
_COMPLETED_HANGUPS: Final = (
    _Hangup("Callee", "Call recipient hung up", 200),
    _Hangup("Agent", "Agent ended the call", 200),
)


@dataclass(frozen=True, slots=True)
class CallScenario:
    """Everything about a simulated call that is decided when it is placed."""

    execution_id: str
    agent_id: str
    to_number: str
    from_number: str
    user_data: dict[str, Any]
    created_at: str
    outcome: Outcome
    conversation_duration: float
    ring_duration: int
    total_cost: float
    transcript: str
    extracted_data: dict[str, Any]
    provider_call_id: str
    hangup: _Hangup
    error_message: str | None


def new_scenario(
    rng: random.Random,
    *,
    execution_id: str,
    agent_id: str,
    to_number: str,
    from_number: str,
    user_data: dict[str, Any],
    outcome: Outcome,
    created_at: str,
) -> CallScenario:
    """Draw the details of a call (duration, transcript, cost...) from ``rng``."""
    provider_call_id = "CA" + "".join(rng.choice("0123456789abcdef") for _ in range(32))
    if outcome != "completed":
        return CallScenario(
            execution_id=execution_id,
            agent_id=agent_id,
            to_number=to_number,
            from_number=from_number,
            user_data=user_data,
            created_at=created_at,
            outcome=outcome,
            conversation_duration=0.0,
            ring_duration={"busy": 1, "no-answer": 30, "failed": 0}[outcome],
            total_cost=0.0,
            transcript="",
            extracted_data={},
            provider_call_id=provider_call_id,
            hangup=_HANGUPS[outcome],
            error_message="Call failed: carrier rejected the call (SIP 503)"
            if outcome == "failed"
            else None,
        )
    duration = round(rng.uniform(20.0, 180.0), 1)
    confirmed = rng.random() < 0.7
    return CallScenario(
        execution_id=execution_id,
        agent_id=agent_id,
        to_number=to_number,
        from_number=from_number,
        user_data=user_data,
        created_at=created_at,
        outcome=outcome,
        conversation_duration=duration,
        ring_duration=rng.randint(3, 12),
        # Cents, as the OpenAPI describes total_cost: about 9 cents a minute.
        total_cost=round(duration / 60 * 9.0, 2),
        transcript=_transcript(_recipient_name(user_data), confirmed=confirmed),
        extracted_data={
            "confirmed": confirmed,
            "callback_requested": not confirmed,
            "sentiment": "positive" if confirmed else "neutral",
        },
        provider_call_id=provider_call_id,
        hangup=rng.choice(_COMPLETED_HANGUPS),
        error_message=None,
    )


def _recipient_name(user_data: dict[str, Any]) -> str:
    for key in ("name", "customer_name", "first_name"):
        value = user_data.get(key)
        if isinstance(value, str) and value:
            return value
    return "there"


def _transcript(name: str, *, confirmed: bool) -> str:
    if confirmed:
        answer = "user: Yes, tomorrow at ten works for me."
        closing = "assistant: Great, you are confirmed for tomorrow at 10 am. Have a nice day!"
    else:
        answer = "user: Not really, can someone call me back next week?"
        closing = "assistant: Of course, we will call you back next week. Goodbye!"
    return "\n".join(
        [
            f"assistant: Hello {name}, this is Maya calling from Acme Clinic. Is now a good time?",
            "user: Sure, go ahead.",
            "assistant: I am calling to confirm your appointment tomorrow at 10 am. "
            "Does that still work?",
            answer,
            closing,
            "user: Thanks, bye.",
        ]
    )


def execution_snapshot(scenario: CallScenario, status: str, *, updated_at: str) -> dict[str, Any]:
    """The execution object (webhook body and ``GET /executions``) as it is at ``status``.

    As on Bolna, duration, cost, transcript, recording and extraction stay empty until
    ``completed``; telephony hang-up details appear from ``call-disconnected`` on.
    """
    rank = status_rank(status)
    dialled = rank >= status_rank("initiated")
    hung_up = rank >= status_rank("call-disconnected")
    done = status == "completed"
    cost = scenario.total_cost if done else 0.0
    return {
        "id": scenario.execution_id,
        "agent_id": scenario.agent_id,
        "batch_id": None,
        "status": status,
        "error_message": scenario.error_message if rank == _TERMINAL_RANK else None,
        "answered_by_voice_mail": False,
        "conversation_duration": scenario.conversation_duration if done else 0.0,
        "total_cost": cost,
        "transcript": scenario.transcript if done else None,
        "extracted_data": dict(scenario.extracted_data) if done else None,
        "context_details": {
            "recipient_data": dict(scenario.user_data),
            "recipient_phone_number": scenario.to_number,
        },
        "cost_breakdown": _cost_breakdown(cost),
        "usage_breakdown": _usage_breakdown(scenario) if done else None,
        "telephony_data": {
            # A string, as in Bolna's schema.
            "duration": str(math.ceil(scenario.conversation_duration)) if hung_up else None,
            "to_number": scenario.to_number,
            "from_number": scenario.from_number,
            "recording_url": _recording_url(scenario) if done else None,
            "hosted_telephony": True,
            "provider_call_id": scenario.provider_call_id if dialled else None,
            "call_type": "outbound",
            "provider": "twilio",
            "hangup_by": scenario.hangup.by if hung_up else None,
            "hangup_reason": scenario.hangup.reason if hung_up else None,
            "hangup_provider_code": scenario.hangup.provider_code if hung_up else None,
            "ring_duration": scenario.ring_duration if hung_up else None,
            "post_dial_delay": 1 if dialled else None,
        },
        "transfer_call_data": None,
        "batch_run_details": None,
        "created_at": scenario.created_at,
        "updated_at": updated_at,
    }


def _cost_breakdown(total: float) -> dict[str, float]:
    shares = {"llm": 0.25, "network": 0.2, "platform": 0.15, "synthesizer": 0.25}
    breakdown = {name: round(total * share, 4) for name, share in shares.items()}
    breakdown["transcriber"] = round(total - sum(breakdown.values()), 4)
    return breakdown


def _usage_breakdown(scenario: CallScenario) -> dict[str, Any]:
    spoken = sum(
        len(line) - len("assistant: ")
        for line in scenario.transcript.splitlines()
        if line.startswith("assistant: ")
    )
    return {
        "synthesizer_characters": spoken,
        "transcriber_duration": scenario.conversation_duration,
        "llm_tokens": int(scenario.conversation_duration * 20),
        "synthesizer_model": "eleven_turbo_v2_5",
        "transcriber_model": "nova-2",
        "llm_model": {"gpt-4o-mini": int(scenario.conversation_duration * 20)},
    }


def _recording_url(scenario: CallScenario) -> str:
    # Presigned-looking, like Bolna's, on a host that can never resolve.
    return (
        f"{RECORDING_HOST}/{scenario.execution_id}.mp3"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600&X-Amz-Signature=simulated"
    )


def render_webhook(scenario: CallScenario, step: WebhookStep, *, updated_at: str) -> bytes:
    """The raw body of one webhook POST."""
    body = execution_snapshot(scenario, step.status, updated_at=updated_at)
    if step.variant == "missing_id":
        del body["id"]
    text = json.dumps(body)
    if step.variant == "malformed_json":
        # Any strict prefix of a JSON object is invalid JSON: the closing brace is missing.
        text = text[: len(text) // 2]
    return text.encode()
