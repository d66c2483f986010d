"""The benchmark server, the primed stores, and the implementations compared side by side.

- ``ours-sync`` / ``ours-async``: this library.
- ``psycopg``: the seed's design written cleanly with psycopg 3: its schema (GIN
  ``jsonb_path_ops`` on the payload), its query, and its single-statement append (check and
  insert in one auto-commit statement, which is not safe under concurrency).
- ``eventsourcing``: the ``eventsourcing`` package's PostgreSQL DCB recorder, with BookID
  and ReaderID as tags.
- ``floor-select`` / ``floor-transaction`` (the query only): the least a query can take on
  this machine, see :class:`Floor`.

Every store holds the same generated data set; see :mod:`dataset`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import dataset
import psycopg
import psycopg.sql
from dynamic_streams import (
    DSN_ENV,
    AsyncEventStore,
    ConcurrencyConflictError,
    Event,
    EventStore,
    P,
    _native,
    build_event_filter,
)
from dynamic_streams.embedded import EmbeddedPostgres
from psycopg import pq
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

DATA_DIR = Path(__file__).resolve().parent.parent / ".data"


def memory_mb() -> int | None:
    """The machine's memory in MiB, None when /proc does not say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


# PostgreSQL's usual guidance for a dedicated server: shared buffers a quarter of memory, the
# planner told three quarters are cached. The 10M store (5.1 GB) fits in 24 GiB's quarter.
_MEMORY_MB = memory_mb() or 8192
SERVER_SETTINGS = {
    "shared_buffers": f"{max(128, _MEMORY_MB // 4)}MB",
    "effective_cache_size": f"{max(512, _MEMORY_MB * 3 // 4)}MB",
    "work_mem": "32MB",
    "maintenance_work_mem": "1GB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "random_page_cost": "1.1",
}


class Conflict(Exception):
    """A guarded append failed (whatever the implementation's own exception)."""


@dataclass(frozen=True)
class Ev:
    """What the decisions read of an event."""

    sequence_number: int
    event_type: str
    payload: dict[str, Any]


def progress(label: str, done: int, total: int, started: float) -> None:
    if done != total and done % 20000:
        return
    width = 30
    filled = width * done // max(total, 1)
    rate = done / max(time.monotonic() - started, 1e-9)
    sys.stderr.write(
        f"\r  {label:<28} [{'#' * filled}{'.' * (width - filled)}] {done:>10,}/{total:,} {rate:,.0f}/s"
    )
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


# --- the server ------------------------------------------------------------------------------


class Server:
    """The DSN from the environment, else an embedded server whose data directory in
    ``.data/`` is kept between runs (so primed stores are reused)."""

    def __init__(self, dsn: str | None = None) -> None:
        """`dsn`: a server to use as it is (the as-found configuration)."""
        self.embedded: EmbeddedPostgres | None = None
        given = dsn is not None
        dsn = dsn or os.environ.get(DSN_ENV)
        if not dsn:
            data = DATA_DIR / "bench-pg18"
            DATA_DIR.mkdir(exist_ok=True)
            os.chmod(DATA_DIR, 0o755)
            self.embedded = EmbeddedPostgres(data)
            dsn = self.embedded.dsn
            if self._apply_settings(dsn):
                self.embedded.stop()
                self.embedded = EmbeddedPostgres(data)
                dsn = self.embedded.dsn
                if self._apply_settings(dsn):
                    raise RuntimeError(
                        f"the server in {data} still runs with old settings: it was started "
                        "by another process, which keeps it running; stop that server first"
                    )
        self.dsn = dsn
        with psycopg.connect(dsn, autocommit=True) as conn:
            self.version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            buffers, huge = (
                conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                for name in ("shared_buffers", "huge_pages_status")
            )
        where = (
            "embedded, stock settings"
            if given
            else "embedded"
            if self.embedded is not None
            else "the server at the DSN"
        )
        self.description = f"{self.version} ({where}; shared buffers {buffers}, huge pages {huge})"

    @staticmethod
    def _apply_settings(dsn: str) -> bool:
        """Writes SERVER_SETTINGS with ALTER SYSTEM; True when a restart is needed (a setting
        was written, or one written earlier is not in effect yet)."""
        restart = False
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name, value in SERVER_SETTINGS.items():
                row = conn.execute(
                    "SELECT bool_or(applied) FROM pg_file_settings WHERE name = %s AND setting = %s",
                    (name, value),
                ).fetchone()
                applied = None if row is None else row[0]
                if applied is None:
                    conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
                restart = restart or not applied
        return restart

    def libpq_params(self) -> dict[str, Any]:
        """host, port, user, dbname, password as separate values (for eventsourcing)."""
        url = urlparse(self.dsn)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        return {
            "host": query.get("host") or url.hostname or "localhost",
            "port": url.port or int(query.get("port", 5432)),
            "user": url.username or "postgres",
            "password": url.password or "",
            "dbname": (url.path or "/postgres").lstrip("/") or "postgres",
        }

    def stop(self) -> None:
        if self.embedded is not None:
            # Keep the data directory: the next run reuses the primed stores.
            self.embedded._owned_dir = None
            self.embedded.stop()


