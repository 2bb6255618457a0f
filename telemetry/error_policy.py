"""The error policy: every capture is decided here before any backend event is built.

    from telemetry import capture_error, capture_message, report_errors

    capture_error(exc, feature="call_initiation", call_id=call.id, call_source="direct")
    capture_message("credit balance went negative", feature="credits", level="warning")

    @report_errors("campaign_dispatch")          # sync or async; captures and re-raises
    async def dispatch(item): ...

    with report_errors("webhook", delivery_id=d.id):
        process(d)

Decision order (``decide``, pure): an exception already captured (itself, or the
``raise ... from`` cause it translates) -> dropped ``already_captured``; an expected
business error (``exc.expected is True``) -> dropped ``expected``; a 4xx the client got
(``exc.http_status``/``status_code`` 400-499, unless the caller passes ``level``) ->
dropped ``http_4xx``; sending off for this ``APP_ENV`` -> ``logged`` ``environment``;
the same fingerprint sent less than ``dedupe_window_seconds`` ago -> dropped
``duplicate`` (counted; the count rides on the next one sent as ``repeat_count``); the
monthly budget's tier for the level used up -> dropped ``budget_<level>`` (see
``telemetry.budget``); otherwise ``sent``.

Fingerprints group by cause, never by message text: feature + exception class, plus
endpoint and status for errors that carry both (Bolna's). Every decision increments the
``app.telemetry.errors`` counter (outcome, reason, level, feature) and adds an
``error_policy.decision`` event to the current span, so a dropped error still shows in
its trace. Capturing never raises into the caller, except under ``APP_ENV=test`` where a
bug in the policy or a backend should fail the test.

Also here: ``sentry_before_send``/``sentry_before_send_transaction`` (the hooks the Sentry
setup installs), ``install``/``uninstall``/``status``/``sync_budget`` (for ``configure()``
and the app's worker), and the auth signals ``record_auth_failure``/``record_auth_success``
(see ``telemetry._auth_signals``).
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, NamedTuple, ParamSpec, TypedDict, TypeVar, cast

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
from opentelemetry.trace import Status, StatusCode

from telemetry import _tap
from telemetry import attributes as attr
from telemetry._auth_signals import record_auth_failure, record_auth_success
from telemetry._backends import (
    ErrorBackend,
    ErrorReport,
    LogBackend,
    build_backend,
    log_report,
    sending_decided_event,
)
from telemetry.budget import LEVELS, Budget, BudgetSnapshot, BudgetStore, default_max_unsynced
from telemetry.scrubbing import scrub, scrub_event, scrub_text
from telemetry.settings import TelemetrySettings

if TYPE_CHECKING:
    from sentry_sdk._types import Event, Hint

__all__ = [
    "CaptureContext",
    "Decision",
    "ErrorPolicy",
    "PolicyState",
    "PolicyStatus",
    "capture_error",
    "capture_message",
    "decide",
    "exception_context",
    "get_policy",
    "install",
    "message_context",
    "normalize_level",
    "record_auth_failure",
    "record_auth_success",
    "report_errors",
    "sentry_before_send",
    "sentry_before_send_transaction",
    "status",
    "sync_budget",
    "uninstall",
]

_log = logging.getLogger("telemetry.errors")

COUNTER_NAME: Final = "app.telemetry.errors"
_METER_NAME: Final = "telemetry.error_policy"
SPAN_EVENT_NAME: Final = "error_policy.decision"
_MARK: Final = "_telemetry_decision"  # set on captured exceptions: their Decision
_LEVEL_ALIASES: Final = {"critical": "fatal", "warn": "warning", "exception": "error"}
# The status the client got: a 4xx here is the client's mistake, not ours.
_RESPONSE_STATUS_ATTRS: Final = ("http_status", "status_code")
# The status that describes the failure, for fingerprints and tags (upstream's first).
_CAUSE_STATUS_ATTRS: Final = ("bolna_status", "upstream_status", "status", "http_status")
_CAUSE_STATUS_KWARGS: Final = ("http_status", "bolna_status", "status")
_ENDPOINT_KWARGS: Final = ("endpoint", "bolna_endpoint")
_TAG_KWARGS: Final = ("call_source", "campaign_id")
# Reasons that say "this exception is not a failure of ours": no ERROR span status.
_NOT_FAILURES: Final = frozenset({"expected", "http_4xx"})
_MAX_TAG_LENGTH: Final = 200
_MAX_CAUSE_DEPTH: Final = 8

Outcome = str  # "sent" | "dropped" | "logged"


class PolicyStatus(TypedDict):
    """What ``status()`` returns (``/health`` and ``python -m app telemetry status``)."""

    error_backend: str
    environment: str
    sending: bool
    budget: BudgetSnapshot
    dropped: dict[str, int]  # reason -> count, since this policy was installed
    sent: int
    logged: int
    backend_errors: int


class Decision(NamedTuple):
    """What the policy did with one capture, and why."""

    outcome: Outcome
    reason: str
    level: str
    fingerprint: tuple[str, ...]
    repeat_count: int = 0


@dataclass(slots=True)
class CaptureContext:
    """Everything ``decide`` needs to know about one capture, as plain data."""

    feature: str
    level: str
    fingerprint: tuple[str, ...]
    now: float
    error_type: str | None = None
    expected: bool = False
    response_status: int | None = None
    level_forced: bool = False
    already_captured: bool = False


@dataclass(slots=True)
class _Seen:
    sent_at: float
    suppressed: int = 0


@dataclass(slots=True)
class PolicyState:
    """What ``decide`` remembers between captures (mutated by it)."""

    sending_enabled: bool
    dedupe_window: float
    budget: Budget
    seen: dict[tuple[str, ...], _Seen] = field(default_factory=dict)
    max_fingerprints: int = 4096


def decide(ctx: CaptureContext, state: PolicyState) -> Decision:
    """The decision pipeline. Pure apart from ``state`` (dedupe memory and budget)."""
    level, fingerprint = ctx.level, ctx.fingerprint
    if ctx.already_captured:
        return Decision("dropped", "already_captured", level, fingerprint)
    if ctx.expected:
        return Decision("dropped", "expected", level, fingerprint)
    status = ctx.response_status
    if status is not None and 400 <= status <= 499 and not ctx.level_forced:
        return Decision("dropped", "http_4xx", level, fingerprint)
    if not state.sending_enabled:
        return Decision("logged", "environment", level, fingerprint)
    seen = state.seen.get(fingerprint)
    if seen is not None and ctx.now - seen.sent_at < state.dedupe_window:
        seen.suppressed += 1
        return Decision("dropped", "duplicate", level, fingerprint, seen.suppressed)
    allowed, reason = state.budget.try_spend(level)
    if not allowed:
        return Decision("dropped", reason, level, fingerprint)
    repeat_count = seen.suppressed if seen is not None else 0
    _remember_sent(state, fingerprint, ctx.now)
    return Decision("sent", "ok", level, fingerprint, repeat_count)


def _remember_sent(state: PolicyState, fingerprint: tuple[str, ...], now: float) -> None:
    seen = state.seen
    seen.pop(fingerprint, None)  # re-inserted last: dict order is age order
    if len(seen) >= state.max_fingerprints:
        window = state.dedupe_window
        for old in [fp for fp, s in seen.items() if now - s.sent_at >= window]:
            del seen[old]
        while len(seen) >= state.max_fingerprints:
            del seen[next(iter(seen))]
    seen[fingerprint] = _Seen(now)


_NORMALIZED_LEVELS: Final[dict[str, str]] = {name: name for name in LEVELS}


def normalize_level(level: str) -> str:
    """``critical`` -> ``fatal``, ``warn`` -> ``warning``; unknown levels raise ValueError."""
    known = _NORMALIZED_LEVELS.get(level)
    if known is not None:
        return known
    name = level.lower()
    name = _LEVEL_ALIASES.get(name, name)
    if name not in LEVELS:
        raise ValueError(f"unknown level {level!r}; valid levels: {', '.join(LEVELS)}")
    return name


def _declared_level(exc: BaseException) -> str:
    """The level ``exc`` declares, or "error".

    A level the exception declares is data, not a call-site bug: if it is not one we
    know, report at "error" rather than lose the error.
    """
    declared = getattr(exc, "level", None)
    if not isinstance(declared, str):
        return "error"
    try:
        return normalize_level(declared)
    except ValueError:
        return "error"


def _first_int(obj: object, names: tuple[str, ...]) -> int | None:
    for name in names:
        value = getattr(obj, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _first_kwarg(attributes: Mapping[str, object], names: tuple[str, ...]) -> object | None:
    for name in names:
        value = attributes.get(name)
        if value is not None:
            return value
    return None


def _cause_status(exc: BaseException, attributes: Mapping[str, object]) -> int | None:
    status = _first_int(exc, _CAUSE_STATUS_ATTRS)
    if status is None:
        value = _first_kwarg(attributes, _CAUSE_STATUS_KWARGS)
        if isinstance(value, int) and not isinstance(value, bool):
            status = value
    return status


def _endpoint(exc: BaseException | None, attributes: Mapping[str, object]) -> str | None:
    value = getattr(exc, "endpoint", None) if exc is not None else None
    if value is None:
        value = _first_kwarg(attributes, _ENDPOINT_KWARGS)
    return None if value is None else str(value)


_qualified_names: dict[type[BaseException], str] = {}
_MAX_CACHED_NAMES: Final = 1024


def _qualified_name(exc_type: type[BaseException]) -> str:
    name = _qualified_names.get(exc_type)
    if name is None:
        module = exc_type.__module__
        name = (
            exc_type.__qualname__ if module == "builtins" else f"{module}.{exc_type.__qualname__}"
        )
        if len(_qualified_names) >= _MAX_CACHED_NAMES:  # classes made on the fly
            _qualified_names.clear()
        _qualified_names[exc_type] = name
    return name


def _already_captured(exc: BaseException) -> bool:
    if getattr(exc, _MARK, None) is not None:
        return True
    # `raise Translated(...) from exc` is the same failure told again: skip it if its
    # cause was captured (and counted as a failure). Implicit __context__ is not followed,
    # it may be an unrelated error raised while handling.
    cause = exc.__cause__
    for _ in range(_MAX_CAUSE_DEPTH):
        if cause is None:
            return False
        mark = getattr(cause, _MARK, None)
        if isinstance(mark, Decision) and mark.reason not in _NOT_FAILURES:
            return True
        cause = cause.__cause__
    return False


def _mark(exc: BaseException, decision: Decision) -> None:
    # A plain try: contextlib.suppress costs more than the setattr it guards (hot path).
    try:  # noqa: SIM105
        setattr(exc, _MARK, decision)
    except (AttributeError, TypeError):  # __slots__ without __dict__
        pass


def exception_context(
    exc: BaseException,
    *,
    feature: str,
    level: str,
    level_forced: bool,
    attributes: Mapping[str, object],
    now: float,
) -> CaptureContext:
    """Read what the policy needs from an exception (attributes, never its message).

    The drops ``decide`` makes before it looks at the fingerprint (already captured,
    expected, a client 4xx) get the short one, feature + class: no endpoint or status
    is looked up for an error that is not going anywhere.
    """
    exc_type = type(exc)
    fingerprint: tuple[str, ...] = (feature, _qualified_name(exc_type))
    already_captured = _already_captured(exc)
    expected = getattr(exc, "expected", False) is True
    response_status = _first_int(exc, _RESPONSE_STATUS_ATTRS)
    cheap_drop = (
        already_captured
        or expected
        or (response_status is not None and 400 <= response_status <= 499 and not level_forced)
    )
    if not cheap_drop:
        endpoint = _endpoint(exc, attributes)
        if endpoint is not None:
            cause_status = _cause_status(exc, attributes)
            if cause_status is not None:
                fingerprint = (*fingerprint, endpoint, str(cause_status))
    return CaptureContext(
        feature=feature,
        level=level,
        fingerprint=fingerprint,
        now=now,
        error_type=exc_type.__qualname__,
        expected=expected,
        response_status=response_status,
        level_forced=level_forced,
        already_captured=already_captured,
    )


def message_context(message: str, *, feature: str, level: str, now: float) -> CaptureContext:
    """A message's fingerprint is its text: keep variable parts in attributes."""
    return CaptureContext(
        feature=feature, level=level, fingerprint=(feature, "message", message), now=now
    )


