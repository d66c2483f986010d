"""Snapshots and incremental projections, through both stores."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import datetime, timezone
from typing import Any

import pytest
from dynamic_streams import (
    AsyncEventStore,
    Event,
    EventStore,
    InvalidInputError,
    P,
    RecordedEvent,
    build_event_filter,
    project,
    project_async,
)

BOOKS = build_event_filter().matching().any_event_type_of("Lent", "Returned").finalize()
OTHER = build_event_filter().matching().any_event_type_of("Lent").finalize()


def test_filter_hashes_are_stable_and_tell_filters_apart() -> None:
    same = build_event_filter().matching().any_event_type_of("Returned", "Lent", "").finalize()
    assert BOOKS.hash() == same.hash() and len(BOOKS.hash()) == 64
    assert BOOKS.hash() != OTHER.hash()
    assert BOOKS.after(3).hash() != BOOKS.hash()
    assert BOOKS.after(3) == build_event_filter().matching().any_event_type_of("Lent", "Returned").with_sequence_number_higher_than(3).finalize()  # fmt: skip


def test_a_filter_with_a_time_bound_cannot_be_reopened() -> None:
    timed = build_event_filter().matching().any_event_type_of("Lent").occurred_from(datetime.now(timezone.utc)).finalize()  # fmt: skip
    with pytest.raises(InvalidInputError, match="time bound"):
        timed.after(5)


def test_save_load_and_delete(store: Any) -> None:
    h = BOOKS.hash()
    assert store.load_snapshot("loans", h) is None
    assert store.save_snapshot("loans", h, 7, {"r1": ["b1"], "n": 1.5}) is True
    snap = store.load_snapshot("loans", h)
    assert (snap.projection_type, snap.filter_hash, snap.sequence_number) == ("loans", h, 7)
    assert snap.data == {"r1": ["b1"], "n": 1.5}
    assert snap.created_at.tzinfo == timezone.utc
    assert store.delete_snapshot("loans", h) is True
    assert store.delete_snapshot("loans", h) is False
    assert store.load_snapshot("loans", h) is None


def test_a_lower_sequence_number_never_overwrites_a_higher_one(store: Any) -> None:
    h = BOOKS.hash()
    assert store.save_snapshot("p", h, 10, "ten")
    assert store.save_snapshot("p", h, 9, "nine") is False
    assert store.load_snapshot("p", h).data == "ten"
    assert store.save_snapshot("p", h, 10, "ten again")
    assert store.save_snapshot("p", h, 11, [11])
    assert store.load_snapshot("p", h).data == [11]


@pytest.mark.parametrize(
    "data",
    [
        None,
        True,
        False,
        0,
        -12,
        2**70,
        1.25,
        "",
        'a "quoted"\nline \u00e9',
        [],
        {},
        [{"a": [None]}],
    ],
)
def test_a_snapshot_holds_any_json_value(store: Any, data: Any) -> None:
    store.save_snapshot("any", BOOKS.hash(), 1, data)
    loaded = store.load_snapshot("any", BOOKS.hash()).data
    assert loaded == data and type(loaded) is type(data)


def test_different_filters_and_projections_keep_separate_snapshots(store: Any) -> None:
    store.save_snapshot("p", BOOKS.hash(), 1, "books")
    store.save_snapshot("p", OTHER.hash(), 2, "other")
    store.save_snapshot("q", BOOKS.hash(), 3, "q books")
    assert [store.load_snapshot(p, f.hash()).data for p, f in [("p", BOOKS), ("p", OTHER), ("q", BOOKS)]] == ["books", "other", "q books"]  # fmt: skip


def test_a_large_snapshot_round_trips(store: Any) -> None:
    data = {"readers": {f"reader-{i}": [f"book-{i}-{j}" for j in range(5)] for i in range(8000)}}
    assert len(json.dumps(data)) > 500_000
    store.save_snapshot("big", BOOKS.hash(), 1, data)
    assert store.load_snapshot("big", BOOKS.hash()).data == data


@pytest.mark.parametrize(
    ("projection_type", "filter_hash", "data"),
    [
        ("", "h", {}),
        ("  ", "h", {}),
        ("p", "", {}),
        ("p", "h", float("nan")),
        ("p", "h", object()),
        ("p\x00", "h", {}),
        ("p", "h", {"k": "\x00"}),
    ],
)
def test_invalid_snapshots_are_rejected(
    store: Any, projection_type: str, filter_hash: str, data: Any
) -> None:
    with pytest.raises(InvalidInputError):
        store.save_snapshot(projection_type, filter_hash, 1, data)
    with pytest.raises(InvalidInputError):
        store.save_snapshot("p", "h", -1, {})


def test_concurrent_saves_end_with_the_highest(event_store: EventStore) -> None:
    barrier = threading.Barrier(10)

    def save(n: int) -> None:
        barrier.wait()
        event_store.save_snapshot("race", BOOKS.hash(), n, {"n": n})

    threads = [threading.Thread(target=save, args=(n,)) for n in (3, 9, 1, 10, 4, 7, 2, 8, 5, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = event_store.load_snapshot("race", BOOKS.hash())
    assert (snap.sequence_number, snap.data) == (10, {"n": 10})


def lent_books(state: dict[str, list[str]], e: RecordedEvent) -> dict[str, list[str]]:
    """Books currently lent, by reader."""
    held = state.setdefault(e.payload["ReaderID"], [])
    if e.event_type == "Lent":
        held.append(e.payload["BookID"])
    elif e.payload["BookID"] in held:
        held.remove(e.payload["BookID"])
    return state


def full_fold(events: list[RecordedEvent]) -> dict[str, list[str]]:
    state: dict[str, list[str]] = {}
    for e in events:
        state = lent_books(state, e)
    return state


def history(n: int) -> list[Event]:
    return [
        Event(
            "Returned" if i % 3 == 2 else "Lent", {"BookID": f"b{i // 3}", "ReaderID": f"r{i % 4}"}
        )
        for i in range(n)
    ]


def test_the_incremental_projection_equals_a_full_fold(event_store: EventStore) -> None:
    events = history(30)
    appended = 0
    for chunk in (events[:10], events[10:11], events[11:25], events[25:]):
        appended += len(event_store.append(BOOKS, appended, *chunk))
        state, seen = project(event_store, "lent-books", BOOKS, {}, lent_books)
        assert seen == appended
        assert state == full_fold(event_store.query(BOOKS).events)
    # Nothing new: no query result, state from the snapshot alone.
    assert project(event_store, "lent-books", BOOKS, {}, lent_books) == (state, appended)
    assert event_store.load_snapshot("lent-books", BOOKS.hash()).sequence_number == appended


def test_the_async_incremental_projection_equals_a_full_fold(
    event_store: EventStore, event_store_dsn: str, event_store_table: str
) -> None:
    async def main() -> None:
        async with AsyncEventStore(event_store_dsn, table=event_store_table) as store:
            appended = 0
            for chunk in (history(12), history(5)):
                appended += len(await store.append(BOOKS, appended, *chunk))
                state, seen = await project_async(store, "lent-books", BOOKS, {}, lent_books)
                assert (state, seen) == (full_fold((await store.query(BOOKS)).events), appended)

    asyncio.run(main())


def test_the_library_example_projects_a_readers_loans(event_store: EventStore) -> None:
    from dynamic_streams.examples.library import Library, new_id

    library = Library(event_store)
    reader = new_id()
    library.register_reader(reader, "Ada")
    books = [new_id() for _ in range(4)]
    for b in books:
        library.add_book_copy(b)
        library.lend_book_copy(b, reader)
    assert library.books_lent_to(reader) == sorted(books)
    library.return_book_copy(books[1], reader)
    assert library.books_lent_to(reader) == sorted(set(books) - {books[1]})
    f = build_event_filter().matching().any_event_type_of("BookCopyLentToReader", "BookCopyReturnedByReader").and_all_predicates_of(P("ReaderID", reader)).finalize()  # fmt: skip
    assert event_store.load_snapshot("books-lent-to-reader", f.hash()) is not None
