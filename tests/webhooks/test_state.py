from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from app.webhooks.state import FINAL, RANK, next_state

HAPPY_PATH = ["queued", "initiated", "ringing", "in-progress", "call-disconnected", "completed"]


def run(statuses, start="queued"):
    current = start
    charges = 0
    for status in statuses:
        transition = next_state(current, status)
        if transition.apply:
            current = transition.status
        charges += transition.charge
    return current, charges


def test_happy_path_ends_completed_with_one_charge():
    assert run(HAPPY_PATH) == ("completed", 1)


def test_late_ringing_never_overwrites_completed():
    transition = next_state("completed", "ringing")
    assert not transition.apply
    assert transition.reason == "after_final"


def test_duplicate_status_is_a_duplicate():
    transition = next_state("ringing", "ringing")
    assert (transition.apply, transition.reason) == (False, "duplicate")
    assert next_state("completed", "completed").reason == "duplicate"


def test_stale_status_is_ignored():
    assert next_state("in-progress", "initiated").reason == "stale"


def test_unknown_status_is_ignored():
    assert next_state("ringing", "teleported").reason == "unknown_status"


def test_busy_is_final_and_never_charges():
    transition = next_state("ringing", "busy")
    assert transition.apply and transition.final and not transition.charge


def test_every_permutation_of_the_happy_path_with_duplicates_charges_exactly_once():
    for order in itertools.permutations(HAPPY_PATH):
        final, charges = run(list(order) + list(order))
        assert final == "completed"
        assert charges == 1


@given(st.lists(st.sampled_from(sorted(RANK)), max_size=30))
def test_any_delivery_sequence_charges_at_most_once_and_final_is_sticky(statuses):
    current = "queued"
    charges = 0
    reached_final = None
    for status in statuses:
        transition = next_state(current, status)
        if transition.apply:
            current = transition.status
        charges += transition.charge
        if reached_final is None and current in FINAL:
            reached_final = current
    assert charges <= 1
    if reached_final is not None:
        assert current == reached_final