class _DecisionCounter:
    """The ``app.telemetry.errors`` counter: an observable counter over in-process totals.

    A synchronous ``Counter.add`` costs about 6 us in the OTel SDK (attribute hashing and
    locks), more than a whole dropped decision; here the hot path is a dict increment and
    the SDK reads the totals when it collects. One per meter provider, shared by
    successive policies, so the counter stays monotonic across ``install()`` calls.
    """

    _MAX_SERIES: Final = 2048

    def __init__(self, meter: Meter) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str, str], int] = {}
        meter.create_observable_counter(
            COUNTER_NAME,
            callbacks=[self._observe],
            unit="{decision}",
            description="Error-policy decisions by outcome, reason, level and feature.",
        )

    def add(self, outcome: str, reason: str, level: str, feature: str) -> None:
        key = (outcome, reason, level, feature)
        counts = self._counts
        with self._lock:
            count = counts.get(key)
            if count is None:
                count = 0
                if len(counts) >= self._MAX_SERIES:
                    key = (outcome, reason, level, "_other")
                    count = counts.get(key, 0)
            counts[key] = count + 1

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            counts = list(self._counts.items())
        return [
            Observation(n, {"outcome": o, "reason": r, "level": lv, "feature": f})
            for (o, r, lv, f), n in counts
        ]


