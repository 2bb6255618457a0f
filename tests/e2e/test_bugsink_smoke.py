"""Bugsink accepts what a plain sentry-sdk client sends, and its REST API gives it back."""

from __future__ import annotations

import uuid

import pytest
import sentry_sdk

from tests.e2e.bugsink import BugsinkClient

pytestmark = [pytest.mark.e2e, pytest.mark.bugsink]


def send_isolated(dsn: str, message: str, tags: dict[str, str]) -> str:
    """Send one event through a client of its own: no global hub, integrations or hooks."""
    client = sentry_sdk.Client(
        dsn=dsn,
        default_integrations=False,
        auto_enabling_integrations=False,
        environment="e2e",
        release="smoke@1",
    )
    try:
        scope = sentry_sdk.Scope()
        scope.set_client(client)
        for key, value in tags.items():
            scope.set_tag(key, value)
        event_id = client.capture_event({"message": message, "level": "error"}, scope=scope)
        assert event_id is not None, "the SDK dropped the event before sending it"
        client.flush(timeout=10)
    finally:
        client.close(timeout=10)
    return event_id


def test_an_event_sent_with_sentry_sdk_reads_back_through_the_rest_api(
    fresh_bugsink: BugsinkClient,
) -> None:
    marker = uuid.uuid4().hex
    event_id = send_isolated(fresh_bugsink.dsn, f"smoke {marker}", {"smoke.marker": marker})

    [event] = fresh_bugsink.wait_for_events(1, timeout=15)
    data = event["data"]
    assert data["message"] == f"smoke {marker}"
    assert data["level"] == "error"
    assert data["tags"]["smoke.marker"] == marker
    assert (data["environment"], data["release"]) == ("e2e", "smoke@1")
    assert event["event_id"].replace("-", "") == event_id
    assert fresh_bugsink.event(event_id) == event


def test_clear_empties_the_project(fresh_bugsink: BugsinkClient) -> None:
    send_isolated(fresh_bugsink.dsn, "to be cleared", {})
    fresh_bugsink.wait_for_events(1)

    fresh_bugsink.clear()

    assert fresh_bugsink.events() == []
    assert fresh_bugsink.event(uuid.uuid4().hex) is None
