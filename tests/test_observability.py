"""Logging and OpenTelemetry: what an operator sees of each operation."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from dynamic_streams import (
    AsyncEventStore,
    ConcurrencyConflictError,
    Event,
    EventStore,
    OperationTimeoutError,
    P,
    ProgrammingError,
    build_event_filter,
)
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

SECRET = "s3cret-reader-id"
FILTER = build_event_filter().matching().any_predicate_of(P("ReaderID", SECRET)).finalize()


@pytest.fixture(scope="module")
def telemetry() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    """The application's providers (set once per process, as applications do)."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    yield spans, reader


def points(reader: InMemoryMetricReader, name: str, table: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points
        if p.attributes.get("dcb.table") == table
    ]


def test_debug_logs_carry_duration_and_sql_but_no_values(
    event_store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="dynamic_streams"):
        event_store.append(FILTER, 0, Event("Lent", {"ReaderID": SECRET}))
        event_store.query(FILTER)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"append on {event_store.table}: 1 events in" in text
    assert f"query on {event_store.table}: 1 events in" in text
    # Both statements look their events up in the key index, and the append inserts.
    keys = f'FROM "{event_store.table}_keys" WHERE key = ANY('
    assert text.count(keys) == 2 and "SQL: WITH new AS (" in text
    assert SECRET not in text