# --- priming ---------------------------------------------------------------------------------

SEED_DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE {schema}.events (
    sequence_number bigserial PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    event_type text NOT NULL,
    payload jsonb NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{{}}'
);
"""
SEED_INDEXES = """
CREATE INDEX ON {schema}.events (event_type);
CREATE INDEX ON {schema}.events (occurred_at);
CREATE INDEX ON {schema}.events USING gin (payload jsonb_path_ops);
"""


def _primed(
    conn: psycopg.Connection[Any], name: str, events: int, version: int = dataset.VERSION
) -> bool:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS bench_primed (name text PRIMARY KEY, events bigint, version int)"
    )
    row = conn.execute(
        "SELECT events, version FROM bench_primed WHERE name = %s", (name,)
    ).fetchone()
    return row == (events, version)


def _trim(
    conn: psycopg.Connection[Any],
    events: int,
    table: str,
    column: str,
    *dependents: tuple[str, str],
) -> None:
    """Deletes what earlier runs appended to a primed store (every benchmark appends: a store
    kept between runs would grow with each), so that each run starts from the data set's
    ``events`` events. ``column`` numbers the events; each dependent table is named with its
    column that refers to it."""
    (top,) = conn.execute(f"SELECT coalesce(max({column}), 0) FROM {table}").fetchone()  # type: ignore[misc]
    if top <= events:
        return
    sys.stderr.write(f"  {table}: removing {top - events:,} events appended by earlier runs\n")
    # Dependents first, with foreign keys unchecked: a key whose column has no index of its
    # own (eventsourcing's tags) would scan the dependent table for each event deleted.
    conn.execute("SET session_replication_role = replica")
    for dependent, refers in dependents:
        conn.execute(f"DELETE FROM {dependent} WHERE {refers} > %s", (events,))
    conn.execute(f"DELETE FROM {table} WHERE {column} > %s", (events,))
    conn.execute("RESET session_replication_role")
    conn.execute("SELECT setval(pg_get_serial_sequence(%s, %s), %s)", (table, column, events))
    for name in (table, *(d for d, _ in dependents)):
        conn.execute(f"VACUUM ANALYZE {name}")


def _mark(
    conn: psycopg.Connection[Any], name: str, events: int, version: int = dataset.VERSION
) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS bench_primed (name text PRIMARY KEY, events bigint, version int)"
    )
    conn.execute(
        "INSERT INTO bench_primed VALUES (%s, %s, %s) ON CONFLICT (name) DO UPDATE "
        "SET events = excluded.events, version = excluded.version",
        (name, events, version),
    )


def _copy_events(
    conn: psycopg.Connection[Any], table: str, rows: Iterable[dataset.Row], label: str, total: int
) -> None:
    started = time.monotonic()
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY {table} (occurred_at, event_type, payload, metadata) FROM STDIN") as copy,
    ):
        for i, row in enumerate(rows, 1):
            copy.write_row((row.occurred_at, row.event_type, row.payload_json(), "{}"))
            progress(label, i, total, started)


# Bump when this library's schema changes: its stores are rebuilt, the baselines' are kept.
OURS_LAYOUT = 6
OURS_VERSION = dataset.VERSION * 100 + OURS_LAYOUT


def prime_ours(server: Server, events: int) -> str:
    """Loads the data set into this library's table ``bench_<N>.events`` and its key index
    (COPY, indexes built after); returns the table name."""
    schema = f"bench_{events}"
    table = f"{schema}.events"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        if _primed(conn, table, events, OURS_VERSION):
            _trim(
                conn, events, table, "sequence_number", (f"{schema}.events_keys", "sequence_number")
            )
            return table
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        with EventStore(server.dsn, table=table, timeout=None) as store:
            store.create_schema()
        # Built again after the load: the events' secondary indexes (by create_schema) and the
        # key index's primary key (from its definition as the schema made it).
        conn.execute(f"DROP INDEX {schema}.events_event_type_idx, {schema}.events_occurred_at_idx")
        (key_index,) = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'events_keys_pkey' "
            "AND connamespace = %s::regnamespace",
            (schema,),
        ).fetchone()  # type: ignore[misc]
        conn.execute(f"ALTER TABLE {schema}.events_keys DROP CONSTRAINT events_keys_pkey")
        _, rows = dataset.generate(events)
        started = time.monotonic()
        with conn.cursor() as cur:
            keys: list[tuple[int, int]] = []
            with cur.copy(
                f"COPY {table} (sequence_number, occurred_at, event_type, payload, metadata) FROM STDIN"
            ) as copy:
                for i, row in enumerate(rows, 1):
                    payload = row.payload_json()
                    copy.write_row((i, row.occurred_at, row.event_type, payload, "{}"))
                    keys.extend((k, i) for k in _native.index_keys(table, payload))
                    progress(table, i, events, started)
            started = time.monotonic()
            cur.execute(
                f"CREATE UNLOGGED TABLE {schema}.keys_load (key bigint, sequence_number bigint)"
            )
            with cur.copy(f"COPY {schema}.keys_load (key, sequence_number) FROM STDIN") as copy:
                for j, key_row in enumerate(keys, 1):
                    copy.write_row(key_row)
                    progress(f"{schema}.events_keys", j, len(keys), started)
            cur.execute(f"SELECT setval('{schema}.events_seq', %s)", (events,))
        sys.stderr.write("  addressing keys and building indexes ...\n")
        # Each key row holds where its event's row lies, and the rows lie in sequence order,
        # as the store's appends write them.
        conn.execute(
            f"INSERT INTO {schema}.events_keys (key, sequence_number, tid) "
            f"SELECT k.key, k.sequence_number, e.ctid FROM {schema}.keys_load k "
            f"JOIN {table} e USING (sequence_number) ORDER BY k.sequence_number"
        )
        conn.execute(f"DROP TABLE {schema}.keys_load")
        conn.execute(
            f"ALTER TABLE {schema}.events_keys ADD CONSTRAINT events_keys_pkey {key_index}"
        )
        with EventStore(server.dsn, table=table, timeout=None) as store:
            store.create_schema()
        conn.execute(f"VACUUM ANALYZE {table}")
        conn.execute(f"VACUUM ANALYZE {schema}.events_keys")
        _mark(conn, table, events, OURS_VERSION)
    return table


def prime_seed(server: Server, events: int) -> str:
    schema = f"seed_{events}"
    table = f"{schema}.events"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        if _primed(conn, table, events):
            _trim(conn, events, table, "sequence_number")
            return table
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(SEED_DDL.format(schema=schema))
        _, rows = dataset.generate(events)
        _copy_events(conn, table, rows, table, events)
        sys.stderr.write("  building indexes ...\n")
        conn.execute(SEED_INDEXES.format(schema=schema))
        conn.execute(f"VACUUM ANALYZE {table}")
        _mark(conn, table, events)
    return table


def eventsourcing_recorder(server: Server, events: int, pool_size: int = 8) -> Any:
    from eventsourcing.dcb.postgres_tt import PostgresDCBRecorderTT
    from eventsourcing.postgres import PostgresDatastore

    # Its DDL names the events table unqualified, so it lives in the default schema.
    datastore = PostgresDatastore(**server.libpq_params(), pool_size=pool_size)
    recorder = PostgresDCBRecorderTT(datastore, events_table_name=f"es{events}")
    # Its append functions are named per schema, not per table: made again here, they write
    # to this store's tables, whichever store of another size made them last.
    recorder.create_table()
    return recorder


def prime_eventsourcing(server: Server, events: int) -> str:
    recorder = eventsourcing_recorder(server, events, pool_size=1)
    main, tags = recorder.events_table_name, recorder.tags_table_name
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        if _primed(conn, main, events):
            recorder.datastore.close()
            _trim(conn, events, main, "id", (tags, "main_id"))
            return main
        conn.execute(f"DROP TABLE IF EXISTS {tags}, {main} CASCADE")
        recorder.create_table()
        recorder.datastore.close()
        _, rows = dataset.generate(events)
        started = time.monotonic()
        with conn.cursor() as cur:
            with cur.copy(f"COPY {main} (id, type, data, tags) FROM STDIN") as copy:
                tag_rows = []
                for i, row in enumerate(rows, 1):
                    row_tags = row.tags()
                    copy.write_row((i, row.event_type, row.payload_json().encode(), row_tags))
                    tag_rows.extend((t, i) for t in row_tags)
                    progress(main, i, events, started)
            started = time.monotonic()
            with cur.copy(f"COPY {tags} (tag, main_id) FROM STDIN") as copy:
                for j, tag_row in enumerate(tag_rows, 1):
                    copy.write_row(tag_row)
                    progress(tags, j, len(tag_rows), started)
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{main}', 'id'), %s)", (events,))
        conn.execute(f"VACUUM ANALYZE {main}")
        conn.execute(f"VACUUM ANALYZE {tags}")
        _mark(conn, main, events)
    return main


# --- as found: a stock server, each store written through its own write path ----------------

LOAD_BATCH = 2000


def _batches(rows: Iterable[dataset.Row]) -> Iterator[list[dataset.Row]]:
    batch: list[dataset.Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == LOAD_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def load_ours(server: Server, events: int) -> str:
    """This library's store, written through `append` in batches (each guarded by a
    boundary no event matches): what a live system's table looks like, never vacuumed."""
    schema = f"bench_{events}"
    table = f"{schema}.events"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
        nothing = build_event_filter().matching().any_event_type_of("NoSuchEvent").finalize()
        started = time.monotonic()
        with EventStore(server.dsn, table=table, timeout=None) as store:
            store.create_schema()
            done = 0
            for batch in _batches(dataset.generate(events)[1]):
                store.append(
                    nothing,
                    0,
                    *(Event(r.event_type, r.payload, occurred_at=r.occurred_at) for r in batch),
                )
                done += len(batch)
                progress(table, done, events, started)
        _mark(conn, table, events, OURS_VERSION)
    return table


