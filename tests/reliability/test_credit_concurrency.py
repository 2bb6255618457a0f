"""A hundred calls completing at the same moment: their final webhooks arrive together and
each deducts the call's price from one balance that covers exactly all of them.

The balance must end at exactly zero, never dip below it on the way, and equal the sum of
the ledger; each deduction must have seen the one before it (no lost update): the
balances after each deduction are every multiple of the price from zero up, once each.
"""

from __future__ import annotations

from tests.conftest import make_settings
from tests.helpers import make_agent
from tests.reliability.deliveries import (
    CALL_PRICE,
    STARTING_CREDITS,
    deliver_at_once,
    place_call,
    silent_stack,
    webhook_bodies,
)

CALLS = STARTING_CREDITS // CALL_PRICE  # 100


async def test_a_hundred_concurrent_deductions_end_exactly_at_zero_and_never_below(
    database_url: str,
) -> None:
    settings = make_settings(database_url)
    async with silent_stack(settings) as (stack, token):
        agent_id = await make_agent(stack, token)
        calls = [await place_call(stack, token, agent_id) for _ in range(CALLS)]
        finals = [webhook_bodies(call["execution_id"])["completed"] for call in calls]

        stored = await deliver_at_once(stack, finals)

        balance = (await stack.api.get("/credits", headers=stack.auth(token))).json()["balance"]
        assert balance == 0
        assert sum(entry.amount for entry in stored.ledger) == balance
        charges = stored.charges()
        assert sorted(entry.call_id for entry in charges) == [call["id"] for call in calls]
        assert {entry.amount for entry in charges} == {-CALL_PRICE}
        assert sorted(entry.balance_after for entry in charges) == list(
            range(0, STARTING_CREDITS, CALL_PRICE)
        )
        assert min(entry.balance_after for entry in stored.ledger) >= 0
        assert all(call.credits_charged == CALL_PRICE for call in stored.calls)
