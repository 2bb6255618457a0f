"""The call-status state machine (pure, no I/O).

Deliveries repeat and arrive out of order, so a delivery is applied only when it moves
the call forward: a late `ringing` never overwrites `completed`, and the same status
twice is a duplicate. `call-disconnected` is not final: `completed` follows once the
recording and transcript are ready, and only `completed` charges credits.
"""

from __future__ import annotations

from dataclasses import dataclass

RANK: dict[str, int] = {
    "scheduled": 0,
    "queued": 1,
    "rescheduled": 1,
    "initiated": 2,
    "ringing": 3,
    "in-progress": 4,
    "call-disconnected": 5,
    "completed": 9,
    "busy": 9,
    "no-answer": 9,
    "balance-low": 9,
    "canceled": 9,
    "failed": 9,
    "stopped": 9,
    "error": 9,
}
FINAL = frozenset(status for status, rank in RANK.items() if rank == 9)
# Outcomes a campaign may retry.
UNANSWERED = frozenset({"busy", "no-answer", "failed", "error"})


@dataclass(frozen=True)
class Transition:
    apply: bool
    status: str
    final: bool
    charge: bool
    reason: str  # advanced | duplicate | stale | unknown_status | after_final


def next_state(current: str, incoming: str) -> Transition:
    if incoming not in RANK:
        return Transition(False, current, current in FINAL, False, "unknown_status")
    if current in FINAL:
        reason = "duplicate" if incoming == current else "after_final"
        return Transition(False, current, True, False, reason)
    current_rank = RANK.get(current, -1)
    incoming_rank = RANK[incoming]
    if incoming_rank < current_rank:
        return Transition(False, current, False, False, "stale")
    if incoming_rank == current_rank:
        return Transition(False, current, False, False, "duplicate")
    return Transition(True, incoming, incoming in FINAL, incoming == "completed", "advanced")