def load_seed(server: Server, events: int) -> str:
    """The seed design's table, written by INSERTs in batches, one transaction each."""
    schema = f"seed_{events}"
    table = f"{schema}.events"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(SEED_DDL.format(schema=schema) + SEED_INDEXES.format(schema=schema))
        started = time.monotonic()
        done = 0
        with conn.cursor() as cur:
            for batch in _batches(dataset.generate(events)[1]):
                with conn.transaction():
                    cur.executemany(
                        f"INSERT INTO {table} (occurred_at, event_type, payload) VALUES (%s, %s, %s)",
                        [(r.occurred_at, r.event_type, Jsonb(r.payload)) for r in batch],
                    )
                done += len(batch)
                progress(table, done, events, started)
        _mark(conn, table, events)
    return table


def load_eventsourcing(server: Server, events: int) -> str:
    """eventsourcing's DCB tables, written through the recorder's `append` in batches."""
    from eventsourcing.dcb.api import DCBEvent

    recorder = eventsourcing_recorder(server, events, pool_size=1)
    main, tags = recorder.events_table_name, recorder.tags_table_name
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {tags}, {main} CASCADE")
        recorder.create_table()
        started = time.monotonic()
        done = 0
        for batch in _batches(dataset.generate(events)[1]):
            recorder.append(
                [
                    DCBEvent(type=r.event_type, data=r.payload_json().encode(), tags=r.tags())
                    for r in batch
                ]
            )
            done += len(batch)
            progress(main, done, events, started)
        recorder.datastore.close()
        _mark(conn, main, events)
    return main


