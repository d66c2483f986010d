"""Tags (the DCB specification's): strings on an event, matched by a filter's tag steps beside
event types and payload predicates, and guarded like them.

What users rely on: an event's tags read back as given; a tag filter finds exactly the events
that carry its tags, in queries, reads, subscriptions and imports; and a decision guarded by
tags has one winner under concurrency (one seat, one holder).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from delays import in_thread, install_delay
from dynamic_streams import (
    ConcurrencyConflictError,
    Event,
    EventStore,
    IntegrityError,
    InvalidInputError,
    P,
    build_event_filter,
)


def tagged(*tags: str) -> Any:
    return build_event_filter().matching().all_tags_of(*tags).finalize()


def test_an_event_keeps_its_tags_in_order_each_once() -> None:
    e = Event("StudentJoinedCourse", {}, tags=["course:c1", "student:s1", "course:c1"])
    assert e.tags == ("course:c1", "student:s1")
    assert Event("T", {}).tags == ()
    assert Event("T", {}, tags=iter(["a"])).tags == ("a",)


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ("course:c1", "not one str"),
        ([""], "must not be empty"),
        ([1], "tags must be str"),
        (["a\0"], "NUL"),
    ],
)
def test_bad_tags_are_rejected_when_the_event_is_built(tags: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Event("T", {}, tags=tags)


def test_tag_filters_are_sanitised_and_compare_by_meaning() -> None:
    start = build_event_filter().matching()
    assert start.all_tags_of("b", "a", "b").finalize() == start.all_tags_of("a", "b").finalize()
    # One tag means the same under ANY and ALL.
    assert start.any_tag_of("a").finalize() == start.all_tags_of("a").finalize()
    assert start.any_tag_of("a", "b").finalize() != start.all_tags_of("a", "b").finalize()
    # A tag is not a payload field of the same text.
    assert start.all_tags_of("a").finalize() != start.all_predicates_of(P("tag", "a")).finalize()
    assert (
        start.all_tags_of("a").finalize().hash() != start.any_event_type_of("a").finalize().hash()
    )
    # Filters without tags serialise (and so key their snapshots) as before tags existed.
    assert "tags" not in start.any_event_type_of("A").finalize().canonical_json()
    with pytest.raises(InvalidInputError, match="at least one tag"):
        start.all_tags_of().finalize()
    with pytest.raises(InvalidInputError, match="must not be empty"):
        start.any_tag_of("a", "").finalize()
    with pytest.raises(InvalidInputError, match="tags must be str"):
        start.any_event_type_of("A").and_all_tags_of(["a"])  # type: ignore[arg-type]


def test_an_append_guarded_by_tags_conflicts_only_with_events_that_carry_them(
    store: Any,
) -> None:
    course = tagged("course:c1")
    store.append(course, 0, Event("CourseRegistered", {"places": 1}, tags=["course:c1"]))
    seen = store.query(course).max_sequence_number
    # Another course's event, and an untagged one, leave the decision's boundary alone.
    store.append_unconditionally(
        Event("CourseRegistered", {}, tags=["course:c2"]), Event("Untagged", {"course": "c1"})
    )
    joined = Event("StudentJoinedCourse", {}, tags=["course:c1", "student:s1"])
    [n] = store.append(course, seen, joined)
    # The same expectation again: the event just stored carries the tag.
    with pytest.raises(ConcurrencyConflictError):
        store.append(course, seen, Event("StudentJoinedCourse", {}, tags=["course:c1"]))
    # Any of the tags, and a type narrowing them, guard alike.
    either = build_event_filter().matching().any_tag_of("student:s1", "student:s9").finalize()
    with pytest.raises(ConcurrencyConflictError):
        store.append(either, seen, Event("X", {}))
    other_type = (
        build_event_filter()
        .matching()
        .any_event_type_of("CourseRegistered")
        .and_all_tags_of("course:c1")
        .finalize()
    )
    store.append(other_type, seen, Event("X", {}))
    [read_back] = store.query(tagged("student:s1")).events
    assert (read_back.sequence_number, read_back.tags) == (n, ("course:c1", "student:s1"))


def test_reads_and_subscriptions_follow_tags(event_store: EventStore) -> None:
    for i in range(30):
        tags = [f"course:c{i % 3}"] + (["special"] if i % 5 == 0 else [])
        event_store.append_unconditionally(Event("Joined", {"i": i}, tags=tags))
    course_0 = (
        build_event_filter().matching().any_event_type_of("Joined").and_all_tags_of("course:c0")
    )
    special = course_0.and_any_predicate_of(P("i", 0), P("i", 15)).finalize()
    assert [e.payload["i"] for e in event_store.read(course_0.finalize(), batch_size=4)] == list(
        range(0, 30, 3)
    )
    assert [e.payload["i"] for e in event_store.query(special)] == [0, 15]
    both = tagged("special", "course:c0")
    with event_store.subscribe(both, after=0) as sub:
        assert [e.payload["i"] for e in (next(sub), next(sub))] == [0, 15]
        event_store.append_unconditionally(Event("Joined", {"i": 99}, tags=["course:c0"]))
        event_store.append_unconditionally(
            Event("Joined", {"i": 100}, tags=["special", "course:c0"])
        )
        assert next(sub).payload["i"] == 100


def test_imported_events_are_found_by_their_tags(event_store: EventStore) -> None:
    history = (Event("Joined", {"i": i}, tags=[f"course:c{i % 7}"]) for i in range(700))
    assert event_store.import_events(history, batch_size=256) == 700
    found = event_store.query(tagged("course:c3"))
    assert [e.payload["i"] for e in found] == list(range(3, 700, 7))
    assert {e.tags for e in found} == {("course:c3",)}
    with pytest.raises(ConcurrencyConflictError):
        event_store.append(tagged("course:c3"), found.events[0].sequence_number, Event("X", {}))


def test_a_retried_id_must_carry_the_same_tags(store: Any) -> None:
    a = uuid.uuid4()
    [n] = store.append_unconditionally(Event("Joined", {}, id=a, tags=["x", "y"]))
    assert store.append_unconditionally(Event("Joined", {}, id=a, tags=["x", "y"])) == [n]
    with pytest.raises(IntegrityError, match="tags"):
        store.append_unconditionally(Event("Joined", {}, id=a, tags=["y", "x"]))


def test_a_decision_by_tag_waits_for_a_writer_of_a_tagged_event(
    event_store: EventStore, event_store_dsn: str, event_store_table: str
) -> None:
    """The commit-order hole, closed for tags: event 1 carries the tag and commits last; a
    decision that read only event 2 would append past it."""
    install_delay(event_store_dsn, event_store_table)
    seat = tagged("seat:1")
    slow = in_thread(
        event_store.append_unconditionally, Event("SeatClaimed", {"delay": 1.0}, tags=["seat:1"])
    )
    time.sleep(0.3)  # number 1 drawn, not committed
    event_store.append_unconditionally(Event("SeatClaimed", {}, tags=["seat:1"]))
    seen = event_store.query(seat)
    slow.join()
    assert [e.sequence_number for e in seen] == [1, 2], "the query did not wait for event 1"


@pytest.mark.slow
def test_threads_claiming_one_seat_by_tag_have_exactly_one_winner(
    event_store_dsn: str, event_store_table: str
) -> None:
    threads, rounds = 8, 30
    with EventStore(event_store_dsn, table=event_store_table, pool_size=threads) as store:
        barrier = threading.Barrier(threads)

        def claim(seat: str, holder: int) -> str:
            boundary = tagged(seat)
            barrier.wait()
            for _ in range(20):
                seen = store.query(boundary)
                if seen.events:
                    return "taken"
                try:
                    store.append(
                        boundary,
                        seen.max_sequence_number,
                        Event("SeatClaimed", {"holder": holder}, tags=[seat]),
                    )
                    return "claimed"
                except ConcurrencyConflictError:
                    continue
            return "gave up"

        with ThreadPoolExecutor(threads) as pool:
            for round_no in range(rounds):
                seat = f"seat:{round_no}"
                outcomes = list(pool.map(lambda h, s=seat: claim(s, h), range(threads)))
                assert Counter(outcomes) == {"claimed": 1, "taken": threads - 1}, round_no
                assert len(store.query(tagged(seat)).events) == 1, round_no
