"""The read side: streaming reads, the head, subscriptions, appends without a condition.

What users rely on: a read returns exactly what a query of the same filter returns, page by
page; the head is a complete prefix; a subscription delivers every matching event once, in
order, even when commits land out of sequence order, and goes on after its connections die.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import psycopg
import pytest
from delays import in_thread, install_delay
from dynamic_streams import (
    AsyncEventStore,
    ConcurrencyConflictError,
    Event,
    EventStore,
    InterfaceError,
    InvalidInputError,
    P,
    RecordedEvent,
    build_event_filter,
)

EVERY = build_event_filter().matching_any_event().finalize()
LENT = build_event_filter().matching().any_event_type_of("BookLent").finalize()
LATE = build_event_filter().matching().any_predicate_of(P("late", 1)).finalize()
BOOK_0 = (
    build_event_filter()
    .matching()
    .any_event_type_of("BookLent", "BookReturned")
    .and_any_predicate_of(P("BookID", "b0"))
    .finalize()
)
# Candidates through BookID=b0 (many), matches only with ReaderID=r1 (few): pages of
# candidates that hold no match must not end the read.
BOOK_0_READER_1 = (
    build_event_filter()
    .matching()
    .all_predicates_of(P("BookID", "b0"), P("ReaderID", "r1"))
    .or_matching()
    .any_event_type_of("Rare")
    .finalize()
)
# Types only: one ordered scan per type, merged; past 32 types, scanned one after another.
TWO_TYPES = build_event_filter().matching().any_event_type_of("BookReturned", "BookLent").finalize()
MANY_TYPES = (
    build_event_filter()
    .matching()
    .any_event_type_of("BookReturned", *(f"Unused{i}" for i in range(40)), "Rare")
    .finalize()
)
FILTERS = [EVERY, LENT, TWO_TYPES, MANY_TYPES, BOOK_0, BOOK_0_READER_1]


def lent(i: int) -> Event:
    return Event("BookLent", {"BookID": f"b{i % 3}", "ReaderID": f"r{i % 7}", "i": i})


def fill(store: EventStore, n: int) -> None:
    events = [
        lent(i) if i % 5 else Event("BookReturned", {"BookID": f"b{i % 3}"}) for i in range(n)
    ]
    if n > 17:
        events[17] = Event("Rare", {})
    for start in range(0, n, 100):
        store.append_unconditionally(*events[start : start + 100])


def numbers(events: Any) -> list[int]:
    return [e.sequence_number for e in events]


@pytest.mark.parametrize("batch_size", [1, 4, 1000])
def test_a_read_returns_what_a_query_returns(event_store: EventStore, batch_size: int) -> None:
    fill(event_store, 300)
    for f in FILTERS:
        expected = numbers(event_store.query(f).events)
        assert expected, f
        assert numbers(event_store.read(f, batch_size=batch_size)) == expected
        assert numbers(event_store.read(f, batch_size=batch_size, backwards=True)) == expected[::-1]
        middle = expected[len(expected) // 2]
        above = [n for n in expected if n > middle]
        assert numbers(event_store.read(f, after=middle, batch_size=batch_size)) == above
        assert (
            numbers(event_store.read(f, after=middle, limit=3, batch_size=batch_size)) == above[:3]
        )
        assert numbers(event_store.read(f, limit=2, backwards=True)) == expected[::-1][:2]
        assert numbers(event_store.read(f, after=middle, backwards=True)) == above[::-1]


def test_a_read_decodes_events_as_a_query_does(event_store: EventStore) -> None:
    fill(event_store, 20)
    assert list(event_store.read(BOOK_0, batch_size=3)) == event_store.query(BOOK_0).events
    assert all(isinstance(e, RecordedEvent) for e in event_store.read(limit=3))


def test_a_read_stops_at_the_head_it_started_with(event_store: EventStore) -> None:
    fill(event_store, 10)
    reading = event_store.read(batch_size=2)
    first = next(reading)
    event_store.append_unconditionally(lent(99))
    assert numbers([first, *reading]) == list(range(1, 11))


def test_breaking_out_of_a_read_releases_its_connection(
    event_store_dsn: str, event_store_table: str
) -> None:
    with EventStore(event_store_dsn, table=event_store_table, pool_size=1, timeout=5) as store:
        fill(store, 30)
        reading = store.read(batch_size=4)
        assert numbers([next(reading), next(reading)]) == [1, 2]
        # The only connection is free after the first page.
        assert len(store.query(LENT).events) == 23
        assert store.head() == 30
        assert len(list(reading)) == 28
        # Later pages are read ahead on it; calls in the loop still get it.
        got = []
        for event in store.read(batch_size=4):
            got.append(event.sequence_number)
            assert store.head() == 30
        assert got == list(range(1, 31))


def _busy_backends(dsn: str) -> list[str]:
    """What the store's connections are doing that is not waiting for a call."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT state FROM pg_stat_activity WHERE application_name = 'dynamic-streams' "
            "AND pid <> pg_backend_pid() AND state <> 'idle'"
        ).fetchall()
    return [r[0] for r in rows]


