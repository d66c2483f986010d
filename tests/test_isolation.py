"""The guard holds whatever isolation level the server, the role or the DSN sets as default.

The design assumes READ COMMITTED: a statement that waited for the guard's locks must see
what the transactions it waited for committed. Under REPEATABLE READ or SERIALIZABLE the
snapshot is taken when the lock statement starts, before the wait, so a store that simply
inherited such a default would let two appenders with one expectation both store, and a
strong read miss an event committed while it waited.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from dynamic_streams import ConcurrencyConflictError, Event, EventStore, P, build_event_filter
from psycopg import sql
from psycopg.conninfo import make_conninfo
from test_guard_locks import begin_write

pytestmark = pytest.mark.slow

FILTER = build_event_filter().matching().any_predicate_of(P("BookID", "b1")).finalize()
LEVELS = ["read committed", "repeatable read", "serializable"]
WAYS = ["database", "role", "dsn"]


@pytest.fixture(
    params=[(level, way) for level in LEVELS for way in WAYS], ids=lambda p: "-".join(p)
)
def dsn(request: pytest.FixtureRequest, event_store_dsn: str) -> Iterator[str]:
    """A fresh database whose sessions default to the level, set the way the param says."""
    level, way = request.param
    name = f"iso_{uuid.uuid4().hex[:12]}"
    setting = sql.SQL("SET default_transaction_isolation = {}").format(sql.Literal(level))
    with psycopg.connect(event_store_dsn, autocommit=True) as admin:
        if way == "role":
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
            admin.execute(sql.SQL("ALTER ROLE {} ").format(sql.Identifier(name)) + setting)
            admin.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(name)
                )
            )
            dsn = make_conninfo(event_store_dsn, dbname=name, user=name)
        else:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            if way == "database":
                admin.execute(sql.SQL("ALTER DATABASE {} ").format(sql.Identifier(name)) + setting)
                dsn = make_conninfo(event_store_dsn, dbname=name)
            else:
                escaped = level.replace(" ", "\\ ")
                options = f"-c default_transaction_isolation={escaped}"
                dsn = make_conninfo(event_store_dsn, dbname=name, options=options)
        with psycopg.connect(dsn) as probe:  # the setting is really in effect
            (shown,) = probe.execute("SHOW default_transaction_isolation").fetchone()  # type: ignore[misc]
            assert shown == level
        yield dsn
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        if way == "role":
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def wait_until(dsn: str, condition: str) -> None:
    """Polls until ``condition`` (a count over pg_locks) is positive (5 s at most)."""
    with psycopg.connect(dsn, autocommit=True) as observer:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            (n,) = observer.execute(f"SELECT count(*) FROM pg_locks WHERE {condition}").fetchone()  # type: ignore[misc]
            if n:
                return
            time.sleep(0.02)
    raise AssertionError(f"nothing in pg_locks matched {condition}")


def in_thread(call: Callable[[], Any], outcome: list[Any]) -> threading.Thread:
    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as err:
            outcome.append(err)

    t = threading.Thread(target=run)
    t.start()
    return t


def test_two_appenders_with_one_expectation_store_one_event(dsn: str) -> None:
    other = build_event_filter().matching().any_predicate_of(P("BookID", "b0")).finalize()
    with (
        EventStore(dsn, pool_size=1) as a,
        EventStore(dsn, pool_size=1) as b,
        psycopg.connect(dsn) as blocker,
    ):
        a.create_schema()
        for store in (a, b):  # prepare the statements (preparing waits for a table lock)
            store.append(other, store.query(other).max_sequence_number, Event("Lent", {}))
        # A takes the guard's locks, then waits for the table; B waits for A's locks with
        # its transaction already begun. Then A commits, and B must see A's event.
        blocker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        outcome: list[Any] = []
        first = in_thread(lambda: a.append(FILTER, 0, Event("Lent", {"BookID": "b1"})), outcome)
        wait_until(dsn, "locktype = 'relation' AND NOT granted")
        second = in_thread(lambda: b.append(FILTER, 0, Event("Lent", {"BookID": "b1"})), outcome)
        wait_until(dsn, "locktype = 'advisory' AND NOT granted")
        blocker.rollback()
        first.join(10)
        second.join(10)
        assert len(outcome) == 2
        assert sum(isinstance(o, list) for o in outcome) == 1, outcome
        assert sum(isinstance(o, ConcurrencyConflictError) for o in outcome) == 1, outcome
        assert len(a.query(FILTER)) == 1


def test_a_strong_read_sees_the_writer_it_waited_for(dsn: str) -> None:
    with EventStore(dsn) as store, psycopg.connect(dsn) as writer:
        store.create_schema()
        begin_write(writer, "events", {"BookID": "b1"})
        outcome: list[Any] = []
        reader = in_thread(lambda: store.query(FILTER), outcome)
        wait_until(dsn, "locktype = 'advisory' AND NOT granted")
        writer.commit()
        reader.join(10)
        assert [e.payload for e in outcome[0]] == [{"BookID": "b1"}]
