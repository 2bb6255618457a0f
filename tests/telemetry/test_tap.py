"""observe_exports sees payloads where they leave: after scrubbing, before the exporter."""

from __future__ import annotations

import logging

from opentelemetry import trace

from telemetry import capture_error
from telemetry._backends import ErrorReport
from telemetry.testing import (
    SpanCapture,
    observe_exports,
    render_log_record,
)

PHONE = "+14155550123"


def test_spans_and_error_reports_are_observed_scrubbed(capture: SpanCapture) -> None:
    with observe_exports() as seen:
        with trace.get_tracer("t").start_as_current_span("work") as span:
            span.set_attribute("note", f"calling {PHONE}")
            capture_error(RuntimeError(f"dial {PHONE} failed"), feature="call_initiation")
        capture.telemetry.force_flush()

    kinds = [kind for kind, _ in seen]
    assert "span" in kinds and "error_report" in kinds
    spans = [p for k, p in seen if k == "span"]
    assert PHONE not in repr([dict(getattr(s, "attributes", {})) for s in spans])
    report = next(p for k, p in seen if k == "error_report")
    assert isinstance(report, ErrorReport)
    # ``report.exception`` is the live exception: backends render it and scrub the result.
    assert "dial" in report.message and PHONE not in report.message


def test_nothing_is_observed_outside_the_block(capture: SpanCapture) -> None:
    with observe_exports() as seen:
        pass
    with trace.get_tracer("t").start_as_current_span("later"):
        pass
    capture.telemetry.force_flush()
    assert seen == []


def test_log_lines_are_scrubbed_in_both_formats() -> None:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "calling %s", (PHONE,), None)
    lines = render_log_record(record)
    assert len(lines) == 2
    assert all(PHONE not in line and "calling" in line for line in lines)
