"""The suite-wide PII guard itself: what it catches, what it lets through, and its wiring."""

from __future__ import annotations

import logging

import jwt
import pytest

from telemetry import _tap
from tests.security.pii_guard import PiiGuard, find_leaks

RAW_JWT = jwt.encode({"sub": "1"}, "test-secret-with-at-least-32-characters!!")


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("dialing +919876543210 now", "phone number"),
        ('{"to": "+14155550123"}', "phone number"),
        ("+442079460958", "phone number"),
        ("national 98765 43210", "test phone number"),
        ("call (415) 555-0123 back", "test phone number"),
        ("919876543210", "test phone number"),
        (f"Authorization: Bearer {RAW_JWT}", "JWT"),
        ('{"api_key": "test-bolna-key"}', "secret"),
        ("/webhooks/bolna?token=test-webhook-token", "secret"),
        ("password123", "secret"),
    ],
)
def test_raw_values_are_caught(text: str, what: str) -> None:
    leaks = find_leaks(text)
    assert what in [found for found, _ in leaks]
    for _, excerpt in leaks:  # the failure message itself must not repeat the value
        assert find_leaks(excerpt) == []


@pytest.mark.parametrize(
    "text",
    [
        "dialing +********3210 now",
        "+*******0123",
        "trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7",
        "6f1c2c1e-1111-4111-8111-111111111111",
        "at 2026-05-01T10:00:00+05:30, 1714000000.123 s, 1714000000123 ms",
        "Authorization: [REDACTED]",
        '{"password": "[REDACTED]", "token": "[REDACTED]"}',
        "password1234 and my-test-keys and test-key-2",
        "eyJhbGciOiJIUzI1NiJ9 alone is a header, not a token",
        "call 12 took 98.76543210 s",
    ],
)
def test_masked_and_harmless_values_pass(text: str) -> None:
    assert find_leaks(text) == []


def test_the_session_guard_sees_what_leaves(_pii_guard: PiiGuard) -> None:
    _tap.emit("sentry_event", {"message": "dial +919876543210"})
    leaks = _pii_guard.take()  # taken here, so this test's own teardown stays green
    assert [(leak.kind, leak.what) for leak in leaks] == [("sentry_event", "phone number")]


def test_log_records_are_scanned_as_production_writes_them(_pii_guard: PiiGuard) -> None:
    logging.getLogger("app.test").warning("dialing %s with %s", "+919876543210", RAW_JWT)
    assert _pii_guard.take() == []  # both formatters scrub: nothing raw is written


@pytest.mark.allows_pii("proves the marker exempts a test")
def test_a_marked_test_may_export_raw_values() -> None:
    _tap.emit("sentry_event", {"message": "dial +919876543210"})
