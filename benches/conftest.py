"""Fixtures of the benchmark suite: one server, primed stores, the implementations.

Sizes come from the environment: ``DCB_BENCH_EVENTS`` (default 1,000,000) for the side-by-side
comparisons, ``DCB_BENCH_SCALE`` (default ``100000,1000000``; add ``10000000`` on request)
for the scale benchmark, ``DCB_BENCH_AS_FOUND_SCALE`` for its as-found points (run.py).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dataset
import stores
from report import PASS_MARK

EVENTS = int(os.environ.get("DCB_BENCH_EVENTS", "1000000"))
SCALE = [int(n) for n in os.environ.get("DCB_BENCH_SCALE", "100000,1000000").split(",") if n]
AS_FOUND_SCALE = [int(n) for n in os.environ.get("DCB_BENCH_AS_FOUND_SCALE", "").split(",") if n]
# Set by run.py for the as-found runs: each store is measured as its load left it.
AS_FOUND = bool(os.environ.get("DCB_BENCH_AS_FOUND"))
IMPLEMENTATIONS = ["ours-sync", "ours-async", "psycopg", "eventsourcing"]
# Measured beside the query only: what any client's query costs at the least (stores.Floor).
FLOORS = ["floor-select", "floor-transaction"]
# Each side-by-side benchmark runs in passes, every implementation measured once in each, in
# turn: this machine's speed drifts by up to 40% within one benchmark, and implementations
# measured one after the other would each get a different stretch of it. The report pools
# each implementation's rounds over its passes.
PASSES = 3


@pytest.fixture(scope="session")
def server() -> Iterator[stores.Server]:
    s = stores.Server()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def shape(server: stores.Server) -> dataset.Shape:
    sys.stderr.write(f"\npriming the stores with {EVENTS:,} events (reused when already primed)\n")
    stores.prime_ours(server, EVENTS)
    stores.prime_seed(server, EVENTS)
    stores.prime_eventsourcing(server, EVENTS)
    result, rows = dataset.generate(EVENTS)
    for _ in rows:  # the shape's free copies are known once the rows are exhausted
        pass
    return result


@pytest.fixture(autouse=True)
def vacuumed(request: pytest.FixtureRequest, server: stores.Server) -> None:
    """Tuned: every benchmark starts from vacuumed stores, not only the first. Appends stay
    in the stores, and the seed design's GIN index keeps its new entries in a pending list
    that each of its queries and guarded appends scans until the list fills (4 MB) and is
    merged: measured, its use cases per second fell from 1,700 to 1,000 as 12,000 entries
    gathered, so each baseline would otherwise be measured the slower the later its
    benchmark runs. A VACUUM empties the list (a tenth of a second).

    Before an implementation's first pass only: its later passes carry on from the state its
    earlier ones left, as one unbroken run of the benchmark would (a VACUUM before each pass
    would keep the seed design's list at most a third as long)."""
    if not AS_FOUND and _pass_of(request.node) == 1:
        stores.vacuum(server)


@pytest.fixture(scope="session")
def implementations(server: stores.Server, shape: dataset.Shape) -> Iterator[dict[str, Any]]:
    made = {
        "ours-sync": stores.Ours(server, f"bench_{EVENTS}.events"),
        "ours-async": stores.OursAsync(server, f"bench_{EVENTS}.events"),
        "psycopg": stores.Psycopg(server, f"seed_{EVENTS}.events"),
        "eventsourcing": stores.EventSourcing(server, EVENTS),
        "floor-select": stores.Floor(server, f"bench_{EVENTS}.events", transaction=False),
        "floor-transaction": stores.Floor(server, f"bench_{EVENTS}.events", transaction=True),
    }
    yield made
    for impl in made.values():
        impl.close()


def in_passes(names: list[str]) -> list[str]:
    """Each of `names` once in every pass, in turn: the `impl` fixture's parameters."""
    return [f"{name}{PASS_MARK}{n}" for n in range(1, PASSES + 1) for name in names]


@pytest.fixture(params=in_passes(IMPLEMENTATIONS))
def impl(request: pytest.FixtureRequest, implementations: dict[str, Any]) -> Any:
    return implementations[request.param.split(PASS_MARK)[0]]


@pytest.fixture
def pass_number(request: pytest.FixtureRequest) -> int:
    return _pass_of(request.node)


def _pass_of(node: pytest.Item) -> int:
    """The pass of the implementation a benchmark measures (1 to PASSES; 1 for a benchmark
    that compares none)."""
    callspec = getattr(node, "callspec", None)
    impl = callspec.params.get("impl") if callspec is not None else None
    return int(impl.split(PASS_MARK)[1]) if impl else 1


def pytest_ignore_collect(collection_path: Path) -> bool:
    # Scripts beside the suite, not benchmarks.
    return collection_path.name in {
        "run.py",
        "report.py",
        "cpu_profile.py",
        "dataset.py",
        "stores.py",
    }
