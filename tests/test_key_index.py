"""Reads and guards go through the key index, and its row addresses are hints: reads and
guards stay exact when they are stale.

Each key row holds where its event's row was written, so reads skip a primary-key descent
per event. A table rewrite moves rows, and key rows written by other tools may hold no
address; either way every read must still return exactly the matching events, and every
guard must still see them.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from conftest import AsyncDriven, until_no_sessions
from dynamic_streams import (
    AsyncEventStore,
    ConcurrencyConflictError,
    Event,
    EventFilter,
    EventStore,
    P,
    build_event_filter,
)
from psycopg.conninfo import make_conninfo


def of_book(book: str) -> EventFilter:
    return build_event_filter().matching().any_predicate_of(P("BookID", book)).finalize()


def lending(book: str, reader: str) -> EventFilter:
    return (
        build_event_filter()
        .matching()
        .any_event_type_of("Added", "Lent")
        .and_any_predicate_of(P("BookID", book), P("ReaderID", reader))
        .finalize()
    )


def damage(conn: psycopg.Connection, table: str, how: str) -> None:
    if how == "rewritten":
        # Every row moves: the table is rewritten in event-type order.
        before = conn.execute(f'SELECT ctid FROM "{table}" ORDER BY sequence_number').fetchall()
        conn.execute(f'CLUSTER "{table}" USING "{table}_event_type_idx"')
        after = conn.execute(f'SELECT ctid FROM "{table}" ORDER BY sequence_number').fetchall()
        assert before != after
    elif how == "missing":
        conn.execute(f'UPDATE "{table}_keys" SET tid = NULL')
    else:  # every address names the first row, an event of one of the candidates
        conn.execute(f"UPDATE \"{table}_keys\" SET tid = '(0,1)'")


@pytest.mark.parametrize("how", ["rewritten", "missing", "misleading"])
def test_stale_row_addresses_change_no_result(
    event_store: EventStore, event_store_dsn: str, how: str
) -> None:
    store, table = event_store, event_store.table
    for n in range(40):
        # Types interleaved, so that a rewrite in type order moves rows.
        kind = "Lent" if n % 3 else "Added"
        payload = {"BookID": f"b{n % 4}", "ReaderID": f"r{n % 7}", "n": n}
        store.append(of_book("none"), 0, Event(kind, payload))
    filters = [of_book(f"b{b}") for b in range(4)] + [lending("b1", "r3"), lending("b9", "r9")]
    before = [[(e.sequence_number, e.payload) for e in store.query(f)] for f in filters]
    assert all(before[:5]) and len(before[0]) == 10 and not before[5]

    with psycopg.connect(event_store_dsn, autocommit=True) as conn:
        damage(conn, table, how)

    after = [[(e.sequence_number, e.payload) for e in store.query(f)] for f in filters]
    assert after == before
    # The guard finds the events it must not miss, wherever they now lie ...
    last_b1 = before[1][-1][0]
    with pytest.raises(ConcurrencyConflictError):
        store.append(of_book("b1"), last_b1 - 1, Event("Lent", {"BookID": "b1"}))
    # ... and lets through the append that saw them all, which reads back like the rest.
    (new,) = store.append(of_book("b1"), last_b1, Event("Lent", {"BookID": "b1", "n": 99}))
    assert store.query(of_book("b1")).max_sequence_number == new
    # Reads go page by page, and a page is cut at its candidates: a row found at another
    # candidate's address must not slip into a page whose range it is outside of.
    for f in filters:
        expected = [e.sequence_number for e in store.query(f)]
        for backwards in (False, True):
            pages = [e.sequence_number for e in store.read(f, batch_size=3, backwards=backwards)]
            assert pages == (expected[::-1] if backwards else expected)


def _scans(dsn: str, table: str) -> tuple[int, int]:
    """Sequential and index scans of the events and their key rows, as the server counts them."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT sum(seq_scan), sum(idx_scan) FROM pg_stat_user_tables"
            " WHERE relid IN (%s::regclass, %s::regclass)",
            (table, f"{table}_keys"),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _closed(dsn: str, store: Any, name: str) -> None:
    """Closes `store` and waits for its sessions (named `name`) to end: a session reports its
    scans when it ends, if not before."""
    store.close()
    until_no_sessions(dsn, name, within=10)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_no_operation_reads_a_whole_table_as_it_grows(event_store_dsn: str, kind: str) -> None:
    """A table filled from empty: every plan is made while it is small, and a plan kept until
    the table is next analyzed must still go through the indexes (a sequential scan, cheapest
    on a few pages, grows with the table)."""
    table = f"scans_{uuid.uuid4().hex[:12]}"
    name = f"scans-{uuid.uuid4().hex[:8]}"
    dsn = make_conninfo(event_store_dsn, application_name=name)
    setup = EventStore(dsn, table=table)
    setup.create_schema()
    _closed(event_store_dsn, setup, name)
    before = _scans(event_store_dsn, table)
    opened = EventStore if kind == "sync" else AsyncEventStore
    store: Any = opened(dsn, table=table, vacuum_every=None)
    if kind == "async":
        store = AsyncDriven(store)
    try:
        for round_ in range(10):
            found = store.query(lending(f"b{round_}", f"r{round_}"))
            store.append(lending(f"b{round_}", f"r{round_}"), found.max_sequence_number,
                         Event("Lent", {"BookID": f"b{round_}", "ReaderID": f"r{round_}"}))  # fmt: skip
            store.append_unconditionally(
                *(Event("Added", {"BookID": f"x{round_}-{i}"}, id=uuid.uuid4()) for i in range(100))
            )
            assert [e.sequence_number for e in store.query(of_book(f"b{round_}")).events] == [
                101 * round_ + 1
            ]
        assert len(list(store.read(of_book("b9")))) == 1
        assert store.head() == 1010
    finally:
        _closed(event_store_dsn, store, name)
    seq, idx = _scans(event_store_dsn, table)
    assert (seq - before[0], idx > before[1]) == (0, True)
    with EventStore(event_store_dsn, table=table) as dropper:
        dropper._native.drop_table()
