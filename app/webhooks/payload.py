"""Tolerant parsing of Bolna's execution payloads into one typed object (pure, no I/O).

Bolna's payloads vary: ids as int or UUID (`id` or older `execution_id`), numbers as
strings, `conversation_duration` or older `conversation_time`, recording under
`telephony_data` or at the top level. `parse` accepts all of them and rejects only a
payload it cannot attribute to an execution.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from app.models import EXECUTION_ID_CHARS, HANGUP_REASON_CHARS


class PayloadError(ValueError):
    """The body cannot be used at all; the message says why, in one sentence."""


@dataclass(frozen=True)
class BolnaEvent:
    execution_id: str
    status: str
    duration_seconds: float | None
    transcript: str | None
    recording_url: str | None
    error_message: str | None
    hangup_reason: str | None


def _number(value: Any) -> float | None:
    """A finite number, or None: NaN and infinities (JSON allows them) bill nothing."""
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):
            number = float(value.strip())
        else:
            return None
    except (ValueError, OverflowError):  # OverflowError: an int beyond float range
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def loads(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError("The webhook body is not valid JSON.") from exc
    except RecursionError as exc:
        raise PayloadError("The webhook body is nested too deeply to read.") from exc
    except ValueError as exc:  # an integer beyond Python's 4300-digit conversion limit
        raise PayloadError("The webhook body holds a number too long to read.") from exc
    if not isinstance(body, dict):
        raise PayloadError("The webhook body must be a JSON object.")
    return body


def execution_id_of(body: dict[str, Any]) -> str | None:
    """The first of `id`, `execution_id` that is a usable id: a string or an integer,
    non-empty and short enough for the column. Objects, lists and floats are not ids."""
    for key in ("id", "execution_id"):
        value = body.get(key)
        if isinstance(value, bool) or not isinstance(value, str | int):
            continue
        text = str(value).strip()
        if text and len(text) <= EXECUTION_ID_CHARS:
            return text
    return None


def parse(body: dict[str, Any]) -> BolnaEvent:
    execution_id = execution_id_of(body)
    if execution_id is None:
        raise PayloadError("The webhook payload has no execution id (`id` or `execution_id`).")
    status = _text(body.get("status"))
    if status is None:
        raise PayloadError("The webhook payload has no `status`.")
    telephony = body.get("telephony_data")
    telephony = telephony if isinstance(telephony, dict) else {}
    duration = _number(body.get("conversation_duration"))
    if duration is None:
        duration = _number(body.get("conversation_time"))
    if duration is None:
        duration = _number(telephony.get("duration"))
    hangup = _text(telephony.get("hangup_reason"))
    return BolnaEvent(
        execution_id=execution_id,
        status=status.lower(),
        duration_seconds=duration if duration is None else max(duration, 0.0),
        transcript=_text(body.get("transcript")),
        recording_url=_text(telephony.get("recording_url")) or _text(body.get("recording_url")),
        error_message=_text(body.get("error_message")),
        hangup_reason=hangup[:HANGUP_REASON_CHARS] if hangup else None,
    )
