"""Side-by-side benchmarks: this library (sync and asyncio), the seed's design with psycopg,
and eventsourcing's DCB recorder, on the same data set and server, in one run.

Not part of the test run: `make bench` runs them and writes the report.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import dataset
import pytest
import stores
from conftest import IMPLEMENTATIONS, SCALE
from dynamic_streams.examples.library import DomainError
from dynamic_streams.examples.library import decisions as d
from dynamic_streams.examples.library.service import check_invariants

ROUNDS = 300


def pairs(shape: dataset.Shape, seed: int) -> Iterator[tuple[str, str]]:
    rng = random.Random(seed)
    while True:
        yield rng.choice(shape.copies), rng.choice(shape.readers)


def copies_for(shape: dataset.Shape, impl_name: str, purpose: int) -> Iterator[str]:
    """Free copies no other benchmark of this store touches."""
    lane = IMPLEMENTATIONS.index(impl_name) * 4 + purpose
    lanes = 4 * len(IMPLEMENTATIONS)
    return iter(shape.free_copies[lane::lanes])


@pytest.mark.benchmark(group="query: copy + reader, six types")
def test_query(benchmark: Any, impl: Any, shape: dataset.Shape) -> None:
    args = pairs(shape, 1)
    result = benchmark.pedantic(
        impl.query, setup=lambda: (next(args), {}), rounds=ROUNDS, warmup_rounds=20
    )
    assert result[1] > 0


def _fresh_append(impl: Any, shape: dataset.Shape, count: int) -> Any:
    readers = itertools.cycle(shape.readers)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        book, reader = str(uuid.uuid4()), next(readers)
        _, expected = impl.query(book, reader)
        events = [(d.ADDED, {"BookID": book, "Title": "Fresh"})] + [
            (d.LENT, {"BookID": book, "ReaderID": reader})
        ] * (count - 1)
        return (book, reader, expected, events), {}

    return setup


@pytest.mark.benchmark(group="append: 1 event, guarded")
def test_append_one(benchmark: Any, impl: Any, shape: dataset.Shape) -> None:
    benchmark.pedantic(
        impl.append, setup=_fresh_append(impl, shape, 1), rounds=ROUNDS, warmup_rounds=10
    )


@pytest.mark.benchmark(group="append: 5 events, guarded")
def test_append_five(benchmark: Any, impl: Any, shape: dataset.Shape) -> None:
    benchmark.pedantic(
        impl.append, setup=_fresh_append(impl, shape, 5), rounds=ROUNDS, warmup_rounds=10
    )


def lend(impl: Any, book: str, reader: str) -> bool:
    """The full use case: query, decode, decide, encode, append (one attempt)."""
    history, expected = impl.query(book, reader)
    try:
        new = d.lend_book_copy(history, book, reader)
    except DomainError:
        return False
    if new is None:
        return False
    impl.append(book, reader, expected, [(new.event_type, new.payload)])
    return True


@pytest.mark.benchmark(group="use case: lend a copy")
def test_use_case(benchmark: Any, impl: Any, shape: dataset.Shape) -> None:
    copies = copies_for(shape, impl.name, 0)
    readers = pairs(shape, 2)
    benchmark.pedantic(
        lend,
        setup=lambda: ((impl, next(copies), next(readers)[1]), {}),
        rounds=ROUNDS,
        warmup_rounds=10,
    )


WORKERS = 8
OPS_PER_WORKER = 25


def _workload(impl: Any, copies: Any, readers: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    work = [
        [(next(copies), next(readers)[1]) for _ in range(OPS_PER_WORKER)] for _ in range(WORKERS)
    ]
    return (impl, work), {}


def _run_threads(impl: Any, work: list[list[tuple[str, str]]]) -> None:
    barrier = threading.Barrier(WORKERS)

    def worker(jobs: list[tuple[str, str]]) -> None:
        barrier.wait()
        for book, reader in jobs:
            try:
                lend(impl, book, reader)
            except stores.Conflict:
                pytest.fail("disjoint copies must never conflict")

    threads = [threading.Thread(target=worker, args=(w,)) for w in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _run_tasks(impl: Any, work: list[list[tuple[str, str]]]) -> None:
    store = impl.store

    async def worker(jobs: list[tuple[str, str]]) -> None:
        for book, reader in jobs:
            f = stores.lending_filter(book, reader)
            result = await store.query(f)
            try:
                new = d.lend_book_copy(result.events, book, reader)
            except DomainError:
                continue
            if new is not None:
                await store.append(
                    f, result.max_sequence_number, stores.Event(new.event_type, new.payload)
                )

    async def all_workers() -> None:
        await asyncio.gather(*(worker(w) for w in work))

    impl.loop.run_until_complete(all_workers())


@pytest.mark.benchmark(
    group=f"throughput: {WORKERS} workers x {OPS_PER_WORKER} use cases, disjoint copies"
)
def test_throughput(benchmark: Any, impl: Any, shape: dataset.Shape, server: stores.Server) -> None:
    copies = copies_for(shape, impl.name, 1)
    readers = pairs(shape, 3)
    run = _run_tasks if impl.name == "ours-async" else _run_threads
    benchmark.pedantic(
        run, setup=lambda: _workload(impl, copies, readers), rounds=8, warmup_rounds=1
    )
    benchmark.extra_info["operations_per_round"] = WORKERS * OPS_PER_WORKER
    if impl.name.startswith("ours"):
        log = impl.store if impl.name == "ours-sync" else None
        if log is not None:
            all_events = log.query(stores.build_event_filter().matching_any_event().finalize())
            assert check_invariants(all_events.events) == []


@pytest.fixture(scope="module", params=SCALE)
def scaled(
    request: pytest.FixtureRequest, server: stores.Server
) -> Iterator[tuple[int, Any, dataset.Shape]]:
    size = request.param
    stores.prime_ours(server, size)
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