_counters: weakref.WeakKeyDictionary[MeterProvider, _DecisionCounter] = weakref.WeakKeyDictionary()
_global_counter: _DecisionCounter | None = None
_counters_lock = threading.Lock()


def _decision_counter(meter_provider: MeterProvider | None) -> _DecisionCounter:
    global _global_counter
    with _counters_lock:
        if meter_provider is None:
            # The API's proxy meter: forwards to whichever provider is set globally.
            if _global_counter is None:
                _global_counter = _DecisionCounter(metrics.get_meter(_METER_NAME))
            return _global_counter
        counter = _counters.get(meter_provider)
        if counter is None:
            counter = _DecisionCounter(meter_provider.get_meter(_METER_NAME))
            _counters[meter_provider] = counter
        return counter


class ErrorPolicy:
    """Decides, enriches, counts and sends. One per process (see ``install``)."""

    def __init__(
        self,
        settings: TelemetrySettings,
        *,
        backend: ErrorBackend,
        budget_store: BudgetStore | None = None,
        meter_provider: MeterProvider | None = None,
        clock: Callable[[], float] = time.monotonic,
        budget_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.budget_store = budget_store
        monthly = settings.error_budget_monthly
        self.budget = Budget(
            monthly,
            max_unsynced=default_max_unsynced(monthly) if budget_store is not None else None,
            clock=budget_clock,
        )
        self._state = PolicyState(
            sending_enabled=settings.sending_enabled,
            dedupe_window=settings.dedupe_window_seconds,
            budget=self.budget,
        )
        self._clock = clock
        self._strict = settings.app_env == "test"
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._counter = _decision_counter(meter_provider)

    # --- capture ----------------------------------------------------------------

    def capture_error(
        self, exc: BaseException, *, feature: str, level: str | None = None, **attributes: object
    ) -> Decision:
        """Decide about ``exc`` and, if it is to be sent, send it. Never raises (but in tests)."""
        return self.capture_error_with(exc, feature, level, attributes)

    def capture_error_with(
        self, exc: BaseException, feature: str, level: str | None, attributes: dict[str, object]
    ) -> Decision:
        """``capture_error`` with the attributes as a dict (no keyword re-packing)."""
        try:
            return self._capture_error(exc, feature, level, attributes)
        except Exception:
            return self._internal_failure("capture_error", level)

    def capture_message(
        self, message: str, *, feature: str, level: str, **attributes: object
    ) -> Decision:
        """Decide about a message (fingerprinted by its text) and maybe send it."""
        try:
            level = normalize_level(level)
            ctx = message_context(message, feature=feature, level=level, now=self._clock())
            with self._lock:
                decision = decide(ctx, self._state)
                self._count(decision)
            self._record(decision, feature, None)
            if decision.outcome != "dropped":
                self._deliver(decision, feature, None, scrub_text(message), attributes)
            return decision
        except Exception:
            return self._internal_failure("capture_message", level)

    def _capture_error(
        self,
        exc: BaseException,
        feature: str,
        level: str | None,
        attributes: dict[str, object],
    ) -> Decision:
        ctx = exception_context(
            exc,
            feature=feature,
            level=_declared_level(exc) if level is None else normalize_level(level),
            level_forced=level is not None,
            attributes=attributes,
            now=self._clock(),
        )
        with self._lock:
            decision = decide(ctx, self._state)
            self._count(decision)
        if decision.reason != "already_captured":
            _mark(exc, decision)
        self._record(decision, feature, exc)
        if decision.outcome != "dropped":
            self._deliver(decision, feature, exc, None, attributes)
        return decision

    def _internal_failure(self, where: str, level: str | None) -> Decision:
        if self._strict:
            raise
        _log.exception("telemetry: %s failed; your code still runs, with less telemetry", where)
        decision = Decision("dropped", "internal_error", level or "error", ())
        with self._lock:
            self._count(decision)
        return decision

    def _count(self, decision: Decision) -> None:
        key = (decision.outcome, decision.reason)
        self._counts[key] = self._counts.get(key, 0) + 1

    def _record(self, decision: Decision, feature: str, exc: BaseException | None) -> None:
        self._counter.add(decision.outcome, decision.reason, decision.level, feature)

        span = trace.get_current_span()
        if not span.is_recording():
            return
        event: dict[str, str | int] = {
            attr.DECISION_OUTCOME: decision.outcome,
            attr.DECISION_REASON: decision.reason,
            attr.ERROR_LEVEL: decision.level,
            attr.FEATURE: feature,
        }
        if exc is not None:
            error_type = type(exc).__qualname__
            event["exception.type"] = error_type
            if decision.reason not in _NOT_FAILURES:
                span.set_status(Status(StatusCode.ERROR, error_type))
                span.set_attribute(attr.ERROR_TYPE, error_type)
        if decision.repeat_count:
            event[attr.ERROR_REPEAT_COUNT] = decision.repeat_count
        span.add_event(SPAN_EVENT_NAME, event)

    def _deliver(
        self,
        decision: Decision,
        feature: str,
        exc: BaseException | None,
        message: str | None,
        attributes: Mapping[str, object],
    ) -> None:
        report = build_report(decision, feature, exc, message, attributes)
        if _tap.observers:
            _tap.emit("error_report", report)
        if decision.outcome == "logged":
            log_report(report, outcome=decision.outcome, reason=decision.reason)
            return
        try:
            self.backend.send(report)
        except Exception:
            if self._strict:
                raise
            with self._lock:
                self._count(Decision("failed", "backend_error", decision.level, ()))
            _log.exception(
                "telemetry: error backend %r failed; your code still runs, with less telemetry",
                self.backend.name,
            )

    # --- Sentry's own events ------------------------------------------------------

    def before_send(self, event: dict[str, Any], hint: Mapping[str, Any]) -> dict[str, Any] | None:
        """Decide about an event raised by a Sentry integration, then enrich and scrub it."""
        exc_info = hint.get("exc_info")
        exc = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) == 3 else None
        tags = event.get("tags")
        feature = str(tags.get("feature") or "unhandled") if isinstance(tags, dict) else "unhandled"
        raw_level = event.get("level")
        level = normalize_level(raw_level) if isinstance(raw_level, str) else "error"
        now = self._clock()
        if isinstance(exc, BaseException):
            ctx = exception_context(
                exc, feature=feature, level=level, level_forced=False, attributes={}, now=now
            )
        else:
            exc = None
            ctx = message_context(_event_message(event), feature=feature, level=level, now=now)
        with self._lock:
            decision = decide(ctx, self._state)
            self._count(decision)
        if exc is not None and decision.reason != "already_captured":
            _mark(exc, decision)
        self._record(decision, feature, exc)
        if decision.outcome != "sent":
            if decision.outcome == "logged":
                _log.log(
                    logging.INFO,
                    "telemetry: Sentry event not sent (%s): feature=%s type=%s",
                    decision.reason,
                    feature,
                    ctx.error_type,
                )
            return None
        clean = scrub_event(event)
        clean_tags = clean.get("tags")
        if not isinstance(clean_tags, dict):
            clean_tags = clean["tags"] = {}
        clean_tags.setdefault("feature", feature)
        if ctx.error_type is not None:
            clean_tags.setdefault("error_type", ctx.error_type)
        if not clean.get("fingerprint"):
            clean["fingerprint"] = list(decision.fingerprint)
        contexts = clean.get("contexts")
        if not isinstance(contexts, dict):
            contexts = clean["contexts"] = {}
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            contexts["trace"] = {
                "trace_id": format(span_context.trace_id, "032x"),
                "span_id": format(span_context.span_id, "016x"),
            }
        contexts["error_policy"] = {"repeat_count": decision.repeat_count, "feature": feature}
        return clean

    # --- status and budget ----------------------------------------------------------

    async def sync_budget(self) -> None:
        """Publish this process's budget use and read everyone's (no-op without a store)."""
        if self.budget_store is None:
            return
        try:
            await self.budget.sync(self.budget_store)
        except Exception:
            if self._strict:
                raise
            _log.warning("telemetry: error budget sync failed; will retry", exc_info=True)

    def status(self) -> PolicyStatus:
        """What the policy is doing: backend, environment, sending, budget, drops by reason."""
        with self._lock:
            counts = dict(self._counts)
        dropped: dict[str, int] = {}
        totals: dict[str, int] = {}
        for (outcome, reason), n in sorted(counts.items()):
            totals[outcome] = totals.get(outcome, 0) + n
            if outcome == "dropped":
                dropped[reason] = n
        return {
            "error_backend": self.backend.name,
            "environment": self.settings.app_env,
            "sending": self.settings.sending_enabled,
            "budget": self.budget.snapshot(),
            "dropped": dropped,
            "sent": totals.get("sent", 0),
            "logged": totals.get("logged", 0),
            "backend_errors": totals.get("failed", 0),
        }

    def flush(self, timeout: float = 2.0) -> None:
        self.backend.flush(timeout)


