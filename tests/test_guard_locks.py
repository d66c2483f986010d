"""The guard's locks, observed from a second connection that plays an in-flight writer.

A writer that follows the protocol holds shared advisory locks on its events' keys from
before it draws a sequence number until it commits (docs/guard.md). These tests hold such a
writer open with psycopg and check what the store does meanwhile.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from dynamic_streams import (
    ConcurrencyConflictError,
    Event,
    EventStore,
    OperationTimeoutError,
    P,
    _native,
    build_event_filter,
)

BOOK = {"BookID": "b1", "ReaderID": "r1"}
FILTER = build_event_filter().matching().any_predicate_of(P("BookID", "b1")).finalize()
EVERYTHING = build_event_filter().matching_any_event().finalize()


@pytest.fixture
def writer(event_store_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(event_store_dsn) as conn:
        yield conn
        conn.rollback()


def begin_write(conn: psycopg.Connection, table: str, payload: dict[str, str]) -> None:
    """Starts a protocol-following writer and leaves it uncommitted."""
    text = json.dumps(payload)
    keys = _native.index_keys(table, text)
    for key in keys:
        conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (key,))
    (seq,) = conn.execute(
        f'INSERT INTO "{table}" (occurred_at, event_type, payload) VALUES (now(), %s, %s::jsonb) '
        "RETURNING sequence_number",
        ("Lent", text),
    ).fetchone()  # type: ignore[misc]
    for key in keys:
        conn.execute(f'INSERT INTO "{table}_keys" VALUES (%s, %s)', (key, seq))


def waiting_backends(dsn: str) -> int:
    """Backends of this library waiting on a lock, once they stop (5 s at most)."""
    with psycopg.connect(dsn, autocommit=True) as observer:
        deadline = time.monotonic() + 5
        while True:
            (waiting,) = observer.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = 'dynamic-streams' AND wait_event_type = 'Lock'"
            ).fetchone()  # type: ignore[misc]
            if waiting == 0 or time.monotonic() > deadline:
                return int(waiting)
            time.sleep(0.05)


def test_a_query_waits_for_an_in_flight_writer_of_a_matching_event(
    event_store: EventStore, writer: psycopg.Connection
) -> None:
    begin_write(writer, event_store.table, BOOK)
    with pytest.raises(OperationTimeoutError):
        event_store.query(FILTER, timeout=0.5)
    writer.commit()
    assert [e.payload for e in event_store.query(FILTER)] == [BOOK]


def test_an_in_flight_writer_of_other_events_does_not_block(
    event_store: EventStore, writer: psycopg.Connection
) -> None:
    begin_write(writer, event_store.table, {"BookID": "b2", "ReaderID": "r2"})
    started = time.monotonic()
    assert len(event_store.query(FILTER, timeout=5)) == 0
    assert event_store.append(FILTER, 0, Event("Lent", BOOK), timeout=5) == [2]
    assert time.monotonic() - started < 2


def test_an_append_waits_for_the_in_flight_writer_then_conflicts(
    event_store: EventStore, writer: psycopg.Connection
) -> None:
    seen = event_store.query(FILTER).max_sequence_number
    begin_write(writer, event_store.table, BOOK)
    outcome: list[BaseException | list[int]] = []

    def append() -> None:
        try:
            outcome.append(
                event_store.append(FILTER, seen, Event("Lent", {"BookID": "b1", "ReaderID": "r9"}))
            )
        except BaseException as err:
            outcome.append(err)

    t = threading.Thread(target=append)
    t.start()
    time.sleep(0.5)
    assert outcome == []  # still waiting for the writer's locks
    writer.commit()
    t.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], ConcurrencyConflictError)
    assert [e.payload["ReaderID"] for e in event_store.query(FILTER)] == ["r1"]


def test_a_timeout_cancels_the_statement_on_the_server(
    event_store: EventStore, writer: psycopg.Connection
) -> None:
    writer.execute(f'LOCK TABLE "{event_store.table}" IN ACCESS EXCLUSIVE MODE')
    with pytest.raises(OperationTimeoutError):
        event_store.append(EVERYTHING, 0, Event("Lent", BOOK), timeout=0.5)
    # The server stops the work: no backend of the library waits on the lock any more.
    assert waiting_backends(writer.info.dsn) == 0
    writer.rollback()
    # Nothing was stored, and the same store goes on working.
    assert len(event_store.query(EVERYTHING)) == 0
    assert event_store.append(EVERYTHING, 0, Event("Lent", BOOK)) != []


def test_cancelling_an_asyncio_task_cancels_the_statement_on_the_server(
    event_store_dsn: str, event_store_table: str, writer: psycopg.Connection
) -> None:
    import asyncio

    from dynamic_streams import AsyncEventStore

    writer.execute(f'LOCK TABLE "{event_store_table}" IN ACCESS EXCLUSIVE MODE')

    async def main() -> None:
        async with AsyncEventStore(event_store_dsn, table=event_store_table, pool_size=1) as store:
            for call in (store.query(EVERYTHING), store.append(EVERYTHING, 0, Event("Lent", BOOK))):
                task = asyncio.ensure_future(call)
                await asyncio.sleep(0.3)  # blocked behind the table lock
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            assert waiting_backends(event_store_dsn) == 0
            writer.rollback()
            # Nothing stored; the store (one connection in its pool) goes on working.
            assert len(await store.query(EVERYTHING)) == 0
            assert await store.append(EVERYTHING, 0, Event("Lent", BOOK)) == [1]

    asyncio.run(main())


def test_an_eventual_read_takes_no_locks_even_on_the_primary(
    event_store: EventStore, writer: psycopg.Connection
) -> None:
    # No replica is configured, so the primary serves the eventual read: without the guard's
    # locks (docs/guard.md), it neither waits for the writer nor holds writers off.
    begin_write(writer, event_store.table, BOOK)
    started = time.monotonic()
    result = event_store.query(FILTER, consistency="eventual", timeout=2)
    assert time.monotonic() - started < 1
    assert len(result) == 0 and not result.from_replica
    writer.commit()
    assert len(event_store.query(FILTER, consistency="eventual")) == 1