def test_conflicts_log_at_info_and_errors_at_warning(
    event_store: EventStore, event_store_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    event_store.append(FILTER, 0, Event("Lent", {"ReaderID": SECRET}))
    with (
        caplog.at_level(logging.INFO, logger="dynamic_streams"),
        pytest.raises(ConcurrencyConflictError),
    ):
        event_store.append(FILTER, 0, Event("Lent", {"ReaderID": SECRET}))
    assert [(r.levelno, "conflict" in r.getMessage()) for r in caplog.records] == [
        (logging.INFO, True)
    ]
    caplog.clear()
    with (
        EventStore(
            event_store_dsn.replace("postgres:@", "postgres:pw@"), table="no_such_table"
        ) as missing,
        pytest.raises(ProgrammingError),
    ):
        missing.query(FILTER)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "ProgrammingError" in record.getMessage()
    assert ":pw@" not in record.getMessage()


def test_spans_and_metrics(
    telemetry: tuple[InMemorySpanExporter, InMemoryMetricReader],
    event_store: EventStore,
    event_store_dsn: str,
) -> None:
    spans, reader = telemetry
    spans.clear()
    table = event_store.table
    event_store.append(
        FILTER, 0, Event("Lent", {"ReaderID": "r"}), Event("Lent", {"ReaderID": SECRET})
    )
    event_store.query(FILTER)
    with pytest.raises(ConcurrencyConflictError):
        event_store.append(FILTER, 0, Event("Lent", {"ReaderID": SECRET}))
    with psycopg.connect(event_store_dsn) as blocker:
        blocker.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
        with pytest.raises(OperationTimeoutError):
            event_store.query(FILTER, timeout=0.3)
        blocker.rollback()

    with (
        EventStore(event_store_dsn, table="no_such_table") as missing,
        pytest.raises(ProgrammingError),
    ):
        missing.query(FILTER)

    async def cancelled() -> None:
        async with AsyncEventStore(event_store_dsn, table=table) as store:
            with psycopg.connect(event_store_dsn) as blocker:
                blocker.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
                task = asyncio.ensure_future(store.query(FILTER))
                await asyncio.sleep(0.2)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                blocker.rollback()
            assert len(await store.query(FILTER)) == 1

    asyncio.run(cancelled())
    assert sum(p.value for p in points(reader, "dcb.errors", "no_such_table")) == 1
    assert sum(p.value for p in points(reader, "dcb.cancellations", table)) == 1

    mine = [s for s in spans.get_finished_spans() if s.attributes.get("dcb.table") == table]
    assert [s.name for s in mine] == [
        "dynamic_streams.append",
        "dynamic_streams.query",
        "dynamic_streams.append",
        "dynamic_streams.query",
        "dynamic_streams.query",  # the cancelled one, from the asyncio store
        "dynamic_streams.query",
    ]
    first, query, conflict, timed_out, cancelled_span, async_query = mine
    assert first.kind == trace.SpanKind.CLIENT
    expected = {
        "dcb.operation": "append",
        "dcb.events": 2,
        "dcb.conflict": False,
        "dcb.database": "primary",
    }
    assert dict(first.attributes).items() >= expected.items()
    assert (query.attributes["dcb.events"], query.status.is_ok) == (1, True)
    assert conflict.attributes["dcb.conflict"] is True and conflict.status.is_unset
    assert timed_out.status.status_code == trace.StatusCode.ERROR
    assert cancelled_span.status.status_code == trace.StatusCode.ERROR
    assert async_query.attributes["dcb.events"] == 1

    assert sum(p.value for p in points(reader, "dcb.events.appended", table)) == 2
    assert sum(p.value for p in points(reader, "dcb.events.queried", table)) == 2
    assert sum(p.value for p in points(reader, "dcb.conflicts", table)) == 1
    assert sum(p.value for p in points(reader, "dcb.timeouts", table)) == 1
    assert sum(p.count for p in points(reader, "dcb.operation.duration", table)) == 6


def test_the_meter_reports_each_stores_connections_and_vacuums(
    telemetry: tuple[InMemorySpanExporter, InMemoryMetricReader],
    event_store_dsn: str,
    event_store_table: str,
) -> None:
    """Read from the stores when the reader collects: each pool's idle and used connections,
    waiting calls and size, named per store, each store's vacuums by outcome, and the
    connections it holds outside its pools."""
    _, reader = telemetry
    table = event_store_table
    with EventStore(event_store_dsn, table=table, pool_size=3, vacuum_every=2) as store:
        store.append(FILTER, 0, Event("Lent", {"ReaderID": "a"}), Event("Lent", {"ReaderID": "b"}))
        deadline = time.monotonic() + 10
        while store.stats().vacuums < 1 and time.monotonic() < deadline:
            time.sleep(0.05)

        # Each store has its own series: this one's are those of the pool of 3 (the fixture's
        # store, which created the table, has 10).
        (ours,) = {
            p.attributes["dcb.store"]
            for p in points(reader, "db.client.connection.max", table)
            if p.value == 3
        }
        assert ours.startswith(f"{table}#")

        def mine(name: str) -> list[Any]:
            return [p for p in points(reader, name, table) if p.attributes["dcb.store"] == ours]

        counts = mine("db.client.connection.count")
        by_state = {p.attributes["db.client.connection.state"]: p.value for p in counts}
        assert by_state == {"idle": 1, "used": 0}
        assert {p.attributes["db.client.connection.pool.name"] for p in counts} == {ours}
        assert [p.value for p in mine("db.client.connection.pending_requests")] == [0]
        vacuums = {p.attributes["dcb.outcome"]: p.value for p in mine("dcb.vacuums")}
        assert vacuums == {"done": 1, "failed": 0}
        assert [p.value for p in mine("dcb.connections.own")] == [0]

        def own_settles(count: int) -> bool:
            deadline = time.monotonic() + 5
            while [p.value for p in mine("dcb.connections.own")] != [count]:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.02)
            return True

        # A subscription's listener is one such connection, until the subscription closes.
        with store.subscribe() as subscription:
            assert len(subscription.poll(5)) == 2  # the backlog
            store.append_unconditionally(Event("Lent", {"ReaderID": "c"}))
            assert [e.payload for e in subscription.poll(5)] == [{"ReaderID": "c"}]
            assert own_settles(1)
        assert own_settles(0)


def test_without_opentelemetry_the_store_works(
    event_store_dsn: str, event_store_table: str
) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["opentelemetry"] = None  # as if it were not installed
        from dynamic_streams import EventStore, Event, build_event_filter, _observe
        assert _observe._instruments is None
        f = build_event_filter().matching_any_event().finalize()
        with EventStore({event_store_dsn!r}, table={event_store_table!r}) as store:
            store.append(f, 0, Event("T", {{}}))
            assert len(store.query(f)) == 1
        """
    )
    env = os.environ | {"PYTHONWARNINGS": "error"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