SEED_EXPLAIN = (
    "SELECT sequence_number, occurred_at, event_type, payload, metadata FROM {table} "
    "WHERE event_type = ANY($1::text[]) AND (payload @> $2::jsonb OR payload @> $3::jsonb) "
    "ORDER BY sequence_number"
)


def query_buffers(
    server: Server, shape: dataset.Shape, samples: int = 21
) -> dict[str, dict[str, int]]:
    """Median shared buffers of one lending query, for this library and the seed design, over
    `samples` pairs no benchmark uses."""
    rng = random.Random(99)
    picks = [(rng.choice(shape.copies), rng.choice(shape.readers)) for _ in range(samples)]
    found: dict[str, list[dict[str, int]]] = {"ours": [], "psycopg": []}
    seed = SEED_EXPLAIN.format(table=f"seed_{shape.events}.events")
    for book, reader in picks:
        sql, keys = lending_lookup(book, reader, f"bench_{shape.events}.events")
        predicates = [Jsonb({"BookID": book}), Jsonb({"ReaderID": reader})]
        found["ours"].append(buffers(server, sql, [keys, dataset.ALL_TYPES, predicates]))
        found["psycopg"].append(buffers(server, seed, [dataset.ALL_TYPES, *predicates]))
    return {
        name: {k: int(statistics.median(r[k] for r in runs)) for k in runs[0]}
        for name, runs in found.items()
    }


