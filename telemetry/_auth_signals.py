"""Security signals from token verification, instead of one error event per bad token.

    record_auth_failure("expired", client=request.client.host)   # on every 401
    record_auth_success()                                        # on every verified token

A single bad token is a 401 and nothing more. What is reported (feature "auth"):

- ``auth failure burst`` (warning): one client failed ``burst_threshold`` times within
  ``window_seconds``; once per client per window, and at most once per
  ``burst_interval_seconds`` over all clients (the others are counted on the next one);
- ``forged or foreign-algorithm token`` (warning): a token with a bad signature or an
  algorithm we do not issue; at most once per ``forged_interval_seconds``;
- ``all token verifications failing (JWT secret mismatch?)`` (error): at least
  ``all_failing_threshold`` bad signatures in a window without one success; at most
  once per ``all_failing_interval_seconds``.

A flood therefore yields a handful of events per hour whatever its size, and the
budget's tiers stop the warnings at 60% of the month anyway. Memory is bounded: at most
``max_clients`` clients are tracked (least recently seen forgotten first).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

__all__ = ["REASONS", "AuthSignals", "record_auth_failure", "record_auth_success"]

REASONS: Final = frozenset(
    {"missing", "malformed", "expired", "bad_signature", "foreign_algorithm", "unknown_user"}
)
_FORGED: Final = frozenset({"bad_signature", "foreign_algorithm"})

BURST_MESSAGE: Final = "auth failure burst"
FORGED_MESSAGE: Final = "forged or foreign-algorithm token"
ALL_FAILING_MESSAGE: Final = "all token verifications failing (JWT secret mismatch?)"


class MessageSink(Protocol):
    def __call__(
        self, message: str, *, feature: str, level: str, **attributes: object
    ) -> object: ...


@dataclass(slots=True)
class _ClientWindow:
    started: float
    failures: int = 0
    alerted: bool = False


def _capture_message(message: str, *, feature: str, level: str, **attributes: object) -> object:
    from telemetry.error_policy import capture_message

    return capture_message(message, feature=feature, level=level, **attributes)


class AuthSignals:
    """Counts verification outcomes and turns patterns into a few messages. Thread-safe."""

    def __init__(
        self,
        *,
        window_seconds: float = 60.0,
        burst_threshold: int = 20,
        burst_interval_seconds: float = 300.0,
        forged_interval_seconds: float = 600.0,
        all_failing_threshold: int = 20,
        all_failing_interval_seconds: float = 3600.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        sink: MessageSink = _capture_message,
    ) -> None:
        self.window_seconds = window_seconds
        self.burst_threshold = burst_threshold
        self.burst_interval_seconds = burst_interval_seconds
        self.forged_interval_seconds = forged_interval_seconds
        self.all_failing_threshold = all_failing_threshold
        self.all_failing_interval_seconds = all_failing_interval_seconds
        self.max_clients = max_clients
        self._clock = clock
        self._sink = sink
        self._lock = threading.Lock()
        self._clients: OrderedDict[str, _ClientWindow] = OrderedDict()
        self._window_started = clock()
        self._window_bad_signatures = 0
        self._window_successes = 0
        self._last_burst_alert: float | None = None
        self._bursts_suppressed = 0
        self._last_forged_alert: float | None = None
        self._forged_suppressed = 0
        self._last_all_failing_alert: float | None = None

    @staticmethod
    def _due(last: float | None, now: float, interval: float) -> bool:
        return last is None or now - last >= interval

    def _roll_window(self, now: float) -> None:
        if now - self._window_started >= self.window_seconds:
            self._window_started = now
            self._window_bad_signatures = 0
            self._window_successes = 0

    def record_success(self) -> None:
        """A token verified: proof that verification as a whole works."""
        with self._lock:
            self._roll_window(self._clock())
            self._window_successes += 1

    def record_failure(self, reason: str, *, client: str) -> None:
        """A token was refused for ``reason`` (one of ``REASONS``) from ``client``."""
        if reason not in REASONS:
            reason = "malformed"
        messages: list[tuple[str, str, dict[str, object]]] = []
        with self._lock:
            now = self._clock()
            self._roll_window(now)
            self._track_client(client, reason, now, messages)
            if reason in _FORGED:
                self._track_forged(reason, now, messages)
            if reason == "bad_signature":
                self._window_bad_signatures += 1
                self._track_all_failing(now, messages)
        # Outside the lock: the sink runs the whole error policy.
        for message, level, attributes in messages:
            self._sink(message, feature="auth", level=level, **attributes)

    def _track_client(
        self, client: str, reason: str, now: float, out: list[tuple[str, str, dict[str, object]]]
    ) -> None:
        window = self._clients.get(client)
        if window is None or now - window.started >= self.window_seconds:
            window = _ClientWindow(started=now)
            self._clients[client] = window
            if len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
        self._clients.move_to_end(client)
        window.failures += 1
        if window.alerted or window.failures < self.burst_threshold:
            return
        window.alerted = True
        if not self._due(self._last_burst_alert, now, self.burst_interval_seconds):
            self._bursts_suppressed += 1
            return
        self._last_burst_alert = now
        out.append(
            (
                BURST_MESSAGE,
                "warning",
                {
                    "client": client,
                    "failures": window.failures,
                    "window_seconds": self.window_seconds,
                    "last_reason": reason,
                    "other_bursts_suppressed": self._bursts_suppressed,
                },
            )
        )
        self._bursts_suppressed = 0

    def _track_forged(
        self, reason: str, now: float, out: list[tuple[str, str, dict[str, object]]]
    ) -> None:
        if not self._due(self._last_forged_alert, now, self.forged_interval_seconds):
            self._forged_suppressed += 1
            return
        self._last_forged_alert = now
        out.append(
            (
                FORGED_MESSAGE,
                "warning",
                {"auth_reason": reason, "suppressed_since_last": self._forged_suppressed},
            )
        )
        self._forged_suppressed = 0

    def _track_all_failing(self, now: float, out: list[tuple[str, str, dict[str, object]]]) -> None:
        if (
            self._window_successes == 0
            and self._window_bad_signatures >= self.all_failing_threshold
            and self._due(self._last_all_failing_alert, now, self.all_failing_interval_seconds)
        ):
            self._last_all_failing_alert = now
            out.append(
                (
                    ALL_FAILING_MESSAGE,
                    "error",
                    {
                        "bad_signatures": self._window_bad_signatures,
                        "window_seconds": self.window_seconds,
                    },
                )
            )

    def tracked_clients(self) -> int:
        return len(self._clients)


_signals = AuthSignals()


def record_auth_failure(reason: str, *, client: str) -> None:
    """Count a refused token; bursts, forgeries and a wrong secret become messages."""
    _signals.record_failure(reason, client=client)


def record_auth_success() -> None:
    """Count a verified token."""
    _signals.record_success()