def test_leaving_a_read_stops_the_page_it_reads_ahead(
    event_store_dsn: str, event_store_table: str
) -> None:
    with EventStore(event_store_dsn, table=event_store_table, pool_size=1, timeout=5) as store:
        # Pages of about 800 kB: more than a socket holds, so the server is still sending
        # the page read ahead when the read is left.
        for start in range(0, 300, 50):
            store.append_unconditionally(
                *(Event("Big", {"i": start + i, "blob": "x" * 8000}) for i in range(50))
            )
        reading = store.read(batch_size=100)
        # The second page taken: the third is being read ahead.
        assert numbers(next(reading) for _ in range(150)) == list(range(1, 151))
        reading.close()  # what leaving a for loop early does
        assert _busy_backends(event_store_dsn) == []
        assert numbers(store.read(after=150, batch_size=100)) == list(range(151, 301))

    async def main() -> list[int]:
        async with AsyncEventStore(
            event_store_dsn, table=event_store_table, pool_size=1, timeout=5
        ) as store:
            reading = store.read(batch_size=100)
            got = [(await anext(reading)).sequence_number for _ in range(150)]
            await reading.aclose()  # type: ignore[attr-defined]
            assert _busy_backends(event_store_dsn) == []
            return got + [e.sequence_number async for e in store.read(after=150, batch_size=100)]

    assert asyncio.run(main()) == list(range(1, 301))


def test_a_read_goes_on_after_its_connections_are_killed(
    event_store: EventStore, event_store_dsn: str
) -> None:
    fill(event_store, 40)
    reading = event_store.read(batch_size=4)
    got = [next(reading) for _ in range(6)]
    with psycopg.connect(event_store_dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'dynamic-streams' AND pid <> pg_backend_pid()"
        )
    assert numbers([*got, *reading]) == list(range(1, 41))


def test_an_asyncio_store_reads_as_an_async_iterator(
    event_store: EventStore, async_event_store: AsyncEventStore
) -> None:
    fill(event_store, 50)

    async def main() -> tuple[list[int], list[int], int]:
        forwards = [e.sequence_number async for e in async_event_store.read(BOOK_0, batch_size=3)]
        backwards = [e.sequence_number async for e in async_event_store.read(backwards=True)]
        return forwards, backwards, await async_event_store.head()

    forwards, backwards, head = asyncio.run(main())
    assert forwards == numbers(event_store.query(BOOK_0).events)
    assert backwards == list(range(50, 0, -1))
    assert head == 50


def test_bad_read_arguments_fail_before_any_io() -> None:
    nowhere = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"
    for store in (EventStore(nowhere), AsyncEventStore(nowhere)):
        for kwargs, error in [
            ({"limit": 0}, InvalidInputError),
            ({"limit": -1}, InvalidInputError),
            ({"after": -1}, InvalidInputError),
            ({"batch_size": 0}, InvalidInputError),
            ({"after": 1.5}, TypeError),
            ({"limit": True}, TypeError),
        ]:
            with pytest.raises(error):
                store.read(EVERY, **kwargs)
        with pytest.raises(TypeError):
            store.read("BookLent")  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            store.subscribe(after=-1)
        with pytest.raises(InvalidInputError):
            store.subscribe(poll_interval=0)
        with pytest.raises(TypeError):
            store.subscribe({"type": "BookLent"})  # type: ignore[arg-type]
        store.close()
        with pytest.raises(InterfaceError):
            store.read(EVERY)
        with pytest.raises(InterfaceError):
            store.subscribe()


def test_appends_without_a_condition(store: Any) -> None:
    assert store.head() == 0
    assert store.append_unconditionally(lent(1), lent(2)) == [1, 2]
    assert store.head() == 2
    with pytest.raises(InvalidInputError):
        store.append_unconditionally()
    # They count for the guard like any other event.
    with pytest.raises(ConcurrencyConflictError):
        store.append(LENT, 1, lent(3))
    assert store.append(LENT, 2, lent(3)) == [3]


