"""The guard under real concurrency: one copy, one borrower.

These tests assert the business invariant, not success counts: after every round, the
stored log has exactly one loan of the contested copy.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from dynamic_streams import (
    AsyncEventStore,
    ConcurrencyConflictError,
    Event,
    EventStore,
    P,
    build_event_filter,
)
from dynamic_streams.examples.library import BookCopyLentToSomeoneElse, Library, new_id
from dynamic_streams.examples.library.service import check_invariants

pytestmark = pytest.mark.slow

THREADS = 8
ROUNDS = 50
EVERYTHING = build_event_filter().matching_any_event().finalize()


def loans_of(store: EventStore, book: str) -> list[str]:
    f = build_event_filter().matching().any_event_type_of("BookCopyLentToReader")
    result = store.query(f.and_all_predicates_of(P("BookID", book)).finalize())
    return [e.payload["ReaderID"] for e in result]


def test_threads_lending_the_same_copy_have_exactly_one_winner(
    event_store_dsn: str, event_store_table: str
) -> None:
    with EventStore(event_store_dsn, table=event_store_table, pool_size=THREADS) as store:
        library = Library(store)
        barrier = threading.Barrier(THREADS)
        with ThreadPoolExecutor(THREADS) as pool:
            for round_no in range(ROUNDS):
                book = new_id()
                readers = [new_id() for _ in range(THREADS)]
                library.add_book_copy(book, Title=f"Round {round_no}")
                for r in readers:
                    library.register_reader(r, "Reader")

                def lend(reader: str, book: str = book) -> str:
                    barrier.wait()
                    try:
                        return "lent" if library.lend_book_copy(book, reader) else "nothing"
                    except BookCopyLentToSomeoneElse:
                        return "refused"

                outcomes = list(pool.map(lend, readers))
                assert Counter(outcomes) == {"lent": 1, "refused": THREADS - 1}, round_no
                winner = readers[outcomes.index("lent")]
                assert loans_of(store, book) == [winner], round_no
        assert check_invariants(store.query(EVERYTHING).events) == []
        # The race was real: most rounds made losers retry after a conflict.
        assert library.conflicts > 0


def test_threads_on_disjoint_copies_all_succeed(
    event_store_dsn: str, event_store_table: str
) -> None:
    with EventStore(event_store_dsn, table=event_store_table, pool_size=THREADS) as store:
        library = Library(store)
        pairs = [(new_id(), new_id()) for _ in range(THREADS)]
        for book, reader in pairs:
            library.add_book_copy(book)
            library.register_reader(reader, "Reader")
        barrier = threading.Barrier(THREADS)

        def work(pair: tuple[str, str]) -> list[bool]:
            book, reader = pair
            barrier.wait()
            done = []
            for _ in range(ROUNDS // 2):
                done.append(library.lend_book_copy(book, reader))
                done.append(library.return_book_copy(book, reader))
            return done

        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(work, pairs))
        assert all(all(r) and len(r) == ROUNDS for r in results)
        assert library.conflicts == 0
        for book, reader in pairs:
            assert loans_of(store, book) == [reader] * (ROUNDS // 2)
        assert check_invariants(store.query(EVERYTHING).events) == []


def test_raw_appends_with_the_same_expectation_have_one_winner(
    event_store_dsn: str, event_store_table: str
) -> None:
    with EventStore(event_store_dsn, table=event_store_table, pool_size=THREADS) as store:
        barrier = threading.Barrier(THREADS)
        for round_no in range(ROUNDS):
            copy = f"copy-{round_no}"
            f = build_event_filter().matching().any_predicate_of(P("BookID", copy)).finalize()
            seen = store.query(f).max_sequence_number

            def append(n: int, f: object = f, seen: int = seen, copy: str = copy) -> bool:
                barrier.wait()
                try:
                    store.append(f, seen, Event("Lent", {"BookID": copy, "ReaderID": f"r{n}"}))  # type: ignore[arg-type]
                    return True
                except ConcurrencyConflictError:
                    return False

            with ThreadPoolExecutor(THREADS) as pool:
                wins = list(pool.map(append, range(THREADS)))
            assert wins.count(True) == 1, round_no
            assert len(store.query(f)) == 1, round_no


def test_async_tasks_lending_the_same_copy_have_one_winner(
    event_store_dsn: str, event_store_table: str
) -> None:
    async def main() -> None:
        async with AsyncEventStore(
            event_store_dsn, table=event_store_table, pool_size=THREADS
        ) as store:
            for round_no in range(ROUNDS):
                f = (
                    build_event_filter()
                    .matching()
                    .any_predicate_of(P("BookID", f"c{round_no}"))
                    .finalize()
                )
                seen = (await store.query(f)).max_sequence_number
                results = await asyncio.gather(
                    *(
                        store.append(
                            f, seen, Event("Lent", {"BookID": f"c{round_no}", "ReaderID": f"r{n}"})
                        )
                        for n in range(THREADS)
                    ),
                    return_exceptions=True,
                )
                assert sum(isinstance(r, list) for r in results) == 1, results
                assert all(isinstance(r, (list, ConcurrencyConflictError)) for r in results)
                assert len(await store.query(f)) == 1

    asyncio.run(main())