def _event_message(event: Mapping[str, Any]) -> str:
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        template = logentry.get("message")
        if isinstance(template, str):
            return template
    message = event.get("message")
    return message if isinstance(message, str) else ""


def _tag(value: object) -> str:
    return scrub_text(str(value))[:_MAX_TAG_LENGTH]


def build_report(
    decision: Decision,
    feature: str,
    exc: BaseException | None,
    message: str | None,
    attributes: Mapping[str, object],
) -> ErrorReport:
    """Enrich a decided capture: tags, scrubbed context, trace ids. Nothing raw leaves."""
    tags: dict[str, str] = {"feature": feature}
    for name in _TAG_KWARGS:
        value = attributes.get(name)
        if value is not None:
            tags[name] = _tag(value)
    if exc is not None:
        tags["error_type"] = type(exc).__qualname__
        try:
            text = str(exc)
        except Exception:
            text = "[unprintable]"
        message = (
            f"{type(exc).__qualname__}: {scrub_text(text)}" if text else type(exc).__qualname__
        )
        status_code = _cause_status(exc, attributes)
        if status_code is None:
            status_code = _first_int(exc, _RESPONSE_STATUS_ATTRS)
    else:
        value = _first_kwarg(attributes, _CAUSE_STATUS_KWARGS)
        status_code = value if isinstance(value, int) and not isinstance(value, bool) else None
    if status_code is not None and 100 <= status_code <= 599:
        tags["http_status_class"] = f"{status_code // 100}xx"
    endpoint = _endpoint(exc, attributes)
    if endpoint is not None:
        tags["bolna_endpoint"] = _tag(endpoint)
    context = cast(dict[str, object], scrub(dict(attributes)))
    span_context = trace.get_current_span().get_span_context()
    return ErrorReport(
        feature=feature,
        level=decision.level,
        message=message or "",
        exception=exc,
        tags=tags,
        context=context,
        fingerprint=decision.fingerprint,
        repeat_count=decision.repeat_count,
        trace_id=span_context.trace_id if span_context.is_valid else 0,
        span_id=span_context.span_id if span_context.is_valid else 0,
        trace_flags=int(span_context.trace_flags) if span_context.is_valid else 0,
    )


