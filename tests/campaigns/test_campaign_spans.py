"""Campaign spans, from a real campaign run: create, claim, dispatch per item, scheduler tick."""

from __future__ import annotations

from opentelemetry.trace import StatusCode

from app.config import Settings
from telemetry import attributes as attrs
from telemetry.testing import capture_spans, settings_for_tests
from tests.campaigns.conftest import (
    action,
    campaign_items,
    campaign_stack,
    create_campaign,
    inline_contacts,
    wait_campaign,
)
from tests.helpers import make_agent, wait_sim_idle

PHONE_PREFIX = "+9177700"


async def test_a_campaign_run_is_traced_per_item_without_phone_numbers(
    csettings: Settings,
) -> None:
    with capture_spans(settings_for_tests()) as capture:
        async with campaign_stack(csettings) as stack:
            token = stack.tokens["alice"]
            agent_id = await make_agent(stack, token)
            await stack.faults(call={"mode": "503", "count": 3})  # the first dial fails
            created = await create_campaign(
                stack,
                token,
                agent_id=agent_id,
                contacts=inline_contacts(2, prefix=PHONE_PREFIX),
                max_concurrency=1,
                retry={"max_attempts": 2, "backoff_seconds": 0},
            )
            campaign_id = created["id"]
            await action(stack, token, campaign_id, "start")
            await wait_campaign(stack, token, campaign_id, "completed")
            await wait_sim_idle(stack)
            items = await campaign_items(stack, token, campaign_id)
        spans = capture.spans()

    [create] = [s for s in spans if s.name == "campaign.create"]
    assert create.attributes is not None
    assert create.attributes[attrs.CAMPAIGN_ID] == campaign_id

    dispatches = [s for s in spans if s.name == "campaign.dispatch"]
    assert len(dispatches) == 3  # two items, one of them twice
    by_item = sorted(
        (s.attributes[attrs.QUEUE_ITEM_ID], s.attributes[attrs.QUEUE_ITEM_ATTEMPT])
        for s in dispatches
        if s.attributes is not None
    )
    first, second = items[0]["id"], items[1]["id"]
    assert by_item == [(first, 1), (first, 2), (second, 1)]
    failed = [s for s in dispatches if s.status.status_code == StatusCode.ERROR]
    assert len(failed) == 1 and failed[0].attributes is not None
    assert failed[0].attributes[attrs.QUEUE_ITEM_ATTEMPT] == 1
    claims = {s.context.span_id for s in spans if s.name == "campaign.claim"}
    for dispatch in dispatches:
        assert dispatch.attributes is not None
        assert dispatch.attributes[attrs.CAMPAIGN_ID] == campaign_id
        assert dispatch.attributes[attrs.CALL_SOURCE] == "campaign"
        assert dispatch.parent is None  # its own trace ...
        [link] = dispatch.links  # ... linked to the claim that took the item
        assert link.context.span_id in claims
        [initiate] = [
            s
            for s in spans
            if s.name == "call.initiate"
            and s.parent is not None
            and s.parent.span_id == dispatch.context.span_id
        ]
        assert initiate.attributes is not None
        assert initiate.attributes[attrs.CALL_SOURCE] == "campaign"

    assert any(s.name == "campaign.scheduler_tick" for s in spans)
    for span in spans:
        for value in [*(span.attributes or {}).values(), span.name]:
            assert PHONE_PREFIX[1:] not in str(value), f"phone number in {span.name}"
