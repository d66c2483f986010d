"""Projections that keep up: a projector resumes from its checkpoint after a crash, handles
every event at least once (exactly once with the read model's own connection), and follows
live appends until stopped."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
import pytest
from dynamic_streams import (
    AsyncEventStore,
    AsyncProjector,
    Event,
    EventStore,
    InvalidInputError,
    Projector,
    RecordedEvent,
    build_event_filter,
)

LENT = build_event_filter().matching().any_event_type_of("BookLent").finalize()


def lend(store: EventStore, n: int, start: int = 0) -> None:
    store.append_unconditionally(*(Event("BookLent", {"i": i}) for i in range(start, start + n)))
    store.append_unconditionally(Event("Other", {}))


class Crash(Exception):
    pass


def test_a_projector_resumes_after_a_crash_handling_each_event_at_least_once(
    event_store: EventStore,
) -> None:
    lend(event_store, 25)
    seen: list[int] = []

    def crashing(event: RecordedEvent) -> None:
        if event.payload["i"] == 17:
            raise Crash
        seen.append(event.payload["i"])

    with pytest.raises(Crash):
        Projector(event_store, "lent", LENT, crashing).catch_up(batch_size=5)
    assert event_store.checkpoint("lent") == 15  # pages of 5: up to i=14 (seq 15) saved
    again = Projector(event_store, "lent", LENT, lambda e: seen.append(e.payload["i"]))
    assert again.position() == 15
    assert again.catch_up(batch_size=5) == 10
    # i=15 and 16 were handled before the crash and again after it.
    assert seen == [*range(17), 15, 16, *range(17, 25)]
    assert again.catch_up() == 0


def test_with_the_read_models_connection_each_event_counts_exactly_once(
    event_store: EventStore, event_store_dsn: str, event_store_table: str
) -> None:
    lend(event_store, 25)
    model = f"{event_store_table}_model"
    with psycopg.connect(event_store_dsn) as conn:
        conn.execute(f"CREATE TABLE {model} (i int PRIMARY KEY)")
        conn.commit()

        def write(event: RecordedEvent) -> None:
            if event.payload["i"] == 17 and not crashed:
                crashed.append(True)
                raise Crash
            conn.execute(f"INSERT INTO {model} (i) VALUES (%s)", (event.payload["i"],))

        crashed: list[bool] = []
        projector = Projector(event_store, "model", LENT, write, connection=conn)
        with pytest.raises(Crash):
            projector.catch_up(batch_size=5)
        assert projector.position() == 15
        # The crashed page's rows were rolled back with it: no duplicate key on the rerun.
        assert projector.catch_up(batch_size=5) == 10
        rows = conn.execute(f"SELECT i FROM {model} ORDER BY i").fetchall()
        assert [r[0] for r in rows] == list(range(25))
        assert event_store.checkpoint("model") == 25
        conn.execute(f"DROP TABLE {model}")
        conn.commit()


def test_an_asyncio_projector_with_the_read_models_connection_counts_each_event_once(
    event_store: EventStore,
    async_event_store: AsyncEventStore,
    event_store_dsn: str,
    event_store_table: str,
) -> None:
    lend(event_store, 12)
    model = f"{event_store_table}_model"

    async def main() -> tuple[list[int], int]:
        async with await psycopg.AsyncConnection.connect(event_store_dsn) as conn:
            await conn.execute(f"CREATE TABLE {model} (i int PRIMARY KEY)")
            await conn.commit()
            crashed: list[bool] = []

            async def write(event: RecordedEvent) -> None:
                if event.payload["i"] == 7 and not crashed:
                    crashed.append(True)
                    raise Crash
                await conn.execute(f"INSERT INTO {model} (i) VALUES (%s)", (event.payload["i"],))

            projector = AsyncProjector(async_event_store, "model", LENT, write, connection=conn)
            with pytest.raises(Crash):
                await projector.catch_up(batch_size=5)
            assert await projector.position() == 5
            assert await projector.catch_up(batch_size=5) == 7
            rows = await (await conn.execute(f"SELECT i FROM {model} ORDER BY i")).fetchall()
            await conn.execute(f"DROP TABLE {model}")
            await conn.commit()
            return [r[0] for r in rows], await projector.position()

    assert asyncio.run(main()) == (list(range(12)), 12)


def test_a_running_projector_follows_live_appends_until_stopped(event_store: EventStore) -> None:
    lend(event_store, 3)
    seen: list[int] = []
    projector = Projector(event_store, "live", LENT, lambda e: seen.append(e.payload["i"]))
    runner = threading.Thread(target=projector.run, daemon=True)
    runner.start()
    lend(event_store, 3, start=3)
    deadline = time.monotonic() + 10
    while len(seen) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    projector.stop()
    runner.join(5)
    assert not runner.is_alive()
    assert seen == list(range(6))
    assert event_store.checkpoint("live") == 7


def test_an_asyncio_projector_with_a_coroutine_handler(
    event_store: EventStore, async_event_store: AsyncEventStore
) -> None:
    lend(event_store, 4)
    seen: list[int] = []

    async def handle(event: RecordedEvent) -> None:
        await asyncio.sleep(0)
        seen.append(event.payload["i"])

    async def main() -> int:
        projector = AsyncProjector(async_event_store, "async", LENT, handle, poll_interval=0.1)
        task = asyncio.create_task(projector.run())
        while len(seen) < 4:
            await asyncio.sleep(0.01)
        await async_event_store.append_unconditionally(Event("BookLent", {"i": 4}))
        while len(seen) < 5:
            await asyncio.sleep(0.01)
        projector.stop()
        await asyncio.wait_for(task, 5)
        return await projector.position()

    assert asyncio.run(asyncio.wait_for(main(), 30)) == 6
    assert seen == list(range(5))


def test_a_projector_needs_a_name_and_a_handler(event_store: Any) -> None:
    with pytest.raises(InvalidInputError):
        Projector(event_store, " ", LENT, print)
    with pytest.raises(TypeError):
        Projector(event_store, "x", LENT, None)  # type: ignore[arg-type]
