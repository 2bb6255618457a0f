"""The suite-wide guard: nothing that leaves the process carries a phone number or a secret.

`tests/conftest.py` keeps one `PiiGuard` for the whole session, fed by two taps:

- `telemetry.testing.observe_exports`: every span handed to exporters, every error
  report handed to the error backend, every Sentry event and transaction;
- a root logging handler rendering each record as production would write it
  (`telemetry.testing.render_log_record`: the JSON and the text line, both scrubbed).

Each payload is rendered to text and searched for raw phone numbers (E.164 and the
numbers the tests use, grouped or not), JWTs, and the literal secrets the tests use
(API keys, passwords, the webhook token, JWT secrets). Masked numbers (`+********3210`),
trace ids and `[REDACTED]` do not match. After each test the findings are taken; any
fails that test, naming the kind of payload and a redacted excerpt.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from telemetry._backends import ErrorReport
from telemetry.testing import render_log_record

# Numbers the tests dial: caught without the plus too, with or without the country code,
# and written with spaces, dashes or parentheses between the digits.
TEST_PHONE_NUMBERS: Final = (
    "+919876543210",
    "+14155550123",
    "+14155550100",
    "+919999900000",
    "+919999900001",
    "+442079460958",
)
# Literal secrets the tests configure or send.
TEST_SECRETS: Final = (
    "test-bolna-key",
    "test-webhook-token",
    "test-secret-with-at-least-32-characters!!",
    "dev-only-jwt-secret-change-me-in-production",
    "sim-dev-key",
    "test-key",
    "real-key",
    "e2e-token",
    "sk-live-123",
    "sk_live_123",
    "password123",
    "wrong-password",
    "hunter2",
    "s3cret",
    "sekrit",
)
_SEPARATOR: Final = r"[ ()-]{0,2}"


def _grouped(digits: str) -> str:
    return _SEPARATOR.join(re.escape(d) for d in digits)


PATTERNS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    # E.164: a plus and 8-15 digits, not a masked one (`+********3210` has stars).
    ("phone number", re.compile(r"(?<![\w+*])\+[1-9][0-9]{7,14}(?![0-9])")),
    (
        "test phone number",
        re.compile(
            r"(?<![0-9A-Za-z*+])(?:"
            + "|".join(
                _grouped(digits)
                for number in TEST_PHONE_NUMBERS
                for digits in (number[1:], number[-10:])  # with and without country code
            )
            + r")(?![0-9A-Za-z])"
        ),
    ),
    ("JWT", re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*")),
    (
        "secret",
        re.compile(
            r"(?<![\w-])(?:"
            + "|".join(re.escape(s) for s in sorted(TEST_SECRETS, key=len, reverse=True))
            + r")(?![\w-])"
        ),
    ),
)
_EXCERPT_CONTEXT: Final = 40


def _mask(text: str) -> str:
    """Enough of a match to recognise it, not enough to reuse it."""
    if len(text) <= 6:
        return "*" * len(text)
    return f"{text[:3]}{'*' * min(len(text) - 5, 12)}{text[-2:]}"


def find_leaks(text: str) -> list[tuple[str, str]]:
    """``(what, redacted excerpt)`` for each raw value in ``text``; empty when clean."""
    found: list[tuple[str, str]] = []
    for what, pattern in PATTERNS:
        match = pattern.search(text)
        if match is None:
            continue
        start = max(match.start() - _EXCERPT_CONTEXT, 0)
        excerpt = text[start : match.end() + _EXCERPT_CONTEXT]
        for _, any_pattern in PATTERNS:
            excerpt = any_pattern.sub(lambda m: _mask(m.group()), excerpt)
        found.append((what, f"...{excerpt}..."))
    return found


def _attributes(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


def render_span(span: Any) -> str:
    """Everything of a span an exporter sends, as text: name, attributes, events, links,
    status and resource (ids and timings are numbers and cannot hold text)."""
    resource = getattr(span, "resource", None)
    return json.dumps(
        {
            "name": span.name,
            "attributes": _attributes(span.attributes),
            "events": [
                {"name": event.name, "attributes": _attributes(event.attributes)}
                for event in span.events
            ],
            "links": [_attributes(link.attributes) for link in span.links],
            "status": span.status.description,
            "resource": _attributes(resource.attributes if resource is not None else None),
        },
        default=str,
    )


def render_error_report(report: ErrorReport) -> str:
    """What backends send of a report; not ``.exception``, the live object they render
    and scrub themselves."""
    return json.dumps(
        {
            "message": report.message,
            "tags": dict(report.tags),
            "context": dict(report.context),
            "fingerprint": list(report.fingerprint),
            "extra": dict(report.extra),
        },
        default=str,
    )


def render_export(kind: str, payload: object) -> str:
    if kind == "span":
        return render_span(payload)
    if kind == "error_report" and isinstance(payload, ErrorReport):
        return render_error_report(payload)
    return json.dumps(payload, default=str)


@dataclass(frozen=True)
class Leak:
    kind: str  # span, error_report, sentry_event, sentry_transaction, log
    what: str  # phone number, JWT, secret, ...
    excerpt: str  # redacted

    def __str__(self) -> str:
        return f"{self.kind} carried a raw {self.what}: {self.excerpt}"


class PiiGuard:
    """Collects leaks from any thread; `take()` hands them over and starts afresh."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leaks: list[Leak] = []
        self.scanned: Counter[str] = Counter()  # payloads seen, by kind

    def _scan(self, kind: str, texts: Iterable[str]) -> None:
        self.scanned[kind] += 1
        leaks = [Leak(kind, what, excerpt) for text in texts for what, excerpt in find_leaks(text)]
        if leaks:
            with self._lock:
                self._leaks.extend(leaks)

    def observe(self, kind: str, payload: object) -> None:
        """An `observe_exports` observer. Never raises: an unreadable payload is a finding."""
        try:
            text = render_export(kind, payload)
        except Exception as exc:
            with self._lock:
                self._leaks.append(Leak(kind, "unscannable payload", repr(exc)[:200]))
            return
        self._scan(kind, [text])

    def observe_log(self, record: logging.LogRecord) -> None:
        self._scan("log", render_log_record(record))

    def take(self) -> list[Leak]:
        with self._lock:
            leaks, self._leaks = self._leaks, []
        return leaks


class GuardLogHandler(logging.Handler):
    """Sends every record that reaches the root logger to the guard, as production
    formatters would render it."""

    def __init__(self, guard: PiiGuard) -> None:
        super().__init__(level=logging.DEBUG)
        self.guard = guard

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.guard.observe_log(record)
        except Exception:
            self.handleError(record)


def report(leaks: list[Leak], limit: int = 5) -> str:
    lines = [str(leak) for leak in leaks[:limit]]
    if len(leaks) > limit:
        lines.append(f"... and {len(leaks) - limit} more")
    return (
        "personal data or a secret left the process (scrubbing missed it):\n  "
        + "\n  ".join(lines)
        + "\nIf this test checks a payload below scrubbing on purpose, mark it "
        "@pytest.mark.allows_pii(reason)."
    )