# --- the process-wide policy -------------------------------------------------------

_policy: ErrorPolicy | None = None
_policy_lock = threading.Lock()


def install(
    settings: TelemetrySettings,
    *,
    backend: ErrorBackend | None = None,
    budget_store: BudgetStore | None = None,
    meter_provider: MeterProvider | None = None,
) -> ErrorPolicy:
    """Make a new policy the process's policy (``configure()`` calls this).

    ``backend`` defaults to ``TELEMETRY_ERROR_BACKEND`` (an unknown name raises
    ValueError listing the valid ones). ``budget_store`` shares the monthly budget
    between processes; call ``sync_budget()`` every few seconds from a worker.
    """
    global _policy
    policy = ErrorPolicy(
        settings,
        backend=backend or build_backend(settings.resolved_error_backend, settings),
        budget_store=budget_store,
        meter_provider=meter_provider,
    )
    with _policy_lock:
        previous, _policy = _policy, policy
    if previous is not None:
        _close(previous)
    return policy


def uninstall(timeout: float = 2.0) -> None:
    """Flush and drop the current policy; captures fall back to the default (logging)."""
    global _policy
    with _policy_lock:
        previous, _policy = _policy, None
    if previous is not None:
        _close(previous, timeout)


def _close(policy: ErrorPolicy, timeout: float = 2.0) -> None:
    try:
        policy.flush(timeout)
        shutdown = getattr(policy.backend, "shutdown", None)
        if callable(shutdown):
            shutdown()
    except Exception:
        _log.warning(
            "telemetry: closing error backend %r failed", policy.backend.name, exc_info=True
        )


