"""Pure rules: daily windows and what happens to an item after an attempt."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.campaigns.processor import (
    RetryPolicy,
    Settlement,
    settle_after_call,
    settle_after_dial_error,
)
from app.campaigns.scheduler import (
    DailyWindow,
    load_timezone,
    next_window_opening,
    parse_hhmm,
    window_is_open,
)

OFFICE_IN_KOLKATA = DailyWindow.parse("09:00", "18:00", "Asia/Kolkata")  # UTC+05:30
NIGHT_IN_UTC = DailyWindow.parse("22:00", "06:00", "UTC")


def utc(hour: int, minute: int = 0, day: int = 10) -> datetime:
    return datetime(2026, 3, day, hour, minute)  # naive UTC, as the database stores it


@pytest.mark.parametrize(
    ("now", "is_open"),
    [
        (utc(3, 29), False),  # 08:59 in Kolkata
        (utc(3, 30), True),  # 09:00: the start is inside
        (utc(12, 29), True),  # 17:59
        (utc(12, 30), False),  # 18:00: the end is outside
        (utc(20, 0), False),
    ],
)
def test_window_in_the_campaigns_timezone(now: datetime, is_open: bool) -> None:
    assert window_is_open(OFFICE_IN_KOLKATA, now) is is_open
    assert window_is_open(OFFICE_IN_KOLKATA, now.replace(tzinfo=UTC)) is is_open


@pytest.mark.parametrize(
    ("now", "is_open"),
    [(utc(21, 59), False), (utc(22, 0), True), (utc(2, 0), True), (utc(5, 59), True),
     (utc(6, 0), False), (utc(12, 0), False)],
)  # fmt: skip
def test_window_crossing_midnight(now: datetime, is_open: bool) -> None:
    assert window_is_open(NIGHT_IN_UTC, now) is is_open


def test_no_window_and_equal_ends_mean_always() -> None:
    assert window_is_open(None, utc(3))
    assert window_is_open(DailyWindow.parse("08:00", "08:00", "UTC"), utc(3))
    assert next_window_opening(None, utc(3)) is None


def test_next_opening_today_or_tomorrow() -> None:
    assert next_window_opening(OFFICE_IN_KOLKATA, utc(1)) == utc(3, 30)
    assert next_window_opening(OFFICE_IN_KOLKATA, utc(13)) == utc(3, 30, day=11)
    assert next_window_opening(OFFICE_IN_KOLKATA, utc(5)) is None
    assert next_window_opening(NIGHT_IN_UTC, utc(12)) == utc(22)


def test_windows_follow_daylight_saving_time() -> None:
    new_york = DailyWindow.parse("09:00", "17:00", "America/New_York")
    winter, summer = datetime(2026, 1, 15, 13, 30), datetime(2026, 7, 15, 13, 30)
    assert not window_is_open(new_york, winter)  # 08:30 EST
    assert window_is_open(new_york, summer)  # 09:30 EDT
    # The night before the clocks go forward (8 March 2026), the next 09:00 is EDT.
    assert next_window_opening(new_york, datetime(2026, 3, 8, 2, 0)) == datetime(2026, 3, 8, 13)


@given(
    start=st.times(), end=st.times(), now=st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1))
)
def test_a_closed_window_opens_next_within_a_day(start: time, end: time, now: datetime) -> None:
    window = DailyWindow(
        start.replace(second=0, microsecond=0),
        end.replace(second=0, microsecond=0),
        load_timezone("Asia/Kolkata"),
    )
    opening = next_window_opening(window, now)
    if window_is_open(window, now):
        assert opening is None
    else:
        assert opening is not None
        assert now < opening <= now + timedelta(days=1)
        assert window_is_open(window, opening)
        assert not window_is_open(window, opening - timedelta(minutes=1))


@pytest.mark.parametrize("value", ["24:00", "12:60", "noon", "1200", "12:5", "-1:00", ""])
def test_bad_times_of_day(value: str) -> None:
    with pytest.raises(ValueError, match="time of day"):
        parse_hhmm(value)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "/UTC", "Asia/Kolkata "])
def test_bad_timezones(name: str) -> None:
    with pytest.raises(ValueError, match="IANA"):
        load_timezone(name)


POLICY = RetryPolicy(max_attempts=2, on=frozenset({"busy", "no-answer"}), backoff_seconds=60)


def test_a_completed_call_completes_the_item() -> None:
    assert settle_after_call(
        "completed", attempts=2, policy=POLICY, campaign_status="canceled"
    ) == Settlement("completed")


def test_unanswered_calls_are_retried_until_attempts_run_out() -> None:
    assert settle_after_call(
        "busy", attempts=1, policy=POLICY, campaign_status="running"
    ) == Settlement("pending", retry_after_seconds=60)
    assert settle_after_call(
        "no-answer", attempts=2, policy=POLICY, campaign_status="running"
    ) == Settlement("failed", reason="no-answer after 2 attempts")


def test_outcomes_outside_the_policy_fail_at_once() -> None:
    assert settle_after_call(
        "failed", attempts=1, policy=POLICY, campaign_status="running"
    ) == Settlement("failed", reason="call ended failed (not retried)")


def test_a_retry_in_a_canceled_campaign_is_canceled_and_a_paused_one_waits() -> None:
    assert settle_after_call("busy", attempts=1, policy=POLICY, campaign_status="canceled") == (
        Settlement("canceled", reason="busy; campaign canceled before a retry")
    )
    assert (
        settle_after_call("busy", attempts=1, policy=POLICY, campaign_status="paused").state
        == "pending"
    )


def test_dial_errors_retry_when_retryable_and_fail_otherwise() -> None:
    assert settle_after_dial_error(
        "bolna_server_error: 503", retryable=True, attempts=1, policy=POLICY,
        campaign_status="running",
    ) == Settlement("pending", retry_after_seconds=60)  # fmt: skip
    assert settle_after_dial_error(
        "bolna_server_error: 503", retryable=True, attempts=2, policy=POLICY,
        campaign_status="running",
    ) == Settlement("failed", reason="bolna_server_error: 503 after 2 attempts")  # fmt: skip
    assert settle_after_dial_error(
        "bolna_rejected: bad number", retryable=False, attempts=1, policy=POLICY,
        campaign_status="running",
    ) == Settlement("failed", reason="bolna_rejected: bad number")  # fmt: skip
