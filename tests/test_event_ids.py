"""Idempotent appends: an event may carry an id (a UUID); appending it again once it is
stored stores nothing and returns the stored sequence number.

What users rely on: a batch retried after a timeout whose commit landed is stored once and
answered with the same numbers, also when two retries race; a reused id with other content
is an error, not a silent no-op.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from dynamic_streams import (
    ConcurrencyConflictError,
    Event,
    EventStore,
    IntegrityError,
    InvalidInputError,
    P,
    build_event_filter,
)

BOOK = build_event_filter().matching().any_predicate_of(P("BookID", "b1")).finalize()


def test_an_event_keeps_its_id(store: Any) -> None:
    a = uuid.uuid4()
    e = Event("BookLent", {"BookID": "b1"}, id=a)
    assert e.id == a and Event("X", {}).id is None
    store.append_unconditionally(e, Event("Other", {}))
    [lent, other] = store.query(build_event_filter().matching_any_event().finalize()).events
    assert (lent.id, other.id) == (a, None)


def test_a_retried_append_is_stored_once(store: Any) -> None:
    ids = [uuid.uuid4(), uuid.uuid4()]

    def batch() -> list[Event]:
        return [Event("BookLent", {"BookID": "b1", "n": 1.5}, id=ids[0]),
                Event("BookReturned", {"BookID": "b1"}, id=str(ids[1]))]  # fmt: skip

    first = store.append(BOOK, 0, *batch())
    # The retry's guard would fail now (its own events are there): it is answered from the
    # stored events instead.
    assert store.append(BOOK, 0, *batch()) == first
    assert store.append_unconditionally(*batch()) == first
    assert len(store.query(BOOK).events) == 2
    # The same id with another type or payload is not a retry.
    with pytest.raises(IntegrityError, match="different type, payload or tags"):
        store.append_unconditionally(Event("BookLent", {"BookID": "b2", "n": 1.5}, id=ids[0]),
                                     Event("BookReturned", {"BookID": "b1"}, id=ids[1]))  # fmt: skip
    with pytest.raises(IntegrityError, match="stored whole or not at all"):
        store.append_unconditionally(batch()[0], Event("BookLent", {"BookID": "b9"}))
    # JSON equality: 1.5 and 1.50 are one number.
    assert (
        store.append_unconditionally(
            Event("BookLent", '{"n": 1.50, "BookID": "b1"}', id=ids[0]),
            batch()[1],
        )
        == first
    )
    with pytest.raises(ConcurrencyConflictError):
        store.append(BOOK, 0, Event("BookLent", {"BookID": "b1"}, id=uuid.uuid4()))


def test_racing_retries_store_once_and_agree(event_store: EventStore) -> None:
    for _ in range(20):
        batch = [Event("Imported", {"k": i}, id=uuid.uuid4()) for i in range(3)]
        answers: list[list[int]] = []
        start = threading.Barrier(4)

        def append(start: threading.Barrier, answers: list[list[int]], batch: list[Event]) -> None:
            start.wait()
            answers.append(event_store.append_unconditionally(*batch))

        threads = [threading.Thread(target=append, args=(start, answers, batch)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(answers) == 4 and all(a == answers[0] for a in answers), answers
    stored = [e.sequence_number for e in event_store.read()]
    # Losing inserts drew numbers too: gaps, never duplicates.
    assert len(stored) == 60 and event_store.head() == stored[-1]


def test_ids_must_be_uuids() -> None:
    for bad in ["nope", "", "67e55044-10b1-426f-9247"]:
        with pytest.raises(InvalidInputError, match="not a UUID"):
            Event("X", {}, id=bad)
    with pytest.raises(InvalidInputError, match="UUID"):
        Event("X", {}, id=12345)  # type: ignore[arg-type]
