from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.webhooks.payload import PayloadError, execution_id_of, loads, parse


def test_parses_current_bolna_shape():
    event = parse(
        {
            "id": "4c7c6a8e-0000-4000-8000-000000000001",
            "status": "completed",
            "conversation_duration": 42.5,
            "transcript": "assistant: hi\nuser: hello",
            "telephony_data": {
                "duration": "43",
                "recording_url": "https://r/1.mp3",
                "hangup_reason": "normal",
            },
        }
    )
    assert event.execution_id == "4c7c6a8e-0000-4000-8000-000000000001"
    assert event.status == "completed"
    assert event.duration_seconds == 42.5
    assert event.recording_url == "https://r/1.mp3"
    assert event.transcript and event.transcript.startswith("assistant")
    assert event.hangup_reason == "normal"


def test_older_shapes_int_ids_strings_and_old_duration_names():
    event = parse({"execution_id": 1234, "status": "Completed", "conversation_time": "61"})
    assert event.execution_id == "1234"
    assert event.status == "completed"
    assert event.duration_seconds == 61.0
    from_telephony = parse({"id": 7, "status": "completed", "telephony_data": {"duration": "12"}})
    assert from_telephony.duration_seconds == 12.0


def test_unusable_numbers_are_none_not_errors():
    event = parse({"id": "x", "status": "completed", "conversation_duration": "n/a"})
    assert event.duration_seconds is None
    assert (
        parse({"id": "x", "status": "busy", "conversation_duration": True}).duration_seconds is None
    )


@pytest.mark.parametrize(
    "body",
    [{"status": "completed"}, {"id": "", "status": "completed"}, {"id": None, "status": "x"}],
)
def test_missing_execution_id_is_rejected_with_a_sentence(body):
    assert execution_id_of(body) is None
    with pytest.raises(PayloadError, match="execution id"):
        parse(body)


def test_missing_status_is_rejected():
    with pytest.raises(PayloadError, match="status"):
        parse({"id": "abc"})


@pytest.mark.parametrize("raw", [b"{not json", b"[1,2]", b"\xff\xfe", b""])
def test_loads_rejects_non_objects(raw):
    with pytest.raises(PayloadError):
        loads(raw)


@given(
    st.dictionaries(
        st.text(max_size=10),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats(allow_nan=True)
            | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=3)
                | st.dictionaries(st.text(max_size=5), children, max_size=3)
            ),
            max_leaves=10,
        ),
        max_size=8,
    )
)
def test_parse_never_fails_with_anything_but_payload_error(body):
    raw = json.dumps(body, allow_nan=True).encode()
    try:
        event = parse(loads(raw))
    except PayloadError:
        return
    assert event.execution_id
    assert event.duration_seconds is None or event.duration_seconds >= 0
