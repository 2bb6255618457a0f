"""Remove secrets and personal data before anything leaves the process.

One set of rules for span attributes, error events, log lines and Sentry's own events.
Pure functions, no I/O, cheap when there is nothing to scrub.

    scrub({"password": "x", "to": "+919876543210"})
    # {'password': '[REDACTED]', 'to': '+********3210'}
    scrub_text("Authorization: Bearer eyJhbGciOi...")   # 'Authorization: [REDACTED]'
    scrub_attributes(span.attributes)                    # a scrubbed copy
    scrub_attributes_if_changed(span.attributes)         # None if nothing to scrub

Rules:

- a key naming a secret (password, token, api_key, authorization, secret, cookie, jwt,
  session, dsn, ...; any case, ``-``/``_``/``.``/camelCase separated, as a whole word of
  the key: ``refresh_token``, ``X-Api-Key``, ``http.request.header.authorization``)
  has its value replaced by ``[REDACTED]`` at any depth;
- a ``transcript`` key keeps only the length: ``[transcript: N chars]``;
- inside strings: phone numbers (7-15 digits, E.164 or grouped by spaces, dashes,
  parentheses) keep only their last 4 digits; JWTs, ``Bearer <token>``,
  ``password=...``-style pairs and URL credentials are redacted; UUIDs and ISO dates
  are left alone (they look like digit runs but are not phone numbers);
- integers of 10-15 digits are masked like phone numbers, except 10- and 13-digit ones
  starting with 1 (Unix seconds and milliseconds; no phone number has that shape);
- strings longer than ``MAX_STRING_LENGTH`` are cut, with a marker giving the cut length.

Known limits: a digit run glued to letters (``ph9876543210``) is not treated as a phone
number (that is what keeps hex ids intact), nor is a phone number written exactly like a
calendar date (``2019-12-31``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from itertools import islice
from typing import Any, Final

__all__ = [
    "MAX_STRING_LENGTH",
    "REDACTED",
    "scrub",
    "scrub_attributes",
    "scrub_attributes_if_changed",
    "scrub_event",
    "scrub_text",
]

REDACTED: Final = "[REDACTED]"
MAX_STRING_LENGTH: Final = 2000
_MAX_DEPTH: Final = 32
# Long strings are scrubbed on a slightly longer prefix than is kept, so that a phone
# number or token straddling the cut is recognised whole and masked, never half-kept.
_SCRUB_MARGIN: Final = 256

# Whole words of a key (after splitting on separators and camelCase) naming a secret.
_SECRET_WORDS: Final = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "token",
        "apikey",
        "authorization",
        "secret",
        "cookie",
        "cookies",
        "jwt",
        "session",
        "sessionid",
        "dsn",
        "credentials",
    }
)
# Two-word secrets (joined with "_" after normalisation).
_SECRET_PAIRS: Final = frozenset({"api_key", "private_key", "access_key", "secret_key"})
_TRANSCRIPT_WORDS: Final = frozenset({"transcript", "transcripts"})

_PLAIN: Final = 0
_SECRET: Final = 1
_TRANSCRIPT: Final = 2

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_KEY_SPLIT = re.compile(r"[^a-z0-9]+")

# Sentry's own ids, timings and frame positions: scalar values under these keys stay
# byte-exact (a trace id or a sample_rand can look like a digit run).
_EVENT_VERBATIM_KEYS: Final = frozenset(
    {
        "event_id",
        "trace_id",
        "span_id",
        "parent_span_id",
        "timestamp",
        "start_timestamp",
        "lineno",
        "colno",
        "sample_rate",
        "sample_rand",
    }
)

# Each text pattern runs only when a cheap substring test says it might match, so
# ordinary text costs a few ``in`` checks and one digit count.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)?")
_BEARER = re.compile(r"((?i:bearer)[ \t]+)[A-Za-z0-9._~+/=*-]+")
# key=value / key: value / "key": "value"; the key is judged by the same rule as dict keys.
_KEY_VALUE = re.compile(
    r"""(?<![A-Za-z0-9_.-])(["']?[A-Za-z_][A-Za-z0-9_.-]*["']?[ \t]*[=:][ \t]*["']?)"""
    r"""((?:[Bb]earer[ \t]+|[Bb]asic[ \t]+)?[^\s&,;"'<>]+)"""
)
_KEY_VALUE_HINTS: Final = (
    "pass", "pwd", "token", "key", "secret", "jwt", "auth", "session", "dsn", "cookie", "credential"
)  # fmt: skip
_URL_CREDENTIALS = re.compile(r"(//[^/\s:@]+:)[^/\s@]+@")
_PHONE = re.compile(
    r"""
    (?P<keep>  # UUIDs and ISO dates are digit runs, not phone numbers
        (?<![A-Za-z0-9])[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}
        (?![A-Za-z0-9])
      | (?<![0-9])(?:19|20)[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])
        (?:[T\ ][0-2][0-9]:[0-5][0-9](?::[0-5][0-9](?:\.[0-9]+)?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?
        (?![0-9]|[\ -][0-9])
    )
    | (?<![A-Za-z0-9])\+?\(?[0-9](?:[\ ()-]{0,3}[0-9]){6,14}(?![A-Za-z0-9])
    """,
    re.VERBOSE,
)
_DIGITS: Final = "0123456789"
_STAR_DIGITS: Final = str.maketrans(_DIGITS, "*" * 10)


@lru_cache(maxsize=4096)
def _key_class(key: str) -> int:
    words = _KEY_SPLIT.split(_CAMEL.sub("_", key).lower())
    for i, word in enumerate(words):
        if word in _SECRET_WORDS:
            return _SECRET
        if i and f"{words[i - 1]}_{word}" in _SECRET_PAIRS:
            return _SECRET
    if _TRANSCRIPT_WORDS.intersection(words):
        return _TRANSCRIPT
    return _PLAIN


def _mask_digits(text: str) -> str:
    """Star every digit of ``text`` but the last four; keep ``+`` and separators."""
    kept, cut = 0, len(text)
    while cut > 0 and kept < 4:
        cut -= 1
        if "0" <= text[cut] <= "9":
            kept += 1
    return text[:cut].translate(_STAR_DIGITS) + text[cut:]


def _mask_phone(match: re.Match[str]) -> str:
    if match.lastgroup == "keep":
        return match.group()
    return _mask_digits(match.group())


def _redact_secret_value(match: re.Match[str]) -> str:
    label = match.group(1)
    if _key_class(label.strip("\"' \t=:")) == _SECRET:
        return label + REDACTED
    return match.group()


def _scrub_text(s: str) -> str:
    if "eyJ" in s:
        s = _JWT.sub(REDACTED, s)
    # Phone numbers before key=value and bearer values: those stop at a space and would
    # otherwise leave the rest of a grouped number ("token: 98765 43210") unmasked.
    if sum(map(s.count, _DIGITS)) >= 7:
        s = _PHONE.sub(_mask_phone, s)
    lowered = s.lower()
    if "bearer" in lowered:
        s = _BEARER.sub(r"\1" + REDACTED, s)
    if ("=" in s or ":" in s) and any(hint in lowered for hint in _KEY_VALUE_HINTS):
        s = _KEY_VALUE.sub(_redact_secret_value, s)
    if "@" in s:
        s = _URL_CREDENTIALS.sub(r"\1" + REDACTED + "@", s)
    return s


# Long strings that repeat verbatim (SQL statements: SQLAlchemy caches the compiled text)
# are scrubbed once: a dict lookup on a cached hash instead of a dozen scans.
_CACHED_TEXT_MIN: Final = 64
_scrub_text_cached: Final = lru_cache(maxsize=512)(_scrub_text)


def scrub_text(s: str, max_length: int = MAX_STRING_LENGTH) -> str:
    """Mask phone numbers and redact tokens inside ``s``; cut it to ``max_length``."""
    if len(s) < 7:  # too short to hold a phone number, a JWT or "token=x"
        return s
    if len(s) <= max_length:
        return _scrub_text_cached(s) if len(s) >= _CACHED_TEXT_MIN else _scrub_text(s)
    head = _scrub_text(s[: max_length + _SCRUB_MARGIN])
    return f"{head[:max_length]}…[truncated {len(s) - max_length} chars]"


def _int_looks_like_phone(value: int) -> bool:
    if not 1_000_000_000 <= value < 1_000_000_000_000_000:
        return False
    digits = str(value)
    # Unix seconds (10 digits) and milliseconds (13 digits) start with 1; no E.164
    # number has either shape (+1 numbers have 11 digits, national ones never start with 1).
    return not (digits[0] == "1" and len(digits) in (10, 13))


def _scrub_int(value: int) -> int | str:
    if _int_looks_like_phone(value):
        return _mask_digits(str(value))
    return value


def _text_length(value: object, depth: int = 0) -> int:
    """Characters of text in ``value``: a string, or the strings inside turns/segments."""
    if isinstance(value, str):
        return len(value)
    if depth >= _MAX_DEPTH:
        return 0
    if isinstance(value, Mapping):
        return sum(_text_length(v, depth + 1) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_text_length(v, depth + 1) for v in value)
    return 0


def _transcript_summary(value: object) -> str:
    return f"[transcript: {_text_length(value)} chars]"


def _scrub(value: object, key: str | None, depth: int, verbatim: frozenset[str]) -> object:
    if key is not None:
        if key in verbatim and (value is None or isinstance(value, str | int | float)):
            return value
        kind = _key_class(key)
        if kind == _SECRET:
            return REDACTED
        if kind == _TRANSCRIPT and not isinstance(value, bool | int | float) and value:
            return _transcript_summary(value)
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, int):
        return _scrub_int(value)
    if depth >= _MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, Mapping):
        return {k: _scrub(v, str(k), depth + 1, verbatim) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_scrub(v, None, depth + 1, verbatim) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, bytes | bytearray):
        return f"[{len(value)} bytes]"
    # Anything else (UUID, datetime, a model...) is exported as its text, scrubbed.
    try:
        text = str(value)
    except Exception:
        return f"[unprintable {type(value).__name__}]"
    return scrub_text(text)


