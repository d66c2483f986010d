"""Side-by-side benchmarks: this library (sync and asyncio), the seed's design with psycopg,
and eventsourcing's DCB recorder, on the same data set and server, in one run.

Not part of the test run: `make bench` runs them and writes the report.
"""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import dataset
import pytest
import stores
from conftest import AS_FOUND, FLOORS, IMPLEMENTATIONS, PASSES, SCALE, in_passes
from dynamic_streams.examples.library import DomainError
from dynamic_streams.examples.library import decisions as d

# Enough rounds that each measurement spans seconds, not a fraction of one: this machine's
# noise comes in bursts, and a short window can land in one. Split over the passes
# (conftest.py) for the side-by-side benchmarks.
ROUNDS = 1000
PASS_ROUNDS = -(-ROUNDS // PASSES)


def pairs(shape: dataset.Shape, seed: int) -> Iterator[tuple[str, str]]:
    rng = random.Random(seed)
    while True:
        yield rng.choice(shape.copies), rng.choice(shape.readers)


@pytest.mark.benchmark(group="python layer: one fixed query, ours-sync")
def test_python_layer(
    benchmark: Any, implementations: dict[str, Any], shape: dataset.Shape
) -> None:
    """First, right after the criterion benches: the criterion bench `engine: query copy + reader` runs this same query without Python."""
    store = implementations["ours-sync"].store
    f = stores.lending_filter(shape.copies[0], shape.readers[0])
    result = benchmark.pedantic(store.query, args=(f,), rounds=2000, warmup_rounds=50)
    assert result.max_sequence_number > 0


@pytest.mark.benchmark(group="query: copy + reader, six types")
@pytest.mark.parametrize("impl", in_passes(IMPLEMENTATIONS + FLOORS), indirect=True)
def test_query(benchmark: Any, impl: Any, pass_number: int, shape: dataset.Shape) -> None:
    # The same pairs for every implementation, other pairs in each pass. A floor's
    # parameters are made before the clock starts.
    args = pairs(shape, pass_number)
    prepared = getattr(impl, "prepared", None)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        pair = next(args)
        return ((prepared(*pair),) if prepared else pair), {}

    result = benchmark.pedantic(impl.query, setup=setup, rounds=PASS_ROUNDS, warmup_rounds=20)
    assert result[1] > 0


def _fresh_append(impl: Any, shape: dataset.Shape, count: int) -> Any:
    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        # A fresh copy and reader: runs never grow the histories other benchmarks read.
        book, reader = str(uuid.uuid4()), str(uuid.uuid4())
        _, expected = impl.query(book, reader)
        events = [(d.ADDED, {"BookID": book, "Title": "Fresh"})] + [
            (d.LENT, {"BookID": book, "ReaderID": reader})
        ] * (count - 1)
        return (book, reader, expected, events), {}

    return setup


@pytest.mark.benchmark(group="append: 1 event, guarded")
def test_append_one(benchmark: Any, impl: Any, shape: dataset.Shape) -> None:
    benchmark.pedantic(
        impl.append, setup=_fresh_append(impl, shape, 1), rounds=PASS_ROUNDS, warmup_rounds=10
    )


@pytest.mark.benchmark(group="append: 5 events, guarded")
def test_append_five(benchmark: Any, impl: Any, shape: dataset.Shape) -> None:
    benchmark.pedantic(
        impl.append, setup=_fresh_append(impl, shape, 5), rounds=PASS_ROUNDS, warmup_rounds=10
    )


def use_case(impl: Any, decide: Any, book: str, reader: str) -> bool:
    """A full use case, one attempt: query, decode, decide, encode, append. True if it
    appended."""
    history, expected = impl.query(book, reader)
    try:
        new = decide(history, book, reader)
    except DomainError:
        return False
    if new is None:
        return False
    impl.append(book, reader, expected, [(new.event_type, new.payload)])
    return True


def lend(impl: Any, book: str, reader: str) -> bool:
    return use_case(impl, d.lend_book_copy, book, reader)


def fresh_pairs(impl: Any, n: int) -> list[tuple[str, str]]:
    """Adds ``n`` new copies and registers ``n`` new readers (not timed): every benchmark
    round works on entities with the same short history, whatever ran before."""
    made = []
    for _ in range(n):
        book, reader = str(uuid.uuid4()), str(uuid.uuid4())
        _, expected = impl.query(book, reader)
        impl.append(
            book,
            reader,
            expected,
            [
                (d.ADDED, {"BookID": book, "Title": "Fresh"}),
                (d.REGISTERED, {"ReaderID": reader, "Name": "Fresh"}),
            ],
        )
        made.append((book, reader))
    return made


@pytest.mark.benchmark(group="use case: lend a copy")
def test_use_case(benchmark: Any, impl: Any, shape: dataset.Shape) -> None:
    """Every timed call lends a newly added copy to a newly registered reader: it queries,
    decides and appends."""
    appended = []
    benchmark.pedantic(
        lambda *a: appended.append(lend(*a)),
        setup=lambda: ((impl, *fresh_pairs(impl, 1)[0]), {}),
        rounds=PASS_ROUNDS,
        warmup_rounds=10,
    )
    assert all(appended)


WORKERS = 8
OPS_PER_WORKER = 20  # use cases per worker and round: lend, then return, of its own copies
# A round takes 60-200 ms: enough of them that each store's measurement spans seconds (six
# rounds, half a second, left the seed design's interquartile range at a quarter of its
# median as found). 30 in all, split over the passes.
THROUGHPUT_ROUNDS = -(-30 // PASSES)


def _workload(impl: Any) -> Any:
    """Each worker gets its own new copies and readers: the boundaries never overlap."""

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        jobs = fresh_pairs(impl, WORKERS * OPS_PER_WORKER // 2)
        return (impl, [jobs[w::WORKERS] for w in range(WORKERS)]), {}

    return setup


def _run_threads(impl: Any, work: list[list[tuple[str, str]]]) -> int:
    barrier = threading.Barrier(WORKERS)
    done = [0] * WORKERS

    def worker(n: int) -> None:
        barrier.wait()
        for book, reader in work[n]:
            done[n] += use_case(impl, d.lend_book_copy, book, reader)
            done[n] += use_case(impl, d.return_book_copy, book, reader)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done)


def _run_tasks(impl: Any, work: list[list[tuple[str, str]]]) -> int:
    store = impl.store

    async def use_case(decide: Any, book: str, reader: str) -> int:
        f = stores.lending_filter(book, reader)
        result = await store.query(f)
        try:
            new = decide(result.events, book, reader)
        except DomainError:
            return 0
        if new is None:
            return 0
        await store.append(f, result.max_sequence_number, stores.Event(new.event_type, new.payload))
        return 1

    async def worker(jobs: list[tuple[str, str]]) -> int:
        done = 0
        for book, reader in jobs:
            done += await use_case(d.lend_book_copy, book, reader)
            done += await use_case(d.return_book_copy, book, reader)
        return done

    async def all_workers() -> int:
        return sum(await asyncio.gather(*(worker(w) for w in work)))

    result: int = impl.loop.run_until_complete(all_workers())
    return result


@pytest.mark.benchmark(
    group=f"throughput: {WORKERS} workers x {OPS_PER_WORKER} use cases, disjoint copies"
)
def test_throughput(benchmark: Any, impl: Any) -> None:
    run = _run_tasks if impl.name == "ours-async" else _run_threads
    appended = benchmark.pedantic(
        run, setup=_workload(impl), rounds=THROUGHPUT_ROUNDS, warmup_rounds=1
    )
    benchmark.extra_info["use_cases_per_round"] = WORKERS * OPS_PER_WORKER
    # Disjoint boundaries: every lend and every return went through, none conflicted.
    assert appended == WORKERS * OPS_PER_WORKER


@pytest.fixture(scope="module", params=SCALE)
def scaled(
    request: pytest.FixtureRequest, server: stores.Server
) -> Iterator[tuple[int, Any, dataset.Shape]]:
    size = request.param
    stores.prime_ours(server, size)
    if not AS_FOUND:
        stores.prewarm(server, size)
    shape, rows = dataset.generate(size)
    for _ in rows:
        pass
    impl = stores.Ours(server, f"bench_{size}.events")
    yield size, impl, shape
    impl.close()


@pytest.mark.benchmark(group="scale: query, ours-sync")
def test_query_scale(benchmark: Any, scaled: tuple[int, Any, dataset.Shape]) -> None:
    size, impl, shape = scaled
    benchmark.extra_info["events"] = size
    args = pairs(shape, 4)
    result = benchmark.pedantic(
        impl.query, setup=lambda: (next(args), {}), rounds=ROUNDS, warmup_rounds=20
    )
    assert result[1] > 0