def buffers(server: Server, sql: str, params: Sequence[Any]) -> dict[str, int]:
    """Shared buffers one run of `sql` touched, as EXPLAIN (ANALYZE, BUFFERS) counts them."""
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("PREPARE q AS {}").format(psycopg.sql.SQL(sql)))  # type: ignore[arg-type]
        with psycopg.ClientCursor(conn) as cur:
            marks = ", ".join(["%s"] * len(params))
            cur.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE q({marks})", params)
            (plan,) = cur.fetchone()  # type: ignore[misc]
    top = plan[0]["Plan"]
    return {
        k: int(top.get(f"Shared {k.title()} Blocks", 0))
        for k in ("hit", "read", "dirtied", "written")
    }


def settle(server: Server) -> None:
    """Tidy tables before a run: earlier runs' appends leave GIN pending lists and
    unvacuumed pages behind, which would slow the baselines run after run. Then a
    checkpoint, so that writing out the dirty pages (gigabytes after priming) does not
    compete with the first measurements for the machine's cores and disk."""
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")


def vacuum(server: Server) -> None:
    """VACUUM, without ANALYZE (statistics, and so plans, stay as the run began)."""
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("VACUUM")


def prewarm(server: Server, size: int) -> None:
    """Empties shared buffers, then reads the stores of ``size`` events (tables and indexes)
    into them: every measurement starts from the same state, with no store paying
    first-touch reads the others were spared, and no earlier store crowding out this one
    (the 10M store's 5.1 GB fits in a quarter of 24 GiB only alone)."""
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_buffercache")
            conn.execute("SELECT pg_buffercache_evict_all()")
        except psycopg.Error:
            # Before PostgreSQL 18, or without the contrib modules: prewarm over what is there.
            sys.stderr.write("  (cannot empty shared buffers on this server; prewarming anyway)\n")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        conn.execute(
            "SELECT pg_prewarm(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'i') AND (n.nspname IN (%s, %s) OR c.relname LIKE %s)",
            (f"bench_{size}", f"seed_{size}", f"es{size}\\_%"),
        )


# --- the implementations ---------------------------------------------------------------------


def lending_filter(book: str, reader: str) -> Any:
    return (
        build_event_filter()
        .matching()
        .any_event_type_of(*dataset.ALL_TYPES)
        .and_any_predicate_of(P("BookID", book), P("ReaderID", reader))
        .finalize()
    )


def lending_lookup(book: str, reader: str, table: str) -> tuple[str, list[int]]:
    """The lending query's SQL for `table` and its first parameter, the key index lookup's
    keys, read from what `to_sql` shows (`BigIntArray([...])`; the types and the predicates
    follow, known here: the lending filter's)."""
    sql, shown = lending_filter(book, reader).to_sql(table)
    return sql, [int(k) for k in re.findall(r"-?\d+", shown[0])]


