"""A store outlives its servers' restarts and failovers: real servers (``initdb``,
``pg_basebackup``, ``pg_ctl restart``/``promote``) under load from several threads.

What users rely on: only the calls in flight when a connection breaks may fail; no
acknowledged append is lost; after a failover the same store appends to the new primary.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from conftest import AsyncDriven, sessions
from dynamic_streams import (
    AsyncEventStore,
    DatabaseError,
    Event,
    EventFilter,
    EventStore,
    OperationTimeoutError,
    P,
    build_event_filter,
)
from servers import Server, embedded_bin

pytestmark = pytest.mark.slow

EVERYTHING = build_event_filter().matching_any_event().finalize()
TABLE = "events"


def by_key(key: str) -> EventFilter:
    return (
        build_event_filter()
        .matching()
        .any_event_type_of("Ticked")
        .and_any_predicate_of(P("key", key))
        .finalize()
    )


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server(embedded_bin())
    try:
        s.start(wal_level="replica", max_wal_senders=4)
        yield s
    finally:
        s.remove()


@pytest.fixture
def replica(server: Server) -> Iterator[Server]:
    """A streaming replica of `server`, made by pg_basebackup."""
    r = Server(embedded_bin(), primary=server)
    try:
        r.start()
        yield r
    finally:
        r.remove()


def tcp(*servers: Server, **options: str) -> str:
    """A libpq multi-host DSN over TCP."""
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in servers)
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"postgresql://postgres@{hosts}/postgres" + (f"?{query}" if query else "")


@dataclass
class Load:
    """Threads that append (each event guarded by its own key) and read, counting calls,
    failures and the appends the store acknowledged."""

    store: EventStore | AsyncEventStore
    threads: int = 2
    calls: int = 0
    failures: list[BaseException] = field(default_factory=list)
    acknowledged: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _work(self, worker: int) -> None:
        loop = asyncio.new_event_loop()

        def done(result: Any) -> Any:
            return loop.run_until_complete(result) if inspect.isawaitable(result) else result

        n = 0
        while not self._stop.is_set():
            n += 1
            key = f"{worker}-{n}"
            try:
                if n % 2:
                    (seq,) = done(self.store.append(by_key(key), 0, Event("Ticked", {"key": key})))
                    with self._lock:
                        self.acknowledged[key] = seq
                else:
                    done(self.store.query(by_key(f"{worker}-{n - 1}")))
            except (DatabaseError, OperationTimeoutError) as err:
                with self._lock:
                    self.failures.append(err)
            with self._lock:
                self.calls += 1
        loop.close()

    def __enter__(self) -> Load:
        self._threads = [
            threading.Thread(target=self._work, args=(i,)) for i in range(self.threads)
        ]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def assert_nothing_acknowledged_is_lost(self, dsn: str) -> None:
        with EventStore(dsn, table=TABLE) as reader:
            stored = {e.payload["key"]: e.sequence_number for e in reader.query(EVERYTHING).events}
        missing = {k: s for k, s in self.acknowledged.items() if stored.get(k) != s}
        assert not missing, f"{len(missing)} of {len(self.acknowledged)} acknowledged appends lost"


@pytest.mark.parametrize("kind", [EventStore, AsyncEventStore])
def test_a_restart_fails_only_the_calls_in_flight(server: Server, kind: type) -> None:
    dsn = tcp(server)
    with EventStore(dsn, table=TABLE) as setup:
        setup.create_schema()
    store = kind(dsn, table=TABLE, pool_size=4)
    try:
        with Load(store) as load:
            time.sleep(1.0)
            server.stop("fast")
            server.start()
            time.sleep(1.5)
        print(
            f"restart under load ({kind.__name__}): {len(load.failures)} of {load.calls} calls failed"
        )
        # Each thread had at most one call in flight when the server went down.
        assert len(load.failures) <= load.threads, load.failures
        assert load.calls > 100
        load.assert_nothing_acknowledged_is_lost(dsn)
    finally:
        store.close()


def test_a_failover_moves_the_same_store_to_the_promoted_replica(
    server: Server, replica: Server
) -> None:
    dsn = tcp(server, replica, target_session_attrs="read-write")
    with EventStore(dsn, table=TABLE, pool_size=4) as store:
        store.create_schema()
        with Load(store) as load:
            time.sleep(1.0)
            server.stop("fast")
            stopped = time.monotonic()
            time.sleep(0.5)  # a failover manager deciding
            replica.promote()
            key = f"after-{uuid.uuid4().hex}"
            store.append(by_key(key), 0, Event("Ticked", {"key": key}))
            recovered = time.monotonic() - stopped
            time.sleep(1.0)
        print(f"failover under load: {len(load.failures)} of {load.calls} calls failed, "
              f"appends back after {recovered:.2f} s")  # fmt: skip
        assert recovered < 5.0
        assert len(load.failures) <= load.threads, load.failures
        load.assert_nothing_acknowledged_is_lost(tcp(replica))
    with psycopg.connect(replica.local_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)


def replica_serves(store: EventStore, replica: Server) -> None:
    """Waits until `replica` has replayed `create_schema` and serves `store`'s eventual reads."""
    deadline = time.monotonic() + 10
    with psycopg.connect(replica.local_dsn, autocommit=True) as conn:
        while conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone() == (None,):
            assert time.monotonic() < deadline, "the replica did not replay the schema"
            time.sleep(0.02)
    while not store.query(EVERYTHING, consistency="eventual").from_replica:
        assert time.monotonic() < deadline, "the replica served no eventual read"
        time.sleep(0.05)