def test_the_head_waits_for_a_writer_that_drew_a_lower_number(
    event_store: EventStore, event_store_dsn: str, event_store_table: str
) -> None:
    install_delay(event_store_dsn, event_store_table)
    slow_done: list[float] = []

    def slow() -> None:
        assert event_store.append_unconditionally(Event("Slow", {"delay": 1.0})) == [1]
        slow_done.append(time.monotonic())

    writer = in_thread(slow)
    time.sleep(0.3)  # number 1 drawn, not committed
    assert event_store.append_unconditionally(lent(2)) == [2]
    head = event_store.head()
    returned = time.monotonic()
    writer.join()
    assert head == 2
    assert slow_done and slow_done[0] <= returned + 0.05, "the head did not wait for event 1"
    assert numbers(event_store.read()) == [1, 2]


def test_a_subscription_delivers_the_backlog_then_live_events(event_store: EventStore) -> None:
    fill(event_store, 40)
    expected = numbers(event_store.query(BOOK_0).events)
    with event_store.subscribe(BOOK_0, after=expected[2], batch_size=4, poll_interval=30) as sub:
        got = numbers(take(sub, len(expected) - 3))
        assert got == expected[3:]
        assert sub.position == expected[-1]
        # Woken by the append's notification, long before the 30 s poll.
        started = time.monotonic()
        [n] = event_store.append_unconditionally(Event("BookReturned", {"BookID": "b0"}))
        event_store.append_unconditionally(lent(1))  # another book: not delivered
        assert numbers(take(sub, 1)) == [n]
        assert time.monotonic() - started < 10
        assert sub.poll(0.2) == []


def test_a_subscription_is_woken_after_its_listener_stopped_listening(
    event_store: EventStore,
) -> None:
    """While no subscription waits, notifications only cost the writers: the listener stops
    listening at the next one, and listens again when a subscription begins to wait. A commit
    after that must still wake it, long before its poll."""
    with event_store.subscribe(poll_interval=60) as sub:
        assert sub.poll(0.3) == []
        # Nothing waits (the consumer is busy elsewhere): the notification stops the listening.
        event_store.append_unconditionally(lent(1))
        time.sleep(0.5)
        assert numbers(take(sub, 1)) == [1]
        for i in range(2, 5):
            waiting: list[RecordedEvent] = []
            # One wait, so only a wake-up ends it before its 10 s.
            consumer = in_thread(lambda got=waiting: got.extend(sub.poll(10)))
            time.sleep(0.3)
            started = time.monotonic()
            event_store.append_unconditionally(lent(i))
            consumer.join()
            assert numbers(waiting) == [i]
            assert time.monotonic() - started < 5, "woken by the poll, not by the commit"


def take(sub: Any, n: int, within: float = 20) -> list[RecordedEvent]:
    got: list[RecordedEvent] = []
    deadline = time.monotonic() + within
    while len(got) < n and time.monotonic() < deadline:
        got.extend(sub.poll(0.5))
    return got


@pytest.mark.parametrize("batch_size", [1, 100])
@pytest.mark.parametrize("follow", ["every event", "the late ones"])
def test_a_subscription_never_skips_an_event_that_commits_late(
    event_store: EventStore,
    event_store_dsn: str,
    event_store_table: str,
    batch_size: int,
    follow: str,
) -> None:
    """Four writers; every third event sleeps before its commit, so later numbers commit
    first. The subscriber must still see every one of its events, once, in order: following
    every event, or only the late ones (its looks then stand in the listener while the log
    moves on without them)."""
    install_delay(event_store_dsn, event_store_table)
    per_writer = 30

    def write(w: int) -> None:
        rnd = random.Random(w)
        for i in range(per_writer):
            payload: dict[str, Any] = {"w": w, "i": i}
            if i % 3 == 0:
                payload["delay"] = rnd.uniform(0.01, 0.15)
                payload["late"] = 1
            event_store.append_unconditionally(Event("Ticked", payload))

    every = follow == "every event"
    f = EVERY if every else LATE
    expected = 4 * per_writer if every else 4 * per_writer // 3
    with event_store.subscribe(f, batch_size=batch_size, poll_interval=0.05) as sub:
        writers = [in_thread(write, w) for w in range(4)]
        got = numbers(take(sub, expected, within=60))
        for w in writers:
            w.join()
        assert sub.poll(0.3) == []
    assert got == numbers(event_store.query(f).events)
    assert len(got) == expected
    if every:
        assert got == list(range(1, 4 * per_writer + 1))


