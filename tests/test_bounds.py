"""Nothing a caller sends can exhaust a resource the server shares with other applications:
locks per transaction, prepared statements per connection, bind parameters per statement.
Every test here runs against a server with default settings (64 locks per transaction)."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dynamic_streams import (
    ConcurrencyConflictError,
    Event,
    EventStore,
    InvalidInputError,
    OperationTimeoutError,
    P,
    build_event_filter,
)
from psycopg.conninfo import make_conninfo

pytestmark = pytest.mark.slow

EVERYTHING = build_event_filter().matching_any_event().finalize()
ITEMS = 8  # items per filter in the shapes below: statements big enough to weigh


def books(n: int, start: int = 0) -> Any:
    """A filter on ``n`` BookIDs, one ANY group."""
    preds = [P("BookID", f"b{i}") for i in range(start, start + n)]
    return build_event_filter().matching().any_predicate_of(*preds).finalize()


def test_one_append_of_a_million_events_with_distinct_values(event_store: EventStore) -> None:
    events = [Event("Lent", {"BookID": f"b{i}", "n": i}) for i in range(1_000_000)]
    numbers = event_store.append(EVERYTHING, 0, *events, timeout=None)
    assert len(numbers) == 1_000_000 and numbers == sorted(numbers)
    assert len(event_store.query(books(3, start=999_997))) == 3


def test_a_filter_of_100000_predicates_reads_and_guards(event_store: EventStore) -> None:
    event_store.append(EVERYTHING, 0, *[Event("Lent", {"BookID": f"b{i}"}) for i in range(1000)])
    wide = books(100_000)
    seen = event_store.query(wide)
    assert len(seen) == 1000 and seen.max_sequence_number == 1000
    event_store.append(wide, seen.max_sequence_number, Event("Lent", {"BookID": "b99999"}))
    with pytest.raises(ConcurrencyConflictError):
        event_store.append(wide, seen.max_sequence_number, Event("Lent", {"BookID": "b5"}))
    assert len(event_store.query(wide)) == 1001


def test_a_filter_beyond_the_protocol_is_rejected_before_any_io(event_store: EventStore) -> None:
    builder: Any = build_event_filter().matching().all_predicates_of(P("BookID", "b0"))
    for i in range(1, 70_000):
        builder = builder.or_matching().all_predicates_of(P("BookID", f"b{i}"), P("n", i))
    too_many = builder.finalize()
    for call in (
        lambda: event_store.query(too_many),
        lambda: event_store.append(too_many, 0, Event("Lent", {})),
    ):
        with pytest.raises(InvalidInputError, match="too many items"):
            call()
    assert event_store.append(EVERYTHING, 0, Event("Lent", {})) == [1]  # the store is fine


def advisory_locks(dsn: str, waiting: bool) -> list[int]:
    """Per backend of the library, its advisory locks, once one of them waits (5 s at most)."""
    with psycopg.connect(dsn, autocommit=True) as observer:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            rows = observer.execute(
                "SELECT count(*) FILTER (WHERE l.locktype = 'advisory' AND l.granted), "
                "bool_or(NOT l.granted) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE a.application_name = 'dynamic-streams' GROUP BY l.pid"
            ).fetchall()
            if any(blocked for _, blocked in rows) == waiting:
                return [int(n) for n, _ in rows]
            time.sleep(0.02)
    raise AssertionError("no backend of the library reached the expected state")


def test_an_escalated_writer_holds_off_a_decision_it_invalidates(
    event_store: EventStore, event_store_dsn: str
) -> None:
    decision = books(1)  # BookID = b0: a few fine keys
    bulk = [Event("Lent", {"BookID": f"b{i}"}) for i in range(5_000)]  # escalated
    # Prepare the bulk append's statement first (preparing an INSERT waits for table locks).
    event_store.append(books(2, start=10**6), 0, Event("Warm", {}))
    with EventStore(event_store_dsn, table=event_store.table, pool_size=1) as writer:
        writer.append(books(2, start=10**6), 1, Event("Warm", {}))
        with psycopg.connect(event_store_dsn) as blocker:
            # Inserts wait for this; reads do not. The bulk append takes its locks, then waits.
            blocker.execute(f'LOCK TABLE "{event_store.table}" IN SHARE MODE')
            outcome: list[Any] = []
            t = threading.Thread(
                target=lambda: outcome.append(writer.append(books(2, start=10**6), 2, *bulk))
            )
            t.start()
            locks = advisory_locks(event_store_dsn, waiting=True)
            assert max(locks) <= 65  # 64 coarse keys and the match-all key, not 5,000
            # The decision's read must wait for the bulk writer: it may be about to store b0.
            with pytest.raises(OperationTimeoutError):
                event_store.query(decision, timeout=0.5)
            blocker.rollback()
            t.join(30)
    assert len(outcome) == 1 and len(outcome[0]) == 5_000
    assert len(event_store.query(decision)) == 1


def shapes() -> Any:
    """Filters whose SQL differs: ITEMS items, each with or without types (one or several)
    and with no, merged, repeated-key, small-ANY or large-ANY predicates."""
    types = [(), ("A",), ("A", "B")]
    preds: list[tuple[str, tuple[Any, ...]]] = [
        ("none", ()),
        ("all", (P("k", 1), P("j", 2))),
        ("all", (P("k", 1), P("k", 2))),
        ("any", (P("k", 1), P("j", 2))),
        ("any", tuple(P("k", i) for i in range(20))),
    ]
    variants = [(t, p) for t in types for p in preds if t or p[0] != "none"]
    moment = datetime(2026, 1, 1, tzinfo=timezone.utc)
    bounds = [
        lambda b: b,
        lambda b: b.occurred_from(moment),
        lambda b: b.occurred_until(moment),
        lambda b: b.occurred_from(moment).and_occurred_until(moment),
        lambda b: b.with_sequence_number_higher_than(1),
    ]
    for combo in itertools.product(variants, repeat=ITEMS):
        builder: Any = build_event_filter()
        for i, (t, (kind, group)) in enumerate(combo):
            builder = builder.matching() if i == 0 else builder.or_matching()
            if kind == "none":
                builder = builder.any_event_type_of(*t, f"T{i}")
                continue
            named = tuple(P(f"{p.key}{i}", p.value) for p in group)
            if kind == "all":
                builder = builder.all_predicates_of(*named)
            else:
                builder = builder.any_predicate_of(*named)
            if t:
                builder = builder.and_any_event_type_of(*t)
        for bound in bounds:
            yield bound(builder).finalize()


def backend_anon_kib(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as observer:
        (pid,) = observer.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'shapes'"
        ).fetchone()  # type: ignore[misc]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError("no RssAnon")


def test_backend_memory_stays_flat_across_distinct_filters(
    event_store_dsn: str, event_store_table: str
) -> None:
    if not Path("/proc/self/status").exists():
        pytest.skip("reads the backend's memory from /proc")
    seen: set[str] = set()
    sizes: dict[int, int] = {}
    dsn = make_conninfo(event_store_dsn, application_name="shapes")
    with EventStore(dsn, table=event_store_table, pool_size=1) as store:
        for f in shapes():
            text = f.to_sql(event_store_table)[0]
            if text in seen:
                continue
            seen.add(text)
            store.query(f)
            if len(seen) in (600, 2000):
                sizes[len(seen)] = backend_anon_kib(event_store_dsn)
            if len(seen) == 2000:
                break
    assert len(seen) == 2000
    # Past the cache's bound (256 statements) memory no longer grows with new shapes.
    assert sizes[2000] - sizes[600] < 16 * 1024, sizes