def eventual_reads(store: EventStore, n: int) -> tuple[float, list[bool]]:
    """Seconds taken by `n` eventual reads, and which the replica served."""
    started = time.monotonic()
    served = [store.query(EVERYTHING, consistency="eventual").from_replica for _ in range(n)]
    return time.monotonic() - started, served


def test_a_stopped_replica_is_fallen_back_from_and_retried_later(
    server: Server, replica: Server
) -> None:
    with EventStore(tcp(server), table=TABLE, replica_dsn=tcp(replica)) as store:
        store.create_schema()
        replica_serves(store, replica)
        replica.stop("fast")
        # The pooled replica connection is dead: the read goes to the primary, no error.
        taken, served = eventual_reads(store, 20)
        assert served == [False] * 20
        assert taken < 1.0, f"20 reads took {taken:.2f} s: the down replica was retried"
        replica.start()
        replica_serves(store, replica)


def test_an_unresponsive_replica_costs_one_short_wait(server: Server) -> None:
    with socket.socket() as silent:
        # Accepts connections (the kernel completes them) and never answers.
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        hung = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/postgres"
        with EventStore(tcp(server), table=TABLE, replica_dsn=hung, timeout=30) as store:
            store.create_schema()
            taken, served = eventual_reads(store, 1)
            assert served == [False]
            assert taken < 2.0, f"the first read waited {taken:.2f} s for the replica"
            taken, served = eventual_reads(store, 20)
            assert served == [False] * 20
            assert taken < 1.0, f"20 reads took {taken:.2f} s: the hung replica was retried"


@pytest.mark.parametrize("kind", [EventStore, AsyncEventStore])
def test_an_idle_store_carries_on_after_a_restart(server: Server, kind: type) -> None:
    """Connections idle in the pool while the server restarts are dead: the next calls, an
    append first, take fresh ones instead of failing."""
    dsn = tcp(server)
    with EventStore(dsn, table=TABLE) as setup:
        setup.create_schema()
    store = AsyncDriven(AsyncEventStore(dsn, table=TABLE, pool_size=4)) if kind is AsyncEventStore else EventStore(dsn, table=TABLE, pool_size=4)  # fmt: skip
    try:
        for n in range(4):  # four connections in the pool
            store.append(by_key(f"before-{n}"), 0, Event("Ticked", {"key": f"before-{n}"}))
        server.stop("fast")
        server.start()
        for n in range(4):
            store.append(by_key(f"after-{n}"), 0, Event("Ticked", {"key": f"after-{n}"}))
            assert len(store.query(by_key(f"after-{n}")).events) == 1
    finally:
        store.close()


def test_a_replica_dsn_may_list_hosts_and_ask_for_a_read_only_one(
    server: Server, replica: Server
) -> None:
    app = f"ro-{uuid.uuid4().hex[:8]}"
    # The primary first: target_session_attrs=read-only passes over it.
    replicas = tcp(server, replica, target_session_attrs="read-only", application_name=app)
    with EventStore(tcp(server), table=TABLE, replica_dsn=replicas) as store:
        store.create_schema()
        replica_serves(store, replica)
        assert (sessions(server.local_dsn, app), sessions(replica.local_dsn, app)) == (0, 1)


def test_a_server_down_for_good_fails_one_call_late_and_the_next_at_once(server: Server) -> None:
    with EventStore(tcp(server), table=TABLE, timeout=30) as store:
        store.create_schema()
        server.stop("fast")
        started = time.monotonic()
        with pytest.raises(DatabaseError):
            store.query(EVERYTHING)
        waited = time.monotonic() - started
        assert 5 < waited < 15, f"the first call waited {waited:.1f} s for a restart"
        started = time.monotonic()
        with pytest.raises(DatabaseError, match="refused"):
            store.query(EVERYTHING)
        assert time.monotonic() - started < 1.0
        server.start()
        assert store.query(EVERYTHING).events == []


def test_a_subscription_goes_on_through_a_restart_without_losing_or_repeating_events(
    server: Server,
) -> None:
    """Writers append while the server restarts under a live subscription: every stored
    event is delivered once, in order, and every acknowledged one is among them."""
    dsn = tcp(server)
    with EventStore(dsn, table=TABLE) as store:
        store.create_schema()
        delivered: list[int] = []
        sub = store.subscribe(poll_interval=0.2)
        consumer = threading.Thread(target=lambda: delivered.extend(e.sequence_number for e in sub))
        consumer.start()
        with Load(store) as load:
            time.sleep(0.5)
            server.stop("fast")
            time.sleep(0.5)
            server.start()
            time.sleep(1.5)
        stored = [e.sequence_number for e in store.read()]
        deadline = time.monotonic() + 30
        while len(delivered) < len(stored) and time.monotonic() < deadline:
            time.sleep(0.05)
        sub.close()
        consumer.join(10)
    assert delivered == stored, "delivered once each, in order"
    assert set(load.acknowledged.values()) <= set(stored)
    assert len(stored) > 100
