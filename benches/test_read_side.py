"""The read side, on the tuned server's 1M store: catching up with `read()` beside psycopg
fetching the same rows into dicts, `head()`, and live delivery to subscribers while writers
append (delay from the append to the delivery, and what subscribers cost the writers).

Not part of the test run: `make bench` runs them and writes the report.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import dataset
import psycopg
import pytest
import stores
from conftest import EVENTS
from dynamic_streams import Event, EventStore, build_event_filter
from psycopg.rows import dict_row

LENDING = build_event_filter().matching().any_event_type_of(dataset.LENT, dataset.RETURNED).finalize()  # fmt: skip
WRITERS, SUBSCRIBERS, SECONDS = 8, 4, 5.0


@pytest.mark.benchmark(group="read side: catch-up, every lending event")
@pytest.mark.parametrize("who", ["ours-sync", "psycopg"])
def test_catch_up(benchmark: Any, server: stores.Server, shape: Any, who: str) -> None:
    if who == "ours-sync":
        store = EventStore(server.dsn, table=f"bench_{EVENTS}.events", timeout=None)

        def catch_up() -> int:
            return sum(1 for _ in store.read(LENDING, batch_size=5000))
    else:
        conn = psycopg.connect(server.dsn, autocommit=True, row_factory=dict_row)
        select = (
            f"SELECT sequence_number, occurred_at, event_type, payload, metadata "
            f"FROM seed_{EVENTS}.events WHERE event_type = ANY(%s) ORDER BY sequence_number"
        )

        def catch_up() -> int:
            return len(conn.execute(select, ([dataset.LENT, dataset.RETURNED],)).fetchall())

    events = benchmark.pedantic(catch_up, rounds=5, warmup_rounds=1)
    benchmark.extra_info["events"] = events
    if who == "ours-sync":
        benchmark.extra_info["memory_growth_mb"] = _read_memory(server)
        store.close()
    else:
        conn.close()


def _read_memory(server: stores.Server) -> float:
    """How much a fresh process grows while it reads every event of the 1M store."""
    script = f"""
import resource, json
from dynamic_streams import EventStore
store = EventStore({server.dsn!r}, table="bench_{EVENTS}.events", timeout=None)
store.head()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = sum(1 for _ in store.read())
print(json.dumps([n, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024]))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    n, grown = json.loads(out.stdout)
    assert n >= EVENTS
    return float(grown)


@pytest.mark.benchmark(group="read side: import")
def test_import(benchmark: Any, server: stores.Server) -> None:
    """The 1M data set, from its generator, through `import_events` into a new table."""
    table = f"import_{uuid.uuid4().hex[:12]}"
    store = EventStore(server.dsn, table=table, timeout=None)
    store.create_schema()

    def load() -> int:
        _, rows = dataset.generate(EVENTS)
        events = (Event(r.event_type, r.payload_json(), occurred_at=r.occurred_at) for r in rows)
        return store.import_events(events)

    assert benchmark.pedantic(load, rounds=1, iterations=1) == EVENTS
    benchmark.extra_info["events"] = EVENTS
    store._native.drop_table()
    store.close()


@pytest.mark.benchmark(group="read side: head")
def test_head(benchmark: Any, server: stores.Server, shape: Any) -> None:
    with EventStore(server.dsn, table=f"bench_{EVENTS}.events") as store:
        assert benchmark.pedantic(store.head, rounds=2000, warmup_rounds=50) >= EVENTS


def _appenders(store: EventStore, stop: threading.Event, started: dict[int, float]) -> int:
    """WRITERS threads appending one event each call until `stop`; the time each append
    was called, by sequence number. Returns how many appends they made."""
    counts = [0] * WRITERS

    def write(w: int) -> None:
        while not stop.is_set():
            t = time.perf_counter()
            [n] = store.append_unconditionally(Event("Ticked", {"writer": w}))
            started[n] = t
            counts[w] += 1

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    time.sleep(SECONDS)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts)


def _subscribed(store: EventStore) -> tuple[int, list[float]]:
    """WRITERS appending for SECONDS while SUBSCRIBERS follow the log: the appends made,
    and the delay from each append's call to each of its deliveries."""
    started: dict[int, float] = {}
    delivered: list[tuple[int, float]] = []
    lock = threading.Lock()
    after = store.head()
    subs = [store.subscribe(after=after, batch_size=1000, poll_interval=1.0) for _ in range(SUBSCRIBERS)]  # fmt: skip

    def follow(sub: Any) -> None:
        for event in sub:
            now = time.perf_counter()
            with lock:
                delivered.append((event.sequence_number, now))

    followers = [threading.Thread(target=follow, args=(s,)) for s in subs]
    for f in followers:
        f.start()
    watched = _appenders(store, threading.Event(), started)
    time.sleep(1)
    for s in subs:
        s.close()
    for f in followers:
        f.join()
    assert sorted(n for n, _ in delivered) == sorted(
        n for n in started for _ in range(SUBSCRIBERS)
    ), "every event delivered to every subscriber, once"
    return watched, [at - started[n] for n, at in delivered]


@pytest.mark.benchmark(group="read side: live delivery")
def test_live(benchmark: Any, server: stores.Server) -> None:
    """Three pairs, alternating: the writers alone, then with the subscribers attached."""
    table = f"live_{uuid.uuid4().hex[:12]}"
    store = EventStore(server.dsn, table=table, pool_size=WRITERS + SUBSCRIBERS)
    store.create_schema()

    def run() -> dict[str, float]:
        alone: list[float] = []
        watched: list[float] = []
        delays: list[float] = []
        for _ in range(3):
            alone.append(_appenders(store, threading.Event(), {}) / SECONDS)
            appended, delivered = _subscribed(store)
            watched.append(appended / SECONDS)
            delays.extend(delivered)
        delays.sort()
        return {
            "median_ms": statistics.median(delays) * 1e3,
            "p99_ms": statistics.quantiles(delays, n=100)[-1] * 1e3,
            "alone_per_s": statistics.median(alone),
            "watched_per_s": statistics.median(watched),
        }

    result = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    store._native.drop_table()
    store.close()
