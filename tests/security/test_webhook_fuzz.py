"""Hypothesis against the webhook payload parser and the webhook endpoint.

The parser (`app.webhooks.payload`) may refuse a body only with `PayloadError` and a
sentence; the endpoint answers 200/202 for what it applied or stored and 400 with our
error body for what it cannot use, never 5xx, and never fails while processing (a
`failed` delivery means an exception inside processing). Deterministic: derandomized.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.webhooks.payload import PayloadError, loads, parse
from app.webhooks.service import WebhookWithoutExecutionId
from telemetry._backends import ErrorReport
from telemetry.testing import observe_exports
from tests.security.conftest import FUZZ, SecurityStack, assert_clear_error, reopen

pytestmark = pytest.mark.asyncio(loop_scope="module")

STATUSES = [
    "scheduled", "queued", "rescheduled", "initiated", "ringing", "in-progress",
    "call-disconnected", "completed", "busy", "no-answer", "balance-low", "canceled",
    "failed", "stopped", "error",
]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities included: json.dumps writes them, json.loads reads them
    | st.text(max_size=80)
    | st.sampled_from(["", " ", "nan", "inf", "-1", "1e400", "12.5", "\uff10\uff11\uff12"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


def bolna_shaped(execution_ids: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Execution objects whose known fields hold anything, often something plausible."""
    ids = st.sampled_from(execution_ids) | st.integers() | json_values
    numbers = st.floats() | st.integers() | st.text(max_size=12) | json_values
    telephony = st.fixed_dictionaries(
        {},
        optional={
            "duration": numbers,
            "recording_url": json_values,
            "hangup_reason": json_values,
            "to_number": st.just("+919876543210"),
        },
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "id": ids,
            "execution_id": ids,
            "status": st.sampled_from(STATUSES) | json_values,
            "conversation_duration": numbers,
            "conversation_time": numbers,
            "transcript": json_values,
            "error_message": json_values,
            "recording_url": json_values,
            "telephony_data": telephony | json_values,
            "extracted_data": json_values,
        },
    )


def json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


def is_sentence(text: str) -> bool:
    return text.endswith(".") and len(text.split()) >= 3


# --- the parser, pure ----------------------------------------------------------------


@FUZZ
@given(raw=st.binary(max_size=300) | json_values.map(json_bytes))
async def test_loads_returns_an_object_or_refuses_with_a_sentence(raw: bytes) -> None:
    try:
        body = loads(raw)
    except PayloadError as exc:
        assert is_sentence(str(exc)), str(exc)
    else:
        assert isinstance(body, dict)


@FUZZ
@given(body=bolna_shaped(["6f1c2c1e-1111-4111-8111-111111111111"]))
async def test_parse_returns_an_event_or_refuses_with_a_sentence(body: dict[str, Any]) -> None:
    try:
        event = parse(loads(json_bytes(body)))
    except PayloadError as exc:
        assert is_sentence(str(exc)), str(exc)
        return
    assert event.execution_id and event.execution_id == event.execution_id.strip()
    assert event.status and event.status == event.status.lower()
    duration = event.duration_seconds
    assert duration is None or not duration < 0


TOO_LONG_A_NUMBER = b'{"id": "x", "status": "ringing", "n": ' + b"9" * 5000 + b"}"
TOO_DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("raw", [TOO_LONG_A_NUMBER, TOO_DEEP], ids=["5000 digits", "too deep"])
async def test_what_json_cannot_read_is_a_payload_error(raw: bytes) -> None:
    with pytest.raises(PayloadError):
        loads(raw)


@pytest.mark.parametrize("duration", ["NaN", "Infinity", "1e400", '"inf"', '"nan"', "9" * 400])
async def test_a_non_finite_duration_is_not_kept(duration: str) -> None:
    raw = f'{{"id": "x", "status": "completed", "conversation_duration": {duration}}}'.encode()
    event = parse(loads(raw))
    assert event.duration_seconds is None or math.isfinite(event.duration_seconds)


@pytest.mark.parametrize("execution_id", ["x" * 65, {"nested": "object"}, ["a", "list"]])
async def test_an_execution_id_that_fits_no_column_is_refused(execution_id: Any) -> None:
    body = {"id": execution_id, "status": "ringing"}
    with pytest.raises(PayloadError):
        parse(loads(json.dumps(body).encode()))


async def test_a_hangup_reason_longer_than_its_column_is_cut() -> None:
    body = {"id": "x", "status": "completed", "telephony_data": {"hangup_reason": "y" * 500}}
    event = parse(loads(json.dumps(body).encode()))
    assert event.hangup_reason is not None and len(event.hangup_reason) <= 200


# --- the endpoint ----------------------------------------------------------------------


def unexpected_reports(seen: list[tuple[str, object]]) -> list[str]:
    """Error reports other than the deliberate one for a body naming no execution."""
    return [
        payload.message
        for kind, payload in seen
        if kind == "error_report"
        and isinstance(payload, ErrorReport)
        and not isinstance(payload.exception, WebhookWithoutExecutionId)
    ]


@settings(FUZZ, max_examples=150)
@given(data=st.data())
async def test_no_webhook_body_is_a_server_error_or_a_failed_delivery(
    shared: SecurityStack, data: st.DataObject
) -> None:
    stack = shared.stack
    owned = shared.owned["alice"]
    raw = data.draw(
        bolna_shaped([owned.execution_id]).map(json_bytes)
        | json_values.map(json_bytes)
        | st.binary(max_size=200),
        label="body",
    )
    if data.draw(st.booleans(), label="reopen the call first"):
        await reopen(shared.stack, owned.call_id)
    with observe_exports() as seen:
        response = await stack.api.post(
            "/webhooks/bolna",
            params={"token": stack.settings.bolna_webhook_token},
            content=raw,
            headers={"content-type": "application/json"},
        )
    assert response.status_code in (200, 202, 400), response.text
    if response.status_code == 400:
        assert_clear_error(response)
    else:
        assert response.json()["state"] in ("processed", "duplicate", "unmatched"), response.text
    assert unexpected_reports(seen) == []


@pytest.mark.parametrize("raw", [TOO_LONG_A_NUMBER, TOO_DEEP], ids=["5000 digits", "too deep"])
async def test_a_body_json_cannot_read_is_400(shared: SecurityStack, raw: bytes) -> None:
    stack = shared.stack
    response = await stack.api.post(
        "/webhooks/bolna", params={"token": stack.settings.bolna_webhook_token}, content=raw
    )
    assert response.status_code == 400
    assert_clear_error(response)


async def test_a_completed_webhook_with_an_infinite_duration_is_applied(
    shared: SecurityStack,
) -> None:
    stack = shared.stack
    owned = shared.owned["bob"]
    await reopen(shared.stack, owned.call_id)
    raw = f'{{"id": "{owned.execution_id}", "status": "completed", "conversation_duration": 1e400}}'
    with observe_exports() as seen:
        response = await stack.api.post(
            "/webhooks/bolna",
            params={"token": stack.settings.bolna_webhook_token},
            content=raw.encode(),
        )
    assert response.status_code in (200, 400), response.text
    assert unexpected_reports(seen) == []
