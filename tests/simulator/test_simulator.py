"""The Bolna simulator, driven through its HTTP API with webhooks captured in-process."""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from app.simulator import FaultConfig, FaultsUpdate, create_simulator_app, simulator_state
from app.simulator._faults import consume_call_fault, merge_faults
from app.simulator._scenario import plan_webhooks

API_KEY = "test-key"
AGENT_ID = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
TO = "+919876543210"
COMPLETED_SEQUENCE = [
    "queued",
    "initiated",
    "ringing",
    "in-progress",
    "call-disconnected",
    "completed",
]


class WebhookSink:
    """Capturing webhook receiver: records every POST, answers with scripted status codes."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.answers: list[int] = []  # status codes to answer first, then 200
        self.refuse_connections = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.refuse_connections:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(self.answers.pop(0) if self.answers else 200)

    def bodies(self) -> list[Any]:
        """Parsed bodies; the raw bytes for a body that is not JSON."""
        parsed: list[Any] = []
        for request in self.requests:
            try:
                parsed.append(json.loads(request.content))
            except ValueError:
                parsed.append(request.content)
        return parsed

    def statuses(self, execution_id: str) -> list[str]:
        return [
            body["status"]
            for body in self.bodies()
            if isinstance(body, dict) and body.get("id") == execution_id
        ]

    def last_body(self, execution_id: str, status: str) -> dict[str, Any]:
        matching = [
            body
            for body in self.bodies()
            if isinstance(body, dict)
            and body.get("id") == execution_id
            and body.get("status") == status
        ]
        assert matching, f"no {status} webhook for {execution_id}"
        return matching[-1]


SimFactory = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
def sink() -> WebhookSink:
    return WebhookSink()


@pytest.fixture
async def make_sim(sink: WebhookSink) -> AsyncIterator[SimFactory]:
    """Build simulators whose webhooks go to ``sink``; all closed at teardown."""
    opened: list[tuple[FastAPI, httpx.AsyncClient, httpx.AsyncClient]] = []

    async def factory(**options: Any) -> httpx.AsyncClient:
        webhook_client = httpx.AsyncClient(transport=httpx.MockTransport(sink.handle))
        settings: dict[str, Any] = {
            "api_key": API_KEY,
            "step_delay_ms": 0,
            "webhook_backoff_ms": 0,
            "http_client": webhook_client,
            "seed": 7,
        }
        settings.update(options)
        app = create_simulator_app(**settings)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://bolna.test",
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        opened.append((app, client, webhook_client))
        return client

    yield factory
    for app, client, webhook_client in opened:
        await simulator_state(app).aclose()
        await client.aclose()
        await webhook_client.aclose()


@pytest.fixture
async def sim(make_sim: SimFactory) -> httpx.AsyncClient:
    return await make_sim(public_base_url="http://api.test:8000", webhook_token="tok")


async def place_call(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    payload = {"agent_id": AGENT_ID, "recipient_phone_number": TO, **body}
    return await client.post("/call", json=payload)


async def wait_finished(
    client: httpx.AsyncClient, count: int = 1, within_s: float = 3.0
) -> list[dict[str, Any]]:
    """Poll ``/_sim/calls`` until ``count`` calls finished playing their webhooks."""
    deadline = time.monotonic() + within_s
    while True:
        calls: list[dict[str, Any]] = (await client.get("/_sim/calls")).json()
        if len(calls) >= count and all(call["finished_at"] for call in calls):
            return calls
        if time.monotonic() > deadline:
            raise AssertionError(f"calls not finished after {within_s}s: {calls}")
        await asyncio.sleep(0.005)


async def set_faults(client: httpx.AsyncClient, **faults: Any) -> dict[str, Any]:
    response = await client.post("/_sim/faults", json=faults)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


# Placing a call and the webhooks that follow


async def test_completed_call_plays_every_status_in_order(
    sim: httpx.AsyncClient, sink: WebhookSink
) -> None:
    response = await sim.post(
        "/call",
        json={
            "agent_id": AGENT_ID,
            "recipient_phone_number": TO,
            "from_phone_number": "+14155550100",
            "user_data": {"name": "Asha", "slot": "10am"},
        },
        headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )

    assert response.status_code == 200
    body = response.json()
    assert body["message"] == "done"
    assert body["status"] == "queued"
    execution_id = body["execution_id"]
    assert uuid.UUID(execution_id).version == 4

    [call] = await wait_finished(sim)
    assert sink.statuses(execution_id) == COMPLETED_SEQUENCE
    assert {str(request.url) for request in sink.requests} == {
        "http://api.test:8000/webhooks/bolna?token=tok"
    }
    assert call["execution_id"] == execution_id
    assert call["agent_id"] == AGENT_ID
    assert call["recipient_phone_number"] == TO
    assert call["status"] == "completed"
    assert call["headers_traceparent"].startswith("00-0af7651916cd43dd")
    assert isinstance(call["received_monotonic"], float)
    datetime.fromisoformat(call["received_at"])

    final = sink.last_body(execution_id, "completed")
    assert final["id"] == execution_id
    assert final["agent_id"] == AGENT_ID
    assert 20 <= final["conversation_duration"] <= 180
    assert final["total_cost"] > 0
    lines = final["transcript"].splitlines()
    assert len(lines) >= 4
    assert all(line.startswith(("assistant: ", "user: ")) for line in lines)
    assert "Asha" in final["transcript"]
    assert final["extracted_data"]
    assert final["context_details"]["recipient_data"] == {"name": "Asha", "slot": "10am"}
    telephony = final["telephony_data"]
    assert telephony["duration"] == str(math.ceil(final["conversation_duration"]))
    assert telephony["to_number"] == TO
    assert telephony["from_number"] == "+14155550100"
    assert telephony["recording_url"].startswith("https://")
    assert telephony["provider"] == "twilio"
    assert telephony["call_type"] == "outbound"
    assert telephony["hangup_by"]
    assert telephony["hangup_reason"]
    created = datetime.fromisoformat(final["created_at"])
    assert created.utcoffset() is not None
    assert datetime.fromisoformat(final["updated_at"]) >= created


async def test_results_stay_empty_until_completed(
    sim: httpx.AsyncClient, sink: WebhookSink
) -> None:
    execution_id = (await place_call(sim)).json()["execution_id"]
    await wait_finished(sim)

    disconnected = sink.last_body(execution_id, "call-disconnected")
    assert disconnected["conversation_duration"] == 0
    assert disconnected["transcript"] is None
    assert disconnected["telephony_data"]["recording_url"] is None
    queued = sink.last_body(execution_id, "queued")
    assert queued["telephony_data"]["duration"] is None


@pytest.mark.parametrize("outcome", ["busy", "no-answer", "failed"])
async def test_unanswered_outcomes(sim: httpx.AsyncClient, sink: WebhookSink, outcome: str) -> None:
    await set_faults(sim, webhooks={"outcome": outcome})

    execution_id = (await place_call(sim)).json()["execution_id"]

    [call] = await wait_finished(sim)
    assert call["status"] == outcome
    assert sink.statuses(execution_id) == ["queued", "initiated", "ringing", outcome]
    final = sink.last_body(execution_id, outcome)
    assert final["conversation_duration"] == 0
    assert final["telephony_data"]["duration"] == "0"
    assert final["telephony_data"]["recording_url"] is None
    assert final["transcript"] is None
    if outcome == "failed":
        assert final["error_message"]
    else:
        assert final["error_message"] is None


async def test_outcomes_list_is_consumed_one_per_call(
    sim: httpx.AsyncClient, sink: WebhookSink
) -> None:
    await set_faults(sim, webhooks={"outcomes": ["busy", "no-answer"]})

    ids = [(await place_call(sim)).json()["execution_id"] for _ in range(3)]

    calls = await wait_finished(sim, count=3)
    assert [call["status"] for call in calls] == ["busy", "no-answer", "completed"]
    assert [sink.statuses(execution_id)[-1] for execution_id in ids] == [
        "busy",
        "no-answer",
        "completed",
    ]
    assert (await sim.get("/_sim/faults")).json()["webhooks"]["outcomes"] == []


async def test_no_token_query_when_token_is_empty(make_sim: SimFactory, sink: WebhookSink) -> None:
    sim = await make_sim(public_base_url="http://127.0.0.1:9000/", webhook_token="")

    await place_call(sim)

    await wait_finished(sim)
    assert {str(request.url) for request in sink.requests} == {
        "http://127.0.0.1:9000/webhooks/bolna"
    }


async def test_get_execution_follows_the_call(sim: httpx.AsyncClient) -> None:
    execution_id = (await place_call(sim)).json()["execution_id"]
    await wait_finished(sim)

    response = await sim.get(f"/executions/{execution_id}")

    assert response.status_code == 200
    execution = response.json()
    assert execution["id"] == execution_id
    assert execution["status"] == "completed"
    assert execution["transcript"]
    missing = await sim.get(f"/executions/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.json()["error"] == 404


async def test_step_delay_spaces_the_webhooks(make_sim: SimFactory, sink: WebhookSink) -> None:
    sim = await make_sim(step_delay_ms=30)
    started = time.monotonic()

    await place_call(sim)

    await wait_finished(sim)
    # Six webhooks, each preceded by the delay.
    assert time.monotonic() - started >= 6 * 0.03


# Authentication and validation


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Token {API_KEY}"])
async def test_wrong_api_key_is_denied(
    sim: httpx.AsyncClient, sink: WebhookSink, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    sim.headers.pop("Authorization")

    response = await sim.post(
        "/call", json={"agent_id": AGENT_ID, "recipient_phone_number": TO}, headers=headers
    )
    execution = await sim.get(f"/executions/{uuid.uuid4()}", headers=headers)

    assert response.status_code == 401
    assert response.json() == {"error": 401, "message": "Access denied"}
    assert execution.status_code == 401
    assert (await sim.get("/_sim/calls")).json() == []
    assert sink.requests == []


async def test_any_key_accepted_without_api_key(make_sim: SimFactory) -> None:
    sim = await make_sim(api_key="")
    sim.headers.pop("Authorization")

    assert (await place_call(sim)).status_code == 200


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"recipient_phone_number": TO}, "agent_id"),
        ({"agent_id": AGENT_ID}, "recipient_phone_number"),
        ({"agent_id": AGENT_ID, "recipient_phone_number": "9876543210"}, "E.164"),
        ({"agent_id": AGENT_ID, "recipient_phone_number": "+0123456789"}, "E.164"),
        ({"agent_id": AGENT_ID, "recipient_phone_number": "+91 98765 43210"}, "E.164"),
        ({"agent_id": AGENT_ID, "recipient_phone_number": TO, "from_phone_number": "1"}, "E.164"),
        ({"agent_id": AGENT_ID, "recipient_phone_number": TO, "user_data": [1]}, "user_data"),
        ([1, 2], "object"),
    ],
)
async def test_invalid_call_is_refused_with_422(
    sim: httpx.AsyncClient, sink: WebhookSink, payload: Any, fragment: str
) -> None:
    response = await sim.post("/call", json=payload)

    assert response.status_code == 422
    assert response.json()["error"] == 422
    assert fragment in response.json()["message"]
    assert (await sim.get("/_sim/calls")).json() == []
    assert sink.requests == []


async def test_body_that_is_not_json_is_refused_with_400(sim: httpx.AsyncClient) -> None:
    response = await sim.post(
        "/call", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"] == 400


# Call faults


@pytest.mark.parametrize(
    ("mode", "status_code"), [("500", 500), ("503", 503), ("429", 429), ("401", 401)]
)
async def test_call_fault_answers_once_then_reverts(
    sim: httpx.AsyncClient, sink: WebhookSink, mode: str, status_code: int
) -> None:
    await set_faults(sim, call={"mode": mode, "count": 1})

    faulted = await place_call(sim)
    recovered = await place_call(sim)

    assert faulted.status_code == status_code
    assert faulted.json()["error"] == status_code
    assert faulted.json()["message"]
    assert "retry-after" not in faulted.headers
    assert recovered.status_code == 200
    calls = await wait_finished(sim)
    assert [call["execution_id"] for call in calls] == [recovered.json()["execution_id"]]
    assert {body["id"] for body in sink.bodies()} == {recovered.json()["execution_id"]}
    attempts = (await sim.get("/_sim/requests")).json()
    assert [(a["fault_mode"], a["status_code"]) for a in attempts] == [
        (mode, status_code),
        ("ok", 200),
    ]
    assert (await sim.get("/_sim/faults")).json()["call"]["mode"] == "ok"


async def test_call_fault_count_counts_down(sim: httpx.AsyncClient) -> None:
    await set_faults(sim, call={"mode": 500, "count": 2})

    first = await place_call(sim)
    after_first = (await sim.get("/_sim/faults")).json()["call"]
    second = await place_call(sim)
    third = await place_call(sim)

    assert [first.status_code, second.status_code, third.status_code] == [500, 500, 200]
    assert after_first == {"mode": "500", "count": 1, "retry_after": None, "timeout_s": 30.0}


async def test_call_fault_without_count_lasts_until_changed(sim: httpx.AsyncClient) -> None:
    await set_faults(sim, call={"mode": "503"})

    codes = [(await place_call(sim)).status_code for _ in range(3)]
    await set_faults(sim, call={"mode": "ok"})

    assert codes == [503, 503, 503]
    assert (await place_call(sim)).status_code == 200


async def test_rate_limit_sends_retry_after_when_configured(sim: httpx.AsyncClient) -> None:
    await set_faults(sim, call={"mode": "429", "count": 1, "retry_after": 2})

    response = await place_call(sim)

    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"


async def test_timeout_holds_the_request_until_the_client_gives_up(
    sim: httpx.AsyncClient,
) -> None:
    await set_faults(sim, call={"mode": "timeout", "count": 1, "timeout_s": 10})

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await place_call(sim)
    recovered = await place_call(sim)

    assert recovered.status_code == 200
    assert len(await wait_finished(sim)) == 1
    attempts = (await sim.get("/_sim/requests")).json()
    assert [(a["fault_mode"], a["status_code"]) for a in attempts] == [
        ("timeout", None),
        ("ok", 200),
    ]


async def test_timeout_answers_504_if_the_client_waits(sim: httpx.AsyncClient) -> None:
    await set_faults(sim, call={"mode": "timeout", "timeout_s": 0.05})

    response = await place_call(sim)

    assert response.status_code == 504
    assert (await sim.get("/_sim/calls")).json() == []


async def test_latency_delays_every_answer(sim: httpx.AsyncClient) -> None:
    await set_faults(sim, latency_ms=120)

    started = time.monotonic()
    ok = await place_call(sim)
    middle = time.monotonic()
    await set_faults(sim, call={"mode": "500", "count": 1})
    await place_call(sim)
    ended = time.monotonic()

    assert ok.status_code == 200
    assert middle - started >= 0.12
    assert ended - middle >= 0.12


async def test_unknown_fault_mode_is_rejected(sim: httpx.AsyncClient) -> None:
    response = await sim.post("/_sim/faults", json={"call": {"mode": "418"}})

    assert response.status_code == 422
    assert (await sim.get("/_sim/faults")).json()["call"]["mode"] == "ok"


# Webhook faults


async def test_duplicate_sends_every_webhook_twice(
    sim: httpx.AsyncClient, sink: WebhookSink
) -> None:
    await set_faults(sim, webhooks={"duplicate": True})

    execution_id = (await place_call(sim)).json()["execution_id"]

    [call] = await wait_finished(sim)
    assert sink.statuses(execution_id) == [s for s in COMPLETED_SEQUENCE for _ in range(2)]
    assert call["status"] == "completed"


async def test_out_of_order_swaps_statuses_and_sends_a_late_ringing(
    sim: httpx.AsyncClient, sink: WebhookSink
) -> None:
    await set_faults(sim, webhooks={"out_of_order": True})

    execution_id = (await place_call(sim)).json()["execution_id"]

    [call] = await wait_finished(sim)
    delivered = sink.statuses(execution_id)
    assert delivered != COMPLETED_SEQUENCE
    assert sorted(delivered) == sorted([*COMPLETED_SEQUENCE, "ringing"])
    assert delivered.index("completed") < len(delivered) - 1
    assert delivered[-1] == "ringing"
    late_ringing = sink.bodies()[-1]
    assert late_ringing["transcript"] is None
    # The simulator's own view never moves backwards.
    assert call["status"] == "completed"
    execution = (await sim.get(f"/executions/{execution_id}")).json()
    assert execution["status"] == "completed"


async def test_malformed_sends_bad_bodies_then_the_normal_sequence(
    sim: httpx.AsyncClient, sink: WebhookSink
) -> None:
    await set_faults(sim, webhooks={"malformed": True})

    execution_id = (await place_call(sim)).json()["execution_id"]

    [call] = await wait_finished(sim)
    first, second, *rest = sink.bodies()
    assert isinstance(first, bytes)
    with pytest.raises(ValueError):
        json.loads(first)
    assert isinstance(second, dict)
    assert "id" not in second
    assert "execution_id" not in second
    assert [body["status"] for body in rest] == COMPLETED_SEQUENCE
    assert sink.statuses(execution_id) == COMPLETED_SEQUENCE
    assert call["status"] == "completed"


async def test_webhook_faults_merge_field_by_field(sim: httpx.AsyncClient) -> None:
    await set_faults(sim, webhooks={"outcome": "busy", "duplicate": True}, step_delay_ms=5)

    faults = await set_faults(sim, webhooks={"malformed": True})

    assert faults["webhooks"] == {
        "outcome": "busy",
        "outcomes": [],
        "duplicate": True,
        "out_of_order": False,
        "malformed": True,
    }
    assert faults["step_delay_ms"] == 5


# Delivery failures


async def test_webhook_retried_after_non_2xx(sim: httpx.AsyncClient, sink: WebhookSink) -> None:
    sink.answers = [500, 503]

    execution_id = (await place_call(sim)).json()["execution_id"]

    [call] = await wait_finished(sim)
    assert sink.statuses(execution_id) == ["queued", "queued", "queued", *COMPLETED_SEQUENCE[1:]]
    assert call["webhooks_delivered"] == 6
    assert call["webhooks_failed"] == 0


async def test_unreachable_receiver_is_given_up_without_crashing(
    make_sim: SimFactory, sink: WebhookSink
) -> None:
    sim = await make_sim(webhook_max_attempts=3)
    sink.refuse_connections = True

    await set_faults(sim, webhooks={"outcome": "busy"})
    await place_call(sim)

    [call] = await wait_finished(sim)
    assert len(sink.requests) == 4 * 3
    assert call["webhooks_failed"] == 4
    assert call["status"] == "busy"
    assert (await place_call(sim)).status_code == 200


async def test_in_process_receiver_that_raises_does_not_stop_the_call(
    make_sim: SimFactory,
) -> None:
    received: list[dict[str, Any]] = []
    tokens: list[str | None] = []
    api = FastAPI()

    @api.post("/webhooks/bolna")
    async def webhook(request: Request) -> Response:
        tokens.append(request.query_params.get("token"))
        received.append(await request.json())  # raises on the malformed body
        return Response(status_code=204)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api)) as to_api:
        sim = await make_sim(http_client=to_api, webhook_token="s3cret", webhook_max_attempts=2)
        await set_faults(sim, webhooks={"malformed": True})

        execution_id = (await place_call(sim)).json()["execution_id"]
        [call] = await wait_finished(sim)

    assert [body["status"] for body in received if body.get("id") == execution_id] == (
        COMPLETED_SEQUENCE
    )
    assert set(tokens) == {"s3cret"}
    assert call["webhooks_failed"] == 1  # the malformed body, after 2 attempts
    assert call["status"] == "completed"


# Reset and shutdown


async def test_reset_restores_defaults_and_forgets_calls(
    make_sim: SimFactory, sink: WebhookSink
) -> None:
    sim = await make_sim(step_delay_ms=50)
    await set_faults(sim, webhooks={"outcome": "failed", "duplicate": True}, latency_ms=1)
    execution_id = (await place_call(sim)).json()["execution_id"]
    await set_faults(sim, call={"mode": "500"})

    response = await sim.post("/_sim/reset")
    sent_at_reset = len(sink.requests)
    await asyncio.sleep(0.15)

    assert response.status_code == 200
    assert (await sim.get("/_sim/faults")).json() == FaultConfig(step_delay_ms=50).model_dump()
    assert (await sim.get("/_sim/calls")).json() == []
    assert (await sim.get("/_sim/requests")).json() == []
    assert (await sim.get(f"/executions/{execution_id}")).status_code == 404
    assert len(sink.requests) == sent_at_reset < 8
    assert (await place_call(sim)).status_code == 200


@asynccontextmanager
async def running_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Drive the ASGI lifespan protocol, which ASGITransport does not."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))  # type: ignore[arg-type]
    await inbox.put({"type": "lifespan.startup"})
    async with asyncio.timeout(2):
        assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        async with asyncio.timeout(2):
            assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
            await task


async def test_shutdown_cancels_webhooks_in_flight(sink: WebhookSink) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(sink.handle)) as webhook_client:
        app = create_simulator_app(step_delay_ms=10_000, http_client=webhook_client)
        state = simulator_state(app)
        async with (
            running_lifespan(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as sim,
        ):
            assert (await place_call(sim)).status_code == 200
            assert state.busy

        assert not state.busy
        [call] = state.calls.values()
        assert call.finished_at is not None
        assert sink.requests == []
        assert not webhook_client.is_closed  # a client it was given is not its to close


async def test_wait_idle_returns_once_webhooks_are_played(sink: WebhookSink) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(sink.handle)) as webhook_client:
        app = create_simulator_app(step_delay_ms=1, http_client=webhook_client)
        state = simulator_state(app)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as sim:
            await place_call(sim)

            async with asyncio.timeout(2):
                await state.wait_idle()

        assert not state.busy
        [call] = state.calls.values()
        assert call.finished_at is not None
        assert len(sink.requests) == len(COMPLETED_SEQUENCE)


# Over loopback with uvicorn


@pytest.mark.e2e
async def test_over_loopback_with_uvicorn(sink: WebhookSink) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    async with httpx.AsyncClient(transport=httpx.MockTransport(sink.handle)) as webhook_client:
        app = create_simulator_app(step_delay_ms=0, http_client=webhook_client, api_key=API_KEY)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        )
        serving = asyncio.create_task(server.serve())
        try:
            async with asyncio.timeout(5):
                # uvicorn exposes a flag, not an event, for "started".
                while not server.started:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {API_KEY}"},
                timeout=0.3,
            ) as sim:
                await set_faults(sim, call={"mode": "timeout", "count": 1, "timeout_s": 30})
                with pytest.raises(httpx.ReadTimeout):
                    await place_call(sim)
                execution_id = (await place_call(sim)).json()["execution_id"]
                await wait_finished(sim)
            assert sink.statuses(execution_id) == COMPLETED_SEQUENCE
        finally:
            server.should_exit = True
            # Returns quickly only if the held "timeout" request noticed its client left.
            async with asyncio.timeout(5):
                await serving


# Pure rules


def test_plan_combines_every_webhook_fault() -> None:
    steps = plan_webhooks("busy", duplicate=True, out_of_order=True, malformed=True)

    assert [(step.status, step.variant) for step in steps[::2]] == [
        ("queued", "malformed_json"),
        ("queued", "missing_id"),
        ("queued", "normal"),
        ("ringing", "normal"),
        ("initiated", "normal"),
        ("busy", "normal"),
        ("ringing", "normal"),
    ]
    assert steps[::2] == steps[1::2]


def test_call_fault_replaced_whole_and_count_consumed() -> None:
    config = merge_faults(
        FaultConfig(),
        FaultsUpdate.model_validate({"call": {"mode": "429", "count": 2, "retry_after": 1}}),
    )
    config = merge_faults(config, FaultsUpdate.model_validate({"call": {"mode": "500"}}))

    fault, config = consume_call_fault(config)

    assert (fault.mode, fault.count, fault.retry_after) == ("500", None, None)
    assert config.call == fault