class Ours:
    name = "ours-sync"

    def __init__(self, server: Server, table: str, pool_size: int = 8) -> None:
        self.store = EventStore(server.dsn, table=table, pool_size=pool_size, timeout=None)

    def query(self, book: str, reader: str) -> tuple[Sequence[Any], int]:
        result = self.store.query(lending_filter(book, reader))
        return result.events, result.max_sequence_number

    def append(
        self, book: str, reader: str, expected: int, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        try:
            self.store.append(
                lending_filter(book, reader), expected, *(Event(t, p) for t, p in events)
            )
        except ConcurrencyConflictError as err:
            raise Conflict from err

    def close(self) -> None:
        self.store.close()


class OursAsync:
    """The asyncio store, each call awaited on one running event loop."""

    name = "ours-async"

    def __init__(self, server: Server, table: str, pool_size: int = 8) -> None:
        self.store = AsyncEventStore(server.dsn, table=table, pool_size=pool_size, timeout=None)
        self.loop = asyncio.new_event_loop()

    def query(self, book: str, reader: str) -> tuple[Sequence[Any], int]:
        result = self.loop.run_until_complete(self.store.query(lending_filter(book, reader)))
        return result.events, result.max_sequence_number

    def append(
        self, book: str, reader: str, expected: int, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        coro = self.store.append(
            lending_filter(book, reader), expected, *(Event(t, p) for t, p in events)
        )
        try:
            self.loop.run_until_complete(coro)
        except ConcurrencyConflictError as err:
            raise Conflict from err

    def close(self) -> None:
        self.store.close()
        self.loop.close()


class Psycopg:
    """The seed's design with psycopg 3 and bind parameters."""

    name = "psycopg"

    def __init__(self, server: Server, table: str, pool_size: int = 8) -> None:
        self.pool = ConnectionPool(
            server.dsn,
            min_size=pool_size,
            max_size=pool_size,
            kwargs={"autocommit": True},
            open=True,
        )
        condition = "event_type = ANY(%(types)s) AND (payload @> %(book)s OR payload @> %(reader)s)"
        self.select = (
            f"SELECT sequence_number, occurred_at, event_type, payload, metadata FROM {table} "
            f"WHERE {condition} ORDER BY sequence_number"
        )
        # The seed's append: the check and the insert in one auto-commit statement (fast, and
        # not safe under concurrency: both of two racing appenders can pass the check). The
        # check counts the matches rather than asking whether one EXISTS: planning for the
        # first match, the server sometimes judged a sequential scan cheaper, with statistics
        # from some samples (as found, after the autoanalyze of a load: 220 ms an append
        # instead of 0.75 ms). Counted, the matches are found through the index.
        self.insert = (
            f"INSERT INTO {table} (occurred_at, event_type, payload, metadata) "
            f"SELECT o, e, p, m FROM unnest(%(o)s::timestamptz[], %(e)s::text[], %(p)s::jsonb[], %(m)s::jsonb[]) AS u(o, e, p, m) "
            f"WHERE (SELECT count(*) FROM {table} WHERE {condition} AND sequence_number > %(expected)s) = 0"
        )

    @staticmethod
    def _params(book: str, reader: str) -> dict[str, Any]:
        return {
            "types": dataset.ALL_TYPES,
            "book": Jsonb({"BookID": book}),
            "reader": Jsonb({"ReaderID": reader}),
        }

    def query(self, book: str, reader: str) -> tuple[Sequence[Any], int]:
        with self.pool.connection() as conn:
            rows = conn.execute(self.select, self._params(book, reader)).fetchall()
        events = [Ev(r[0], r[2], r[3]) for r in rows]
        return events, events[-1].sequence_number if events else 0

    def append(
        self, book: str, reader: str, expected: int, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        now = dataset.START.now(dataset.START.tzinfo)
        params = self._params(book, reader) | {
            "o": [now] * len(events),
            "e": [t for t, _ in events],
            "p": [Jsonb(p) for _, p in events],
            "m": [Jsonb({})] * len(events),
            "expected": expected,
        }
        with self.pool.connection() as conn:
            # Never server-side prepared: psycopg's automatic preparation turns this statement
            # into a generic plan that walks the primary key from `expected` on (measured at
            # 1M events: 10 ms instead of 1.5 ms). The baseline gets its faster form.
            if conn.execute(self.insert, params, prepare=False).rowcount == 0:
                raise Conflict

    def close(self) -> None:
        self.pool.close()


class Floor:
    """A floor under any client's query: libpq (psycopg's C ``pq`` layer) sends this library's
    own prepared statement, its text parameters made before the clock starts (``prepared``),
    and leaves the rows it gets back undecoded. With ``transaction``, inside the read's
    transaction as this library runs it (``BEGIN``, its two key locks, the SELECT,
    ``COMMIT``), all four under one Sync: the least a correct read can cost here.
    Without, the bare SELECT alone."""

    def __init__(self, server: Server, table: str, transaction: bool) -> None:
        self.name = "floor-transaction" if transaction else "floor-select"
        self.table = table
        self.transaction = transaction
        # The session settings this library's connections start with (rust/pool.rs).
        self.conn = psycopg.connect(
            server.dsn,
            autocommit=True,
            options="-c plan_cache_mode=force_generic_plan -c enable_seqscan=off",
        )
        self.pg = self.conn.pgconn
        sql, _ = lending_filter("book", "reader").to_sql(table)
        for name, text in (
            (b"select", sql),
            (b"begin", "BEGIN ISOLATION LEVEL READ COMMITTED, READ ONLY"),
            (b"lock", "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS u(k)"),
            (b"commit", "COMMIT"),
        ):
            made = self.pg.prepare(name, text.encode())
            if made.status != pq.ExecStatus.COMMAND_OK:
                raise RuntimeError(made.get_error_field(pq.DiagnosticField.MESSAGE_PRIMARY))
        if transaction:
            self.pg.enter_pipeline_mode()

    def prepared(self, book: str, reader: str) -> tuple[bytes, bytes, bytes]:
        """The SELECT's parameters in text form: the filter's keys (as `to_sql` shows them),
        its types, its predicates."""
        _, lookup = lending_lookup(book, reader, self.table)
        keys = "{" + ",".join(map(str, lookup)) + "}"
        predicates = (json.dumps({"BookID": book}), json.dumps({"ReaderID": reader}))
        return (
            keys.encode(),
            ("{" + ",".join(dataset.ALL_TYPES) + "}").encode(),
            ("{" + ",".join(json.dumps(p) for p in predicates) + "}").encode(),
        )

    def query(self, params: Sequence[bytes]) -> tuple[Sequence[Any], int]:
        pg = self.pg
        if not self.transaction:
            rows = pg.exec_prepared(b"select", params, result_format=1)
        else:
            # The read locks its lookup's keys: the same two numbers serve here.
            pg.send_query_prepared(b"begin", [])
            pg.send_query_prepared(b"lock", [params[0]])
            pg.send_query_prepared(b"select", params, result_format=1)
            pg.send_query_prepared(b"commit", [])
            pg.pipeline_sync()
            rows = None
            while (r := pg.get_result()) is None or r.status != pq.ExecStatus.PIPELINE_SYNC:
                if r is not None and r.status == pq.ExecStatus.TUPLES_OK and r.nfields > 1:
                    rows = r
        if rows is None or rows.status != pq.ExecStatus.TUPLES_OK:
            raise RuntimeError("the floor's query failed")
        n = rows.ntuples
        last = rows.get_value(n - 1, 0) if n else None
        return range(n), int.from_bytes(last, "big", signed=True) if last else 0

    def close(self) -> None:
        self.conn.close()


class EventSourcing:
    """eventsourcing's PostgreSQL DCB recorder; the position to append after is the head
    its read returns."""

    name = "eventsourcing"

    def __init__(self, server: Server, events: int, pool_size: int = 8) -> None:
        from eventsourcing.dcb.api import DCBAppendCondition, DCBEvent, DCBQuery, DCBQueryItem

        self._api = (DCBAppendCondition, DCBEvent, DCBQuery, DCBQueryItem)
        self.recorder = eventsourcing_recorder(server, events, pool_size)

    def _query(self, book: str, reader: str) -> Any:
        _, _, DCBQuery, DCBQueryItem = self._api
        return DCBQuery(
            items=[
                DCBQueryItem(types=dataset.ALL_TYPES, tags=[f"BookID:{book}"]),
                DCBQueryItem(types=dataset.ALL_TYPES, tags=[f"ReaderID:{reader}"]),
            ]
        )

    def query(self, book: str, reader: str) -> tuple[Sequence[Any], int]:
        response = self.recorder.read(self._query(book, reader))
        events = [Ev(s.position, s.event.type, json.loads(s.event.data)) for s in response]
        return events, response.head or 0

    def append(
        self, book: str, reader: str, expected: int, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        from eventsourcing.persistence import IntegrityError

        DCBAppendCondition, DCBEvent, _, _ = self._api
        new = [
            DCBEvent(
                type=t,
                data=json.dumps(p).encode(),
                tags=[f"{k}:{p[k]}" for k in ("BookID", "ReaderID") if k in p],
            )
            for t, p in events
        ]
        condition = DCBAppendCondition(
            fail_if_events_match=self._query(book, reader), after=expected
        )
        try:
            self.recorder.append(new, condition)
        except IntegrityError as err:
            raise Conflict from err

    def close(self) -> None:
        self.recorder.datastore.close()
