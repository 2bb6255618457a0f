"""OTLP on the wire: the app, run as `python -m app serve` in production mode, exports its
spans and its error reports over OTLP/HTTP to a receiver that decodes the real protobufs.

A full call (agent, contact, call, webhooks up to `completed`) and one Bolna failure
(simulator answers 500, the API answers 502) are driven through the real API; the
assertions read only what arrived at the receiver.

The servers come from `tests/e2e/loopback.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from telemetry import attributes as attrs
from tests.e2e.loopback import Loopback, assert_shut_down_gracefully, loopback_servers, wait_until
from tests.e2e.otlp_receiver import OtlpReceiver, ReceivedLogRecord, ReceivedSpan
from tests.faults import PHONE

pytestmark = pytest.mark.e2e

# --- helpers over decoded spans -----------------------------------------------------------


def one(items: list[ReceivedSpan], what: str) -> ReceivedSpan:
    assert len(items) == 1, f"expected one {what}, got {len(items)}: {[s.name for s in items]}"
    return items[0]


def server_span(spans: list[ReceivedSpan], name: str, status: int) -> ReceivedSpan:
    return one(
        [
            s
            for s in spans
            if s.kind == "SERVER"
            and s.name == name
            and s.attributes.get(attrs.HTTP_RESPONSE_STATUS_CODE) == status
        ],
        f"{name} server span answering {status}",
    )


def child(spans: list[ReceivedSpan], parent: ReceivedSpan, name: str) -> ReceivedSpan:
    return one(
        [s for s in spans if s.parent_span_id == parent.span_id and s.name == name],
        f"{name} under {parent.name}",
    )


def assert_nothing_secret(
    exported: list[ReceivedSpan] | list[ReceivedLogRecord], servers: Loopback
) -> None:
    """No phone number digits, JWT, API key or webhook token anywhere in what was exported."""
    for item in exported:
        text = repr(item)  # every field: name, attributes, events, links, body, resource
        for what, value in servers.secrets().items():
            assert value not in text, f"{what} exported in {text[:300]}"


# --- the test -----------------------------------------------------------------------------


def test_call_flow_and_bolna_failure_arrive_as_decoded_otlp(
    tmp_path: Path, sqlite_url: str, otlp_receiver: OtlpReceiver
) -> None:
    otlp = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "TELEMETRY_ERROR_BACKEND": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
    }
    with (
        loopback_servers(tmp_path, sqlite_url, telemetry=otlp) as servers,
        servers.client() as api,
    ):
        agent = api.post(
            "/agents",
            json={"name": "Wire", "bolna_agent_id": "6f1c2c1e-1111-4111-8111-111111111111"},
        )
        assert agent.status_code == 201, agent.text
        contact = api.post("/contacts", json={"name": "Asha", "phone_number": PHONE})
        assert contact.status_code == 201, contact.text
        target = {"agent_id": agent.json()["id"], "contact_id": contact.json()["id"]}

        placed = api.post("/calls", json=target)
        assert placed.status_code == 201, placed.text
        call_id = placed.json()["id"]
        wait_until(
            lambda: api.get(f"/calls/{call_id}").json()["status"] == "completed",
            20,
            f"call {call_id} to complete",
        )
        servers.wait_sim_idle()

        servers.faults(call={"mode": "500"})
        failed = api.post("/calls", json=target)
        assert failed.status_code == 502, failed.text
        assert failed.json()["error"] == "bolna_server_error"

        # Exported while the app runs (OTEL_BSP/BLRP_SCHEDULE_DELAY honoured), not only
        # at shutdown.
        otlp_receiver.wait_for(otlp_receiver.logs, timeout=10)
        otlp_receiver.wait_for(
            lambda: any(
                s.attributes.get(attrs.CALL_STATUS) == "completed"
                for s in otlp_receiver.spans(name="webhook.process")
            ),
            timeout=10,
        )
    assert_shut_down_gracefully(servers, "api")

    spans = otlp_receiver.spans()
    logs = otlp_receiver.logs()

    # Every span and record names this service, version, environment and process.
    instance_ids = {s.resource.get(attrs.SERVICE_INSTANCE_ID) for s in spans}
    assert len(instance_ids) == 1 and None not in instance_ids, instance_ids
    for resource in [*(s.resource for s in spans), *(r.resource for r in logs)]:
        assert resource[attrs.SERVICE_NAME] == "calling-backend"
        assert resource[attrs.SERVICE_VERSION]
        assert resource[attrs.DEPLOYMENT_ENVIRONMENT] == "production"
        assert resource.get(attrs.SERVICE_INSTANCE_ID) in instance_ids

    # The successful call: server span -> call.initiate -> bolna.make_call -> HTTP client.
    server = server_span(spans, "POST /calls", 201)
    initiate = child(spans, server, "call.initiate")
    assert initiate.attributes[attrs.CALL_ID] == call_id
    assert initiate.attributes[attrs.CALL_SOURCE] == "direct"
    assert initiate.status_code != "ERROR"
    make_call = child(spans, initiate, "bolna.make_call")
    assert make_call.attributes[attrs.BOLNA_ENDPOINT] == "/call"
    http_client = one(
        [s for s in spans if s.parent_span_id == make_call.span_id and s.kind == "CLIENT"],
        "HTTP client span under bolna.make_call",
    )
    assert http_client.attributes[attrs.HTTP_RESPONSE_STATUS_CODE] == 200
    # SQL statements travel as `db.query` events on the span that ran them (the default
    # TELEMETRY_SQL_SPANS=events), each with its parameterised statement and duration.
    sql = [
        event
        for s in spans
        if s.trace_id == server.trace_id
        for event in s.events
        if event.name == "db.query"
    ]
    assert sql, "no db.query events in the POST /calls trace"
    assert all(
        e.attributes[attrs.DB_STATEMENT] and attrs.DB_DURATION_MS in e.attributes for e in sql
    )

    # Each webhook is processed in its own trace, linked to the span that placed the call.
    processed = [
        s for s in spans if s.name == "webhook.process" and s.attributes.get(attrs.CALL_ID)
    ]
    statuses = [s.attributes[attrs.WEBHOOK_STATUS] for s in processed]
    assert "completed" in statuses and len(processed) >= 6, statuses
    for span in processed:
        assert span.trace_id != initiate.trace_id
        assert [(link.trace_id, link.span_id) for link in span.links] == [
            (initiate.trace_id, initiate.span_id)
        ]
        webhook_server = one(
            [s for s in spans if s.span_id == span.parent_span_id], "webhook server span"
        )
        assert (webhook_server.kind, webhook_server.name) == ("SERVER", "POST /webhooks/bolna")

    # The failure: one error record, in the failed request's trace, from call.initiate.
    failed_server = server_span(spans, "POST /calls", 502)
    failed_initiate = child(spans, failed_server, "call.initiate")
    assert failed_initiate.status_code == "ERROR"
    assert [(r.severity_text, r.severity_number) for r in logs] == [("ERROR", 17)], logs
    [record] = logs
    assert record.trace_id == failed_server.trace_id
    assert record.span_id == failed_initiate.span_id
    assert record.body.startswith("BolnaServerError")
    assert record.attributes[attrs.FEATURE] == "call_initiation"
    assert record.attributes[attrs.ERROR_LEVEL] == "error"
    assert record.attributes[attrs.ERROR_TYPE] == "BolnaServerError"
    assert record.attributes[attrs.CALL_SOURCE] == "direct"
    assert record.attributes[attrs.BOLNA_ENDPOINT] == "/call"
    assert record.attributes[attrs.HTTP_STATUS_CLASS] == "5xx"
    assert record.attributes["exception.type"] == "app.bolna.errors.BolnaServerError"
    assert record.attributes["exception.stacktrace"]

    assert_nothing_secret(spans, servers)
    assert_nothing_secret(logs, servers)