def test_an_asyncio_subscription_never_skips_an_event_that_commits_late(
    event_store: EventStore, async_event_store: AsyncEventStore, event_store_dsn: str,
    event_store_table: str,
) -> None:  # fmt: skip
    """The same with the asyncio store's subscription, its events taken on an event loop
    while four threads write, every third event committing late."""
    install_delay(event_store_dsn, event_store_table)
    per_writer = 30

    def write(w: int) -> None:
        rnd = random.Random(w)
        for i in range(per_writer):
            delay = {"delay": rnd.uniform(0.01, 0.15)} if i % 3 == 0 else {}
            event_store.append_unconditionally(Event("Ticked", {"w": w, "i": i, **delay}))

    async def main() -> list[int]:
        got: list[int] = []
        async with async_event_store.subscribe(batch_size=1, poll_interval=0.05) as sub:
            writers = [in_thread(write, w) for w in range(4)]
            deadline = time.monotonic() + 60
            while len(got) < 4 * per_writer and time.monotonic() < deadline:
                got.extend(numbers(await sub.poll(0.5)))
            for w in writers:
                w.join()
            assert await sub.poll(0.3) == []
        return got

    assert asyncio.run(main()) == list(range(1, 4 * per_writer + 1))


def test_subscriptions_of_one_store_each_get_their_own_events(event_store: EventStore) -> None:
    """Their looks are taken together, and two that follow one filter from one position share
    a page: each must still get every one of its events, once, in order."""
    filters = (LENT, LENT, BOOK_0, EVERY)
    subs = [event_store.subscribe(f, poll_interval=30) for f in filters]
    for sub in subs:
        assert sub.poll(0.1) == []
    for start in range(0, 60, 6):
        event_store.append_unconditionally(*(lent(i) for i in range(start, start + 5)))
        event_store.append_unconditionally(Event("BookReturned", {"BookID": "b0"}))
    for sub, f in zip(subs, filters, strict=True):
        expected = numbers(event_store.query(f).events)
        assert numbers(take(sub, len(expected))) == expected
        assert sub.poll(0.1) == []
        sub.close()


def test_where_a_subscription_starts_is_not_taken_as_settled(
    event_store: EventStore, event_store_dsn: str, event_store_table: str
) -> None:
    """A store's subscriptions share one settled position. One that starts after 6 while 4
    is still in flight must not make another, at 3, skip 4."""
    install_delay(event_store_dsn, event_store_table)
    fill(event_store, 3)
    slow = in_thread(event_store.append_unconditionally, Event("Ticked", {"delay": 1.0}))
    time.sleep(0.3)  # 4 drawn, not committed
    event_store.append_unconditionally(lent(5), lent(6))
    with event_store.subscribe(after=6) as ahead, event_store.subscribe(after=3) as behind:
        assert ahead.poll(0.1) == []
        assert numbers(take(behind, 3)) == [4, 5, 6]
    slow.join()


def test_a_subscription_goes_on_after_its_connections_are_killed(
    event_store: EventStore, event_store_dsn: str
) -> None:
    fill(event_store, 10)
    with event_store.subscribe(poll_interval=0.2) as sub:
        assert numbers(take(sub, 10)) == list(range(1, 11))
        with psycopg.connect(event_store_dsn, autocommit=True) as conn:
            # Each backend is waited for until it has ended: an append sent to one still
            # ending may or may not commit, and fails rather than guess (not this test's point).
            killed = conn.execute(
                "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                "WHERE application_name = 'dynamic-streams' AND pid <> pg_backend_pid()"
            ).fetchone()
            assert killed and killed[0] >= 2  # the listener and the pool's
        for i in range(5):
            event_store.append_unconditionally(lent(i))
        assert numbers(take(sub, 5)) == list(range(11, 16))
        assert sub.poll(0.3) == []


def test_closing_a_subscription_ends_its_iteration(event_store: EventStore) -> None:
    sub = event_store.subscribe(poll_interval=30)
    got: list[RecordedEvent] = []
    consumer = in_thread(lambda: got.extend(sub))
    event_store.append_unconditionally(lent(1))
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    sub.close()
    consumer.join(5)
    assert not consumer.is_alive()
    assert numbers(got) == [1] and sub.closed
    assert sub.poll(0.1) == []


def test_an_asyncio_subscription_stops_when_cancelled(
    event_store: EventStore, async_event_store: AsyncEventStore
) -> None:
    fill(event_store, 5)

    async def main() -> list[int]:
        got: list[int] = []

        async def consume() -> None:
            async for e in async_event_store.subscribe(LENT, poll_interval=30):
                got.append(e.sequence_number)

        task = asyncio.create_task(consume())
        while len(got) < 4:
            await asyncio.sleep(0.01)
        await async_event_store.append_unconditionally(lent(6))
        while len(got) < 5:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with async_event_store.subscribe(after=5) as sub:
            [e] = await sub.poll(5)
            got.append(e.sequence_number)
        return got

    assert asyncio.run(asyncio.wait_for(main(), 30)) == [2, 3, 4, 5, 6, 6]
