"""Scrubbing: secrets gone at any depth, phone numbers keep at most their last 4 digits."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from telemetry.scrubbing import (
    MAX_STRING_LENGTH,
    REDACTED,
    scrub,
    scrub_attributes,
    scrub_attributes_if_changed,
    scrub_event,
    scrub_text,
)

PHONE = "+919876543210"
JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiIsInBob25lIjoiKzkxOTg3In0.c2lnbmF0dXJl"

SECRET_KEYS = [
    "password",
    "Password",
    "user_password",
    "passwd",
    "X-Api-Key",
    "api_key",
    "apiKey",
    "apikey",
    "access_token",
    "accessToken",
    "refresh_token",
    "Authorization",
    "http.request.header.authorization",
    "client_secret",
    "Cookie",
    "set-cookie",
    "jwt",
    "JWT_TOKEN",
    "session",
    "sessionId",
    "SENTRY_DSN",
    "private_key",
]
DATE_LIKE = re.compile(r"(19|20)\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])")


def digits_of(value: object) -> str:
    return re.sub(r"[^0-9]", "", json.dumps(value, default=str))


# --- examples ------------------------------------------------------------------------


def test_phone_numbers_keep_only_their_last_four_digits() -> None:
    assert scrub_text(f"calling {PHONE} now") == "calling +********3210 now"
    assert scrub_text("ph: 98765 43210") == "ph: ***** *3210"
    assert scrub_text("(+91) 98765-43210.") == "(+**) *****-*3210."
    assert scrub_text("to=9876543210&from=9876543211") == "to=******3210&from=******3211"
    assert scrub_text("user_919876543210") == "user_********3210"


def test_ids_dates_and_short_numbers_are_left_alone() -> None:
    for text in (
        "call 123e4567-e89b-12d3-a456-426614174000 failed",
        "trace 4bf92f3577b34da6a3ce929d0e0e4736",
        "at 2025-11-05T10:20:30Z and 2025-11-05 10:20",
        "HTTP 503 after 3 attempts, 1500 ms",
        "ip 192.168.100.200, version 1.45.2",
    ):
        assert scrub_text(text) == text


def test_tokens_inside_strings_are_redacted() -> None:
    assert scrub_text(f"Authorization: Bearer {JWT}") == f"Authorization: {REDACTED}"
    assert scrub_text("sent bearer abc.def-ghi") == f"sent bearer {REDACTED}"
    assert scrub_text(f"token {JWT} rejected") == f"token {REDACTED} rejected"
    assert scrub_text("GET /x?token=abc123&page=2") == f"GET /x?token={REDACTED}&page=2"
    assert scrub_text('{"password": "hunter2", "name": "ann"}') == (
        f'{{"password": "{REDACTED}", "name": "ann"}}'
    )
    assert scrub_text("https://user:pa55w0rd@db.internal/x") == (
        f"https://user:{REDACTED}@db.internal/x"
    )
    assert scrub_text("X-Api-Key=sk_live_1 accessToken: 'zzz'") == (
        f"X-Api-Key={REDACTED} accessToken: '{REDACTED}'"
    )


def test_keys_that_merely_contain_a_secret_word_are_not_secrets() -> None:
    text = "tokens_used: 1234, idempotency_key=call-42, app.auth.result=ok"
    assert scrub_text(text) == text
    data = {"tokens_used": 12, "idempotency_key": "call-42", "app.auth.result": "expired"}
    assert scrub(data) == data


def test_secret_keys_are_redacted_at_any_depth_without_mutating_the_input() -> None:
    payload = {
        "user": {"Password": "x", "accessToken": "y", "profile": [{"api_key": "z"}]},
        "headers": ({"Cookie": "a=b"}, {"X-Trace": "ok"}),
        "count": 3,
    }
    original = json.dumps(payload)
    assert scrub(payload) == {
        "user": {"Password": REDACTED, "accessToken": REDACTED, "profile": [{"api_key": REDACTED}]},
        "headers": ({"Cookie": REDACTED}, {"X-Trace": "ok"}),
        "count": 3,
    }
    assert json.dumps(payload) == original


def test_transcripts_keep_only_their_length_and_long_strings_are_cut() -> None:
    assert scrub({"transcript": "hello, my number is 98765 43210"}) == {
        "transcript": "[transcript: 31 chars]"
    }
    turns = [{"role": "user", "text": "hi"}, {"role": "agent", "text": "hello"}]
    assert scrub({"transcript": turns}) == {"transcript": "[transcript: 16 chars]"}
    assert scrub({"app.transcript.length": 31}) == {"app.transcript.length": 31}
    body = "x" * 5000
    cut = scrub_text(body)
    assert cut.startswith("x" * MAX_STRING_LENGTH)
    assert cut.endswith("…[truncated 3000 chars]")


def test_a_phone_number_straddling_the_cut_is_masked_not_half_kept() -> None:
    body = "x" * (MAX_STRING_LENGTH - 6) + " " + PHONE + " tail" * 100
    out = scrub_text(body)
    assert "919876" not in out and "98765" not in out
    assert len(out) < len(body)


def test_integers_that_look_like_phone_numbers_are_masked_but_timestamps_are_not() -> None:
    assert scrub(919876543210) == "********3210"
    assert scrub({"to": 9876543210}) == {"to": "******3210"}
    assert scrub(1730800000) == 1730800000  # Unix seconds
    assert scrub(1730800000123) == 1730800000123  # Unix milliseconds
    assert scrub(123456) == 123456
    assert scrub(True) is True


def test_scrub_attributes_keeps_otel_types_and_masks_phone_like_ints() -> None:
    attrs = {
        "http.route": "/calls",
        "http.response.status_code": 201,
        "app.call.id": 42,
        "app.call.phone": PHONE,
        "app.contact.number": 919876543210,
        "app.numbers": (1, 919876543210),
        "http.request.header.authorization": ("Bearer abc",),
        "app.transcript": "hello there",
        "ratio": 0.5,
        "flag": True,
    }
    assert scrub_attributes(attrs) == {
        "http.route": "/calls",
        "http.response.status_code": 201,
        "app.call.id": 42,
        "app.call.phone": "+********3210",
        "app.contact.number": "********3210",
        "app.numbers": ("1", "********3210"),  # homogeneous, as OTel requires
        "http.request.header.authorization": REDACTED,
        "app.transcript": "[transcript: 11 chars]",
        "ratio": 0.5,
        "flag": True,
    }


def test_scrub_event_keeps_sentry_ids_and_scrubs_everything_else() -> None:
    event: dict[str, Any] = {
        "event_id": "9f0e4b2c3d1a4e5f8a7b6c5d4e3f2a1b",
        "timestamp": 1730800000.123456,
        "contexts": {"trace": {"trace_id": "1234567890123456" * 2, "span_id": "1234567890123456"}},
        "exception": {"values": [{"value": f"failed for {PHONE}"}]},
        "request": {"headers": {"Authorization": "Bearer x"}, "data": {"phone": PHONE}},
    }
    out = scrub_event(event)
    assert out["event_id"] == event["event_id"]
    assert out["contexts"]["trace"] == event["contexts"]["trace"]
    assert out["exception"]["values"][0]["value"] == "failed for +********3210"
    assert out["request"]["headers"]["Authorization"] == REDACTED
    assert out["request"]["data"]["phone"] == "+********3210"


# --- properties ------------------------------------------------------------------------

phone_digits = st.from_regex(r"[1-9][0-9]{6,14}", fullmatch=True)
# Context text around a phone number: no digits, and it meets the number at a separator
# (a digit run glued to letters is, by design, not a phone number).
context_text = st.text(
    alphabet=st.characters(blacklist_categories=("Nd", "Cs"), max_codepoint=0x2FF),
    max_size=30,
)
separator = st.sampled_from([" ", ":", "=", ",", "\n", "(", "'", '"', "/", "<"])


@st.composite
def formatted_phone(draw: st.DrawFn) -> tuple[str, str]:
    digits = draw(phone_digits)
    style = draw(st.sampled_from(["plain", "e164", "grouped"]))
    if style == "plain":
        return digits, digits
    if style == "e164":
        return digits, "+" + digits
    groups, rest = [], digits
    while rest:
        size = draw(st.integers(2, 5))
        groups.append(rest[:size])
        rest = rest[size:]
    sep = draw(st.sampled_from([" ", "-"]))
    text = sep.join(groups)
    if draw(st.booleans()):
        text = f"({groups[0]}) " + sep.join(groups[1:]) if len(groups) > 1 else text
    if draw(st.booleans()):
        text = "+" + text
    return digits, text


@settings(max_examples=300, deadline=None)
@given(formatted_phone(), context_text, separator, separator, context_text)
def test_no_phone_number_survives_beyond_its_last_four_digits(
    phone: tuple[str, str], before: str, sep_before: str, sep_after: str, after: str
) -> None:
    digits, text = phone
    assume(not DATE_LIKE.fullmatch(text))  # documented limit: dates are kept
    out = scrub_text(before + sep_before + text + sep_after + after)
    # The context has no digits, so any digit left came from the number: at most its
    # last four (none at all if the number sat in a redacted "token=..." value).
    assert re.sub(r"[^0-9]", "", out) in ("", digits[-4:])


@settings(max_examples=200, deadline=None)
@given(phone_digits.map(int))
def test_no_phone_like_integer_survives(number: int) -> None:
    digits = str(number)
    out = scrub_attributes({"value": number})["value"]
    if out == number:  # only timestamps and numbers too short to be E.164 mobiles pass
        assert len(digits) < 10 or (digits[0] == "1" and len(digits) in (10, 13))
    else:
        assert re.sub(r"[^0-9]", "", str(out)) == digits[-4:]


plain_text = st.text(alphabet="abcdefghij klmnop", max_size=12)
plain_key = st.text(alphabet="abcdefghijklmnop_", min_size=1, max_size=8).filter(
    lambda k: k not in ("dsn", "pwd", "jwt")
)
secret_value = st.text(alphabet="abcdefgh", min_size=1, max_size=6).map(lambda s: f"S3cr3t-{s}")
secret_leaf = st.tuples(
    st.sampled_from(SECRET_KEYS),
    st.one_of(
        secret_value, st.lists(secret_value, max_size=3), st.dictionaries(plain_key, secret_value)
    ),
).map(lambda kv: {kv[0]: kv[1]})
tree = st.recursive(
    st.one_of(plain_text, st.integers(-1000, 1000), st.none(), secret_leaf),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(plain_key, children, max_size=4),
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(tree, st.lists(plain_key, max_size=3))
def test_no_secret_value_survives_at_any_depth(value: object, path: list[str]) -> None:
    for key in path:  # bury the whole tree a little deeper still
        value = {key: value}
    assert "S3cr3t" not in json.dumps(scrub(value), default=str)
    assert "S3cr3t" not in json.dumps(scrub_event({"extra": value}), default=str)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_scrubbing_text_twice_changes_nothing_more(text: str) -> None:
    once = scrub_text(text)
    assert scrub_text(once) == once


@settings(max_examples=200, deadline=None)
@given(formatted_phone(), plain_key)
def test_phone_numbers_in_nested_values_and_attributes_are_masked(
    phone: tuple[str, str], key: str
) -> None:
    digits, text = phone
    assume(not DATE_LIKE.fullmatch(text))
    nested = {"a": [{key: f"call {text} now"}], "b": (text,)}
    assert digits_of(scrub(nested)).replace(digits[-4:], "") == ""
    attrs = scrub_attributes({f"app.{key}": text, "list": (text, "x")})
    assert digits_of(attrs).replace(digits[-4:], "") == ""


def test_attributes_with_nothing_to_scrub_are_not_copied() -> None:
    statement = "SELECT calls.id, calls.status FROM calls WHERE calls.idempotency_key = ?"
    clean = {"db.statement": statement, "app.call.id": 42, "ok": True, "ids": ("a", "b")}
    assert scrub_attributes_if_changed(clean) is None
    assert scrub_attributes(clean) == clean
    dirty = {**clean, "to": PHONE, "password": "x"}
    changed = scrub_attributes_if_changed(dirty)
    assert changed is not None
    assert list(changed) == list(dirty)  # same keys, same order
    assert changed["to"] == "+********3210" and changed["password"] == REDACTED
    assert changed["db.statement"] == statement


def test_a_long_text_seen_again_is_scrubbed_the_same() -> None:
    text = f"calling {PHONE} with Authorization: Bearer abc.def.ghi " + "x" * 80
    first = scrub_text(text)
    assert first == scrub_text(text) == scrub_text(str(text))
    assert "9876543210" not in first and "abc.def.ghi" not in first
