"""create_schema on a live store, and bringing an earlier schema of this library up to date."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import psycopg
import pytest
from dynamic_streams import Event, EventStore, P, _native, build_event_filter

pytestmark = pytest.mark.slow

EVERYTHING = build_event_filter().matching_any_event().finalize()


def lending(book: str) -> Any:
    return build_event_filter().matching().any_predicate_of(P("BookID", book)).finalize()


def append_for(
    store: EventStore, book: str, stop: threading.Event, failures: list[BaseException]
) -> int:
    """Appends to ``book``'s boundary until ``stop``; returns how many landed."""
    boundary, landed = lending(book), 0
    while not stop.is_set():
        try:
            seen = store.query(boundary).max_sequence_number
            store.append(boundary, seen, Event("Lent", {"BookID": book}))
            landed += 1
        except BaseException as err:
            failures.append(err)
    return landed


def test_create_schema_on_a_busy_store_blocks_no_one(
    event_store: EventStore, event_store_dsn: str
) -> None:
    stop, failures, counts = threading.Event(), [], []  # type: ignore[var-annotated]
    workers = [
        threading.Thread(
            target=lambda b=b: counts.append(append_for(event_store, b, stop, failures))
        )
        for b in ("b1", "b2", "b3", "b4", "b5", "b6")
    ]
    for w in workers:
        w.start()
    schema_calls = 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        with EventStore(event_store_dsn, table=event_store.table) as starting:
            try:
                starting.create_schema(timeout=5)
            except BaseException as err:
                failures.append(err)
        schema_calls += 1
        time.sleep(0.1)
    stop.set()
    for w in workers:
        w.join(10)
    assert failures == []
    assert schema_calls >= 10 and sum(counts) > 100
    assert len(event_store.query(EVERYTHING)) == sum(counts)


def test_concurrent_create_schema_calls_on_a_fresh_table_serialise(
    event_store_dsn: str, event_store_table: str
) -> None:
    table = f"{event_store_table}_fresh"
    failures: list[BaseException] = []

    def create() -> None:
        try:
            with EventStore(event_store_dsn, table=table) as s:
                s.create_schema()
        except BaseException as err:
            failures.append(err)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert failures == []
        with EventStore(event_store_dsn, table=table) as s:
            assert s.append(EVERYTHING, 0, Event("T", {"k": 1})) == [1]
    finally:
        with EventStore(event_store_dsn, table=table) as s:
            s._native.drop_table()


# The schema of version 0.1.0 before key rows held their event's row address.
OLD_SCHEMA = """
CREATE SEQUENCE {t}_seq;
CREATE TABLE {t} (
    sequence_number bigint PRIMARY KEY DEFAULT nextval('{t}_seq'),
    occurred_at timestamptz NOT NULL,
    event_type text NOT NULL CHECK (event_type <> ''),
    payload jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    metadata jsonb NOT NULL DEFAULT '{{}}' CHECK (jsonb_typeof(metadata) = 'object')
);
ALTER SEQUENCE {t}_seq OWNED BY {t}.sequence_number;
CREATE TABLE {t}_keys (
    key bigint NOT NULL,
    sequence_number bigint NOT NULL,
    PRIMARY KEY (key, sequence_number)
);
CREATE INDEX {t}_event_type_idx ON {t} (event_type, sequence_number);
CREATE INDEX {t}_occurred_at_idx ON {t} (occurred_at);
"""


def old_writer(
    dsn: str, table: str, book: str, stop: threading.Event, failures: list[BaseException]
) -> int:
    """A process of the earlier version: takes its event's keys shared, inserts the event and
    its key rows without an address, commits."""
    written = 0
    with psycopg.connect(dsn) as conn:
        while not stop.is_set():
            try:
                text = json.dumps({"BookID": book, "n": written})
                keys = _native.index_keys(table, text)
                for key in sorted(keys):
                    conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (key,))
                (seq,) = conn.execute(
                    f"INSERT INTO {table} (occurred_at, event_type, payload) "
                    "VALUES (now(), 'Lent', %s::jsonb) RETURNING sequence_number",
                    (text,),
                ).fetchone()  # type: ignore[misc]
                for key in keys:
                    conn.execute(
                        f"INSERT INTO {table}_keys (key, sequence_number) VALUES (%s, %s)",
                        (key, seq),
                    )
                conn.commit()
                written += 1
            except BaseException as err:
                conn.rollback()
                failures.append(err)
    return written


def test_create_schema_migrates_an_earlier_schema_under_load(
    event_store_dsn: str, event_store_table: str
) -> None:
    table = f"{event_store_table}_old"
    with psycopg.connect(event_store_dsn, autocommit=True) as admin:
        admin.execute(OLD_SCHEMA.format(t=table))
    stop, failures, counts = threading.Event(), [], []  # type: ignore[var-annotated]
    writers = [
        threading.Thread(
            target=lambda b=b: counts.append(old_writer(event_store_dsn, table, b, stop, failures))
        )
        for b in ("b1", "b2", "b3")
    ]
    try:
        for w in writers:
            w.start()
        time.sleep(0.5)
        with EventStore(event_store_dsn, table=table) as store:
            store.create_schema()
            store.create_schema()  # idempotent
            time.sleep(0.5)
            stop.set()
            for w in writers:
                w.join(10)
            assert failures == []
            # Every event of the old writers reads back, through the key index too.
            written = sum(counts)
            assert written > 0
            assert len(store.query(EVERYTHING)) == written
            assert sum(len(store.query(lending(b))) for b in ("b1", "b2", "b3")) == written
            # The upgraded table takes new appends, guarded as ever.
            seen = store.query(lending("b1")).max_sequence_number
            assert store.append(lending("b1"), seen, Event("Lent", {"BookID": "b1"}))
            with pytest.raises(Exception, match="conflict"):
                store.append(lending("b1"), seen, Event("Lent", {"BookID": "b1"}))
            # ...and tags, which the earlier version had no column for.
            tagged = build_event_filter().matching().all_tags_of("book:b1").finalize()
            store.append(tagged, 0, Event("Lent", {"BookID": "b1"}, tags=["book:b1"]))
            assert [e.tags for e in store.query(tagged)] == [("book:b1",)]
        with psycopg.connect(event_store_dsn) as conn:
            (has_tid,) = conn.execute(
                "SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'tid'",
                (f"{table}_keys",),
            ).fetchone()  # type: ignore[misc]
            assert has_tid == 1
            # Both tables are vacuumed as the append-only tables they are.
            for name in (table, f"{table}_keys"):
                (options,) = conn.execute(
                    "SELECT reloptions FROM pg_class WHERE oid = %s::regclass", (name,)
                ).fetchone()  # type: ignore[misc]
                assert "autovacuum_vacuum_insert_scale_factor=0" in options
                assert "autovacuum_vacuum_insert_threshold=10000" in options
    finally:
        stop.set()
        with EventStore(event_store_dsn, table=table) as s:
            s._native.drop_table()