def scrub(value: object, key: str | None = None) -> object:
    """Return ``value`` with secrets, phone numbers and transcripts removed, recursively.

    ``key`` is the name ``value`` is stored under, if any: it decides whether the whole
    value is a secret or a transcript. Dicts, lists and tuples are copied, never mutated.
    """
    return _scrub(value, key, 0, frozenset())


def scrub_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """Scrub a Sentry event or transaction, leaving Sentry's own ids and timings intact."""
    return {k: _scrub(v, k, 1, _EVENT_VERBATIM_KEYS) for k, v in event.items()}


def _scrub_sequence(values: list[object] | tuple[object, ...]) -> tuple[object, ...]:
    items = [_scrub_attribute("", v) for v in values]
    # OpenTelemetry wants homogeneous sequences: a masked int turns them all into str.
    if any(
        isinstance(new, str) and not isinstance(old, str)
        for new, old in zip(items, values, strict=True)
    ):
        return tuple(str(v) for v in items)
    return tuple(items)


def _scrub_attribute(key: str, value: object) -> object:
    kind = _key_class(key)
    if kind == _SECRET:
        return REDACTED
    if kind == _TRANSCRIPT and value and not isinstance(value, bool | int | float):
        return _transcript_summary(value)
    if isinstance(value, str):
        return scrub_text(value)
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return _scrub_int(value)
    if isinstance(value, list | tuple):
        return _scrub_sequence(value)
    return _scrub(value, None, 0, frozenset())  # log records allow maps and bytes too