def get_policy() -> ErrorPolicy:
    """The installed policy, or a default one that logs (nothing configured yet)."""
    global _policy
    policy = _policy
    if policy is None:
        with _policy_lock:
            if _policy is None:
                _policy = ErrorPolicy(TelemetrySettings(), backend=LogBackend())
            policy = _policy
    return policy


def capture_error(
    exc: BaseException, *, feature: str, level: str | None = None, **attributes: object
) -> Decision:
    """Report ``exc`` for ``feature`` (e.g. "call_initiation") if the policy lets it through.

    ``level`` defaults to ``exc.level`` if the exception declares one, else "error";
    passing it explicitly also reports a 4xx. ``attributes`` become tags
    (``call_source``, ``campaign_id``, ``endpoint``, ``http_status``) and context ids,
    all scrubbed. Returns the decision; never raises (except under ``APP_ENV=test``).
    """
    return (_policy or get_policy()).capture_error_with(exc, feature, level, attributes)


def capture_message(message: str, *, feature: str, level: str, **attributes: object) -> Decision:
    """Report a message; it is its own fingerprint, so keep variable parts in attributes."""
    return (_policy or get_policy()).capture_message(
        message, feature=feature, level=level, **attributes
    )


async def sync_budget() -> None:
    """Share budget use with other processes; the app's worker calls this every few seconds."""
    await get_policy().sync_budget()


