"""The store vacuums its tables as it writes them: what users rely on is that recent events are
read from the key index alone (no visit to the key rows' table), long before autovacuum
would come by, and that a store told not to leaves its tables alone."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from conftest import AsyncDriven
from dynamic_streams import AsyncEventStore, Event, EventStore, P, build_event_filter
from psycopg.types.json import Jsonb

BOOK_1 = build_event_filter().matching().any_predicate_of(P("BookID", "b1")).finalize()


def events(n: int) -> list[Event]:
    return [Event("BookLent", {"BookID": f"b{i % 4}", "ReaderID": f"r{i}"}) for i in range(n)]


@pytest.fixture(params=["sync", "async"])
def open_store(
    request: pytest.FixtureRequest, event_store_dsn: str, event_store_table: str
) -> Iterator[Callable[..., Any]]:
    """Opens stores of the parametrised kind on the test's table; closes them after."""
    opened: list[Any] = []

    def open_(**options: Any) -> Any:
        if request.param == "sync":
            store: Any = EventStore(event_store_dsn, table=event_store_table, **options)
        else:
            store = AsyncDriven(
                AsyncEventStore(event_store_dsn, table=event_store_table, **options)
            )
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def vacuums(dsn: str, table: str) -> tuple[int, int]:
    """How many times the events and their key rows were vacuumed by a command (autovacuum
    is counted apart)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = %s::regclass),"
            " (SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = %s::regclass)",
            (table, f"{table}_keys"),
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def key_heap_fetches(dsn: str, table: str) -> int:
    """Visits to the key rows' table of a query for one book, as EXPLAIN ANALYZE counts them."""
    sql, params = BOOK_1.to_sql(table)
    keys = [int(k) for k in re.findall(r"-?\d+", params[0])]
    with psycopg.connect(dsn, autocommit=True) as conn:
        # The plan the store has on a table of any size; a small one would be scanned whole.
        conn.execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
        conn.execute(psycopg.sql.SQL("PREPARE q AS {}").format(psycopg.sql.SQL(sql)))  # type: ignore[arg-type]
        with psycopg.ClientCursor(conn) as cur:
            cur.execute(
                "EXPLAIN (ANALYZE, COSTS off) EXECUTE q(%s, %s)", (keys, Jsonb({"BookID": "b1"}))
            )
            plan = "\n".join(r[0] for r in cur.fetchall())
    assert "Index Only Scan" in plan, plan
    return sum(int(n) for n in re.findall(r"Heap Fetches: (\d+)", plan))


def wait_for(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("write", ["append", "append_unconditionally", "import_events"])
def test_recent_events_are_read_from_the_key_index_alone(
    open_store: Callable[..., Any], event_store_dsn: str, event_store_table: str, write: str
) -> None:
    store = open_store(vacuum_every=200)
    before = key_heap_fetches(event_store_dsn, event_store_table)
    assert before == 0  # nothing stored yet
    if write == "append":
        store.append(BOOK_1, 0, *events(200))
    elif write == "append_unconditionally":
        store.append_unconditionally(*events(200))
    else:
        assert store.import_events(events(200)) == 200
    assert wait_for(lambda: min(vacuums(event_store_dsn, event_store_table)) >= 1)
    assert key_heap_fetches(event_store_dsn, event_store_table) == 0
    assert [e.payload["ReaderID"] for e in store.query(BOOK_1).events] == [
        f"r{i}" for i in range(1, 200, 4)
    ]


def test_without_upkeep_the_key_rows_are_visited(
    open_store: Callable[..., Any], event_store_dsn: str, event_store_table: str
) -> None:
    """The check above means something: unvacuumed, each event read visits its key rows."""
    store = open_store(vacuum_every=None)
    store.append_unconditionally(*events(200))
    time.sleep(0.5)
    assert vacuums(event_store_dsn, event_store_table) == (0, 0)
    assert key_heap_fetches(event_store_dsn, event_store_table) == 50


def test_the_count_runs_across_calls(
    open_store: Callable[..., Any], event_store_dsn: str, event_store_table: str
) -> None:
    store = open_store(vacuum_every=300)
    for _ in range(2):
        store.append_unconditionally(*events(100))
    time.sleep(0.5)
    assert vacuums(event_store_dsn, event_store_table) == (0, 0)
    store.append_unconditionally(*events(100))
    assert wait_for(lambda: vacuums(event_store_dsn, event_store_table) == (1, 1))


def test_a_closed_store_starts_no_vacuum(
    open_store: Callable[..., Any], event_store_dsn: str, event_store_table: str
) -> None:
    """Closing a store right after its writes (an application about to drop its database)
    leaves no vacuum, and no connection, behind."""
    store = open_store(vacuum_every=100)
    store.append_unconditionally(*events(100))
    store.close()
    time.sleep(1.5)
    assert vacuums(event_store_dsn, event_store_table) == (0, 0)


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "dynamic_streams" and r.levelno == logging.WARNING
    ]


def test_stats_count_the_vacuums_done_and_those_the_server_skipped(
    open_store: Callable[..., Any],
    event_store_dsn: str,
    event_store_table: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An operator sees whether upkeep happens: a vacuum that ran counts as done; one that
    found a table locked by another session (and skipped it) counts as failed, and the
    library's logger says which tables and why."""
    store = open_store(vacuum_every=50)
    assert (store.stats().vacuums, store.stats().failed_vacuums) == (0, 0)
    store.append_unconditionally(*events(50))
    assert wait_for(lambda: store.stats().vacuums == 1)
    assert store.stats().failed_vacuums == 0
    assert vacuums(event_store_dsn, event_store_table) == (1, 1)
    assert warnings_logged(caplog) == []
    with psycopg.connect(event_store_dsn) as other:
        other.execute(f'LOCK TABLE "{event_store_table}_keys" IN SHARE UPDATE EXCLUSIVE MODE')
        store.append_unconditionally(*events(50))
        assert wait_for(lambda: store.stats().failed_vacuums == 1)
    assert store.stats().vacuums == 1
    assert vacuums(event_store_dsn, event_store_table) == (2, 1)  # the keys were skipped
    [warning] = warnings_logged(caplog)
    assert f'"{event_store_table}_keys"' in warning
    assert "lock not available" in warning


def test_a_role_that_may_not_vacuum_its_tables_counts_failed_vacuums(
    event_store_dsn: str, event_store_table: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The production case: the application's role writes the tables but does not own
    them. Its store's vacuums are skipped by the server, its statistics say so, and the
    library's logger says why."""
    role = f"writer_{event_store_table[-8:]}"
    with psycopg.connect(event_store_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        try:
            for table in (event_store_table, f"{event_store_table}_keys"):
                admin.execute(f'GRANT SELECT, INSERT ON "{table}" TO {role}')
            admin.execute(f'GRANT USAGE ON SEQUENCE "{event_store_table}_seq" TO {role}')
            info = psycopg.conninfo.conninfo_to_dict(event_store_dsn) | {"user": role}
            info.pop("password", None)
            with EventStore(
                psycopg.conninfo.make_conninfo(**info), table=event_store_table, vacuum_every=50
            ) as store:
                store.append_unconditionally(*events(50))
                assert wait_for(lambda: store.stats().failed_vacuums == 1)
                assert store.stats().vacuums == 0
            assert vacuums(event_store_dsn, event_store_table) == (0, 0)
            [warning] = warnings_logged(caplog)
            assert "permission denied" in warning
            assert f'"{event_store_table}"' in warning
            assert f'"{event_store_table}_keys"' in warning
        finally:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")