def _scrub_attribute_value(key: str, value: object) -> object:
    # The common case (short strings, small numbers, ordinary keys) costs one cached key
    # lookup and one type check.
    if _key_class(key) != _PLAIN:
        return _scrub_attribute(key, value)
    if isinstance(value, str):
        return scrub_text(value) if len(value) >= 7 else value
    if isinstance(value, bool | float) or value is None:
        return value
    if isinstance(value, int):
        return _scrub_int(value) if value >= 1_000_000_000 else value
    return _scrub_attribute(key, value)


def scrub_attributes_if_changed(attrs: Mapping[str, object]) -> dict[str, Any] | None:
    """The scrubbed attributes, or None when scrubbing changes nothing (no copy made).

    Most spans carry nothing to scrub: the span processor then exports them as they are.
    """
    out: dict[str, Any] | None = None
    for index, (key, value) in enumerate(attrs.items()):
        clean = _scrub_attribute_value(key, value)
        if out is None:
            if clean is value or (type(clean) is type(value) and clean == value):
                continue
            out = dict(islice(attrs.items(), index))  # the unchanged ones before it
        out[key] = clean
    return out


def scrub_attributes(attrs: Mapping[str, object]) -> dict[str, Any]:
    """Scrub OpenTelemetry span/log attributes; values keep their OTel-valid types."""
    clean = scrub_attributes_if_changed(attrs)
    return dict(attrs) if clean is None else clean
