"""What the benchmarks send, identical for every configuration: pure data, no I/O.

Webhooks follow realistic Bolna status sequences, six deliveries per call: a completed
call goes queued → initiated → ringing → in-progress → call-disconnected → completed
(the last one charges credits); a busy / no-answer / failed call goes queued → initiated
→ ringing → outcome, then Bolna repeats the final status twice (duplicates still store
the delivery and read the call). Request ``k`` of a pool is delivery ``k % 6`` of call
``k // 6``, so every configuration sees the same sequence.

    body = webhook_body("inproc", 17)          # bytes, the simulator's own rendering
    execution_id("inproc", 2)                  # the seeded call it belongs to
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from typing import Final

from app.simulator._scenario import (
    CallScenario,
    Outcome,
    WebhookStep,
    new_scenario,
    render_webhook,
    status_sequence,
)

DELIVERIES_PER_CALL: Final = 6
WEBHOOK_TOKEN: Final = "bench-webhook-token"
BOLNA_API_KEY: Final = "bench-bolna-api-key-0123456789"
JWT_SECRET: Final = "bench-jwt-secret-with-more-than-32-characters"
AGENT_UUID: Final = "6f1c2c1e-1111-4111-8111-111111111111"
CONTACT_PHONE: Final = "+919876543210"
# A valid W3C traceparent stored on the seeded calls, so webhook processing links to it.
SEEDED_TRACEPARENT: Final = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
_CREATED_AT: Final = "2026-05-01T10:00:00+00:00"


def execution_id(pool: str, call_index: int) -> str:
    return f"bench-{pool}-{call_index:07d}"


def outcome_of(call_index: int) -> Outcome:
    """70% completed, 10% each busy, no-answer, failed."""
    unanswered: dict[int, Outcome] = {7: "busy", 8: "no-answer", 9: "failed"}
    return unanswered.get(call_index % 10, "completed")


def statuses_of(call_index: int) -> list[str]:
    statuses = status_sequence(outcome_of(call_index))
    while len(statuses) < DELIVERIES_PER_CALL:
        statuses.append(statuses[-1])  # Bolna repeats final statuses
    return statuses


@lru_cache(maxsize=4096)
def _scenario(pool: str, call_index: int) -> CallScenario:
    return new_scenario(
        random.Random(call_index),
        execution_id=execution_id(pool, call_index),
        agent_id=AGENT_UUID,
        to_number=CONTACT_PHONE,
        from_number="+15550100000",
        user_data={"name": "Asha", "call_id": str(call_index)},
        outcome=outcome_of(call_index),
        created_at=_CREATED_AT,
    )


def webhook_body(pool: str, request_index: int) -> bytes:
    call_index, step = divmod(request_index, DELIVERIES_PER_CALL)
    status = statuses_of(call_index)[step]
    return render_webhook(_scenario(pool, call_index), WebhookStep(status), updated_at=_CREATED_AT)


ERROR_EVERY: Final = 20


def mixed_body(pool: str, request_index: int) -> bytes:
    """As ``webhook_body``, but one request in ``ERROR_EVERY`` names no execution id: a 400
    that the app reports as an error event (``WebhookWithoutExecutionId``)."""
    if request_index % ERROR_EVERY == ERROR_EVERY - 1:
        return json.dumps({"status": "completed", "agent_id": AGENT_UUID}).encode()
    return webhook_body(pool, request_index)


def calls_needed(requests: int) -> int:
    return -(-requests // DELIVERIES_PER_CALL)


def webhook_path() -> str:
    return f"/webhooks/bolna?token={WEBHOOK_TOKEN}"
