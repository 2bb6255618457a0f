"""Auth security signals: no event per bad token; bursts, forgeries and a wrong secret are."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from telemetry import error_policy
from telemetry._auth_signals import (
    ALL_FAILING_MESSAGE,
    BURST_MESSAGE,
    FORGED_MESSAGE,
    AuthSignals,
    record_auth_failure,
    record_auth_success,
)
from telemetry._backends import ErrorReport
from telemetry.settings import TelemetrySettings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, message: str, *, feature: str, level: str, **attributes: object) -> None:
        assert feature == "auth"
        self.messages.append((message, level, attributes))

    def names(self) -> list[str]:
        return [message for message, _, _ in self.messages]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def signals(clock: Clock, sink: Sink) -> AuthSignals:
    return AuthSignals(clock=clock, sink=sink)


def test_a_single_bad_token_is_not_an_event(signals: AuthSignals, sink: Sink) -> None:
    for reason in ("missing", "malformed", "expired", "unknown_user"):
        signals.record_failure(reason, client="10.0.0.1")
    assert sink.messages == []


def test_a_burst_from_one_client_yields_one_warning_per_window(
    signals: AuthSignals, sink: Sink, clock: Clock
) -> None:
    for _ in range(19):
        signals.record_failure("expired", client="10.0.0.1")
        signals.record_failure("expired", client="10.0.0.2")
        clock.now += 1
    assert sink.messages == []
    for _ in range(100):
        signals.record_failure("expired", client="10.0.0.1")
    [(message, level, attributes)] = sink.messages
    assert (message, level) == (BURST_MESSAGE, "warning")
    assert attributes["client"] == "10.0.0.1"
    assert attributes["failures"] == 20


def test_failures_spread_over_windows_are_not_a_burst(
    signals: AuthSignals, sink: Sink, clock: Clock
) -> None:
    for _ in range(100):
        signals.record_failure("expired", client="10.0.0.1")
        clock.now += 5  # 12 per minute
    assert sink.messages == []


def test_burst_warnings_are_rate_limited_across_clients(
    signals: AuthSignals, sink: Sink, clock: Clock
) -> None:
    for client in range(50):
        for _ in range(20):
            signals.record_failure("malformed", client=f"10.0.1.{client}")
    assert sink.names() == [BURST_MESSAGE]
    clock.now += signals.burst_interval_seconds
    for _ in range(20):
        signals.record_failure("malformed", client="10.0.2.1")
    assert sink.names() == [BURST_MESSAGE, BURST_MESSAGE]
    assert sink.messages[-1][2]["other_bursts_suppressed"] == 49


def test_forged_tokens_warn_at_most_once_per_interval(
    signals: AuthSignals, sink: Sink, clock: Clock
) -> None:
    signals.record_success()
    signals.record_failure("bad_signature", client="10.0.0.1")
    signals.record_failure("foreign_algorithm", client="10.0.0.2")
    assert sink.names() == [FORGED_MESSAGE]
    assert sink.messages[0][1] == "warning"
    clock.now += signals.forged_interval_seconds
    signals.record_success()
    signals.record_failure("foreign_algorithm", client="10.0.0.3")
    assert sink.names() == [FORGED_MESSAGE, FORGED_MESSAGE]
    assert sink.messages[1][2] == {"auth_reason": "foreign_algorithm", "suppressed_since_last": 1}


def test_every_verification_failing_is_one_error(
    signals: AuthSignals, sink: Sink, clock: Clock
) -> None:
    for i in range(200):  # a wrong JWT_SECRET: every real user's token fails
        signals.record_failure("bad_signature", client=f"10.0.0.{i % 50}")
    errors = [m for m in sink.messages if m[0] == ALL_FAILING_MESSAGE]
    assert [(m[1], m[2]["bad_signatures"]) for m in errors] == [("error", 20)]


def test_a_success_in_the_window_means_verification_works(
    signals: AuthSignals, sink: Sink, clock: Clock
) -> None:
    signals.record_success()
    for i in range(200):
        signals.record_failure("bad_signature", client=f"10.0.0.{i % 50}")
    assert ALL_FAILING_MESSAGE not in sink.names()


def test_memory_stays_bounded_under_a_flood_of_clients(clock: Clock, sink: Sink) -> None:
    signals = AuthSignals(clock=clock, sink=sink, max_clients=1000)
    for i in range(20_000):
        signals.record_failure("malformed", client=f"client-{i}")
    assert signals.tracked_clients() == 1000


@pytest.fixture
def production_policy() -> Iterator[list[ErrorReport]]:
    reports: list[ErrorReport] = []

    class Backend:
        name = "recording"

        def send(self, report: ErrorReport) -> None:
            reports.append(report)

        def flush(self, timeout: float) -> None:
            pass

    settings = TelemetrySettings(
        _env_file=None, app_env="production", error_budget_monthly=5000, error_backend="none"
    )
    error_policy.install(settings, backend=Backend())
    yield reports
    error_policy.uninstall()


def test_a_flood_of_bad_tokens_cannot_drain_the_budget(
    production_policy: list[ErrorReport], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("telemetry._auth_signals._signals", AuthSignals())
    for i in range(20_000):
        record_auth_failure("bad_signature" if i % 3 else "expired", client=f"10.9.{i % 200}.1")
    record_auth_success()
    assert sorted((r.level, r.message) for r in production_policy) == [
        ("error", ALL_FAILING_MESSAGE),
        ("warning", BURST_MESSAGE),
        ("warning", FORGED_MESSAGE),
    ]
    assert {r.feature for r in production_policy} == {"auth"}
    assert error_policy.status()["budget"]["used"] == 3
