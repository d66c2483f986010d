"""Bulk import through COPY: what users rely on is that imported events are stored exactly as
appended ones would be (key rows, guard, ids, subscribers woken), a batch all or none."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from dynamic_streams import (
    AsyncEventStore,
    ConcurrencyConflictError,
    Event,
    EventStore,
    IntegrityError,
    InvalidInputError,
    P,
    build_event_filter,
)

BOOK_7 = build_event_filter().matching().any_event_type_of("BookLent").and_any_predicate_of(P("BookID", "b7")).finalize()  # fmt: skip


def history(n: int, ids: list[uuid.UUID] | None = None) -> Iterator[Event]:
    for i in range(n):
        yield Event(
            "BookLent",
            {"BookID": f"b{i % 10}", "ReaderID": f"r{i % 13}", "i": i},
            id=None if ids is None else ids[i],
        )


def test_an_import_stores_events_as_appends_would(event_store: EventStore) -> None:
    event_store.append_unconditionally(Event("Before", {}))
    done: list[int] = []
    assert (
        event_store.import_events(history(2_500), batch_size=1_000, progress=done.append) == 2_500
    )
    assert done == [1_000, 2_000, 2_500]
    events = list(event_store.read())
    assert [e.sequence_number for e in events] == list(range(1, 2_502))
    assert [e.payload["i"] for e in events[1:]] == list(range(2_500))  # in the order given
    # Found through the key index, and guarded like any event.
    book_7 = event_store.query(BOOK_7)
    assert [e.payload["i"] for e in book_7.events] == list(range(7, 2_500, 10))
    with pytest.raises(ConcurrencyConflictError):
        event_store.append(
            BOOK_7, book_7.events[0].sequence_number, Event("BookLent", {"BookID": "b7"})
        )
    assert event_store.append(
        BOOK_7, book_7.max_sequence_number, Event("BookLent", {"BookID": "b7"})
    )


def test_an_import_rerun_with_ids_skips_what_it_stored(event_store: EventStore) -> None:
    ids = [uuid.uuid4() for _ in range(300)]
    event_store.import_events(history(200, ids), batch_size=100)
    # Rerun after a failure at 200: the first two batches are recognised, the rest stored.
    assert event_store.import_events(history(300, ids), batch_size=100) == 300
    assert [e.id for e in event_store.read()] == ids
    # A batch that straddles what is stored is not a rerun.
    with pytest.raises(IntegrityError):
        event_store.import_events(history(300, [*ids[:50], *(uuid.uuid4() for _ in range(250))]), batch_size=100)  # fmt: skip
    assert len(list(event_store.read())) == 300


def test_an_import_wakes_subscribers(event_store: EventStore) -> None:
    with event_store.subscribe(BOOK_7, poll_interval=60) as sub:
        assert sub.poll(0.1) == []
        event_store.import_events(history(100))
        got = sub.poll(10)
        assert [e.payload["i"] for e in got] == list(range(7, 100, 10))


def test_an_asyncio_import_takes_async_iterables(async_event_store: AsyncEventStore) -> None:
    async def events() -> AsyncIterator[Event]:
        for e in history(250):
            yield e

    async def main() -> tuple[int, int, int]:
        first = await async_event_store.import_events(events(), batch_size=100)
        second = await async_event_store.import_events(history(5))
        return first, second, await async_event_store.head()

    assert asyncio.run(main()) == (250, 5, 255)


def test_bad_imports_fail_before_any_io(event_store: Any) -> None:
    with pytest.raises(InvalidInputError):
        event_store.import_events(history(1), batch_size=0)
    with pytest.raises(TypeError):
        event_store.import_events([{"type": "BookLent"}])
    assert event_store.import_events([]) == 0
    assert event_store.head() == 0
