"""The key index's row addresses are hints: reads and guards stay exact when they are stale.

Each key row holds where its event's row was written, so reads skip a primary-key descent
per event. A table rewrite moves rows, and key rows written by other tools may hold no
address; either way every read must still return exactly the matching events, and every
guard must still see them.
"""

from __future__ import annotations

import psycopg
import pytest
from dynamic_streams import (
    ConcurrencyConflictError,
    Event,
    EventFilter,
    EventStore,
    P,
    build_event_filter,
)


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