def status() -> PolicyStatus:
    """``{error_backend, environment, sending, budget, dropped, ...}`` for /health and the CLI."""
    return get_policy().status()


def sentry_before_send(event: Event, hint: Hint) -> Event | None:
    """sentry-sdk ``before_send``: integration events go through the same policy."""
    if sending_decided_event.get():
        # Built by our SentryBackend: decided and scrubbed already.
        if _tap.observers:
            _tap.emit("sentry_event", event)
        return event
    policy = _policy or get_policy()
    try:
        decided = cast("Event | None", policy.before_send(cast(dict[str, Any], event), hint))
        if decided is not None and _tap.observers:
            _tap.emit("sentry_event", decided)
        return decided
    except Exception:
        if policy._strict:
            raise
        _log.exception("telemetry: before_send failed; the Sentry event is dropped")
        return None


def sentry_before_send_transaction(event: Event, hint: Hint) -> Event | None:
    """sentry-sdk ``before_send_transaction``: transactions are scrubbed like everything else."""
    try:
        scrubbed = cast("Event", scrub_event(cast(dict[str, Any], event)))
    except Exception:
        if (_policy or get_policy())._strict:
            raise
        _log.exception("telemetry: before_send_transaction failed; the transaction is dropped")
        return None
    if _tap.observers:
        _tap.emit("sentry_transaction", scrubbed)
    return scrubbed


# --- report_errors -------------------------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")


class report_errors:
    """Capture (and by default re-raise) any ``Exception`` escaping a block or function.

        @report_errors("campaign_dispatch", campaign_id=cid)
        async def dispatch(...): ...

        with report_errors("webhook", delivery_id=delivery.id):
            ...

    With ``reraise=False`` the exception is swallowed (a decorated function then
    returns None). ``BaseException``s such as cancellation pass through untouched.
    """

    def __init__(
        self, feature: str, *, level: str | None = None, reraise: bool = True, **attributes: object
    ) -> None:
        self.feature = feature
        self.level = level
        self.reraise = reraise
        self.attributes = attributes

    def _capture(self, exc: BaseException | None) -> bool:
        if isinstance(exc, Exception):
            capture_error(exc, feature=self.feature, level=self.level, **self.attributes)
            return not self.reraise
        return False

    def __enter__(self) -> report_errors:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return self._capture(exc)

    async def __aenter__(self) -> report_errors:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return self._capture(exc)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):
            async_fn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                try:
                    return await async_fn(*args, **kwargs)
                except Exception as exc:
                    if not self._capture(exc):
                        raise
                    return None

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not self._capture(exc):
                    raise
                return cast(R, None)

        return wrapper
