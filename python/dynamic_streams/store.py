"""The event stores: :class:`EventStore` for plain Python, :class:`AsyncEventStore` for asyncio.

Both run on the same native engine: a pool of PostgreSQL connections per store. A synchronous
call releases the GIL and drives its connection from the calling thread; an asynchronous call
runs on a tokio runtime shared by the process. Do not call the synchronous store from code
running inside a tokio runtime; use the asynchronous one there.

Each operation is written once, in :class:`_StoreBase`: it checks its arguments and returns a
:class:`_Call`, which the two classes run, one waiting for it and one awaiting it, inside the
same logging and telemetry.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from types import TracebackType
from typing import Any, Generic, TypeVar

from dynamic_streams import _native
from dynamic_streams._json import check_bigint, encode
from dynamic_streams._native import STORE_DEFAULT, StoreDefault
from dynamic_streams._observe import observe, watch
from dynamic_streams.consistency import Consistency, wants_eventual
from dynamic_streams.errors import InterfaceError, InvalidInputError
from dynamic_streams.events import Event, QueryResult, RecordedEvent
from dynamic_streams.filter import EventFilter, build_event_filter
from dynamic_streams.reading import AsyncSubscription, Subscription
from dynamic_streams.snapshots import Snapshot, check_key

__all__ = [
    "DSN_ENV",
    "REPLICA_DSN_ENV",
    "STORE_DEFAULT",
    "AsyncEventStore",
    "EventStore",
    "PoolStats",
    "StoreDefault",
    "StoreStats",
]

DSN_ENV = "DYNAMIC_STREAMS_DSN"
"""The environment variable read for the DSN when none is passed."""

REPLICA_DSN_ENV = "DYNAMIC_STREAMS_REPLICA_DSN"
"""The environment variable read for the replica's DSN when none is passed."""

Timeout = float | None | StoreDefault
"""A call's time limit in seconds; None: no limit; ``STORE_DEFAULT``: the store's own."""

T = TypeVar("T")


def _dsn(dsn: str | None) -> str:
    if dsn is None:
        dsn = os.environ.get(DSN_ENV)
    if not dsn:
        raise InvalidInputError(f"no DSN: pass one, or set the environment variable {DSN_ENV}")
    return dsn


def _check_filter(filter: EventFilter) -> _native.Filter:
    if not isinstance(filter, EventFilter):
        raise TypeError(f"expected an EventFilter, got {type(filter).__name__}")
    return filter._native


_EVERY_EVENT = build_event_filter().matching_any_event().finalize()

DEFAULT_BATCH_SIZE = 1000
"""Events per page of a read or a subscription."""

DEFAULT_IMPORT_BATCH = 10_000
"""Events per transaction of an import."""


def _batches(events: Iterable[Event], size: int) -> Iterator[tuple[Event, ...]]:
    it = iter(events)
    while batch := tuple(islice(it, size)):
        yield batch


async def _async_batches(
    events: Iterable[Event] | AsyncIterable[Event], size: int
) -> AsyncIterator[tuple[Event, ...]]:
    if not isinstance(events, AsyncIterable):
        for whole in _batches(events, size):
            yield whole
        return
    batch: list[Event] = []
    async for event in events:
        batch.append(event)
        if len(batch) == size:
            yield tuple(batch)
            batch = []
    if batch:
        yield tuple(batch)


def _count(what: str, value: object, *, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int")
    if value < least:
        raise InvalidInputError(f"{what} must be at least {least}")
    check_bigint(what, value)
    return value


def _check_name(name: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"the checkpoint name must be a str, got {type(name).__name__}")


def _check_events(events: tuple[Event, ...]) -> list[_native.StorableEvent]:
    if not events:
        raise InvalidInputError("append needs at least one event")
    for e in events:
        if not isinstance(e, Event):
            raise TypeError(f"expected Event instances, got {type(e).__name__}")
    return [e._native for e in events]


class _Call(Generic[T]):
    """One operation, checked and ready: ``start`` makes the native call (which returns the
    result, or an awaitable of it on an asyncio store); ``operation``, ``sql`` and
    ``events`` are what :class:`observe` records (no ``operation``: nothing is recorded)."""

    __slots__ = ("events", "operation", "sql", "start")

    def __init__(
        self,
        operation: str | None,
        start: Callable[[], Any],
        sql: Callable[[], str] | None = None,
        events: int = 0,
    ) -> None:
        self.operation = operation
        self.start = start
        self.sql = sql
        self.events = events


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A connection pool at one moment."""

    open: int
    """Connections open, idle or in use."""
    idle: int
    """Open connections no call is using."""
    waiting: int
    """Calls waiting for a connection."""
    max_size: int
    """The most connections the pool opens (the store's ``pool_size``)."""


@dataclass(frozen=True, slots=True)
class StoreStats:
    """What a store holds at one moment: see :meth:`EventStore.stats`."""

    pool: PoolStats
    """The primary's connections."""
    replica_pool: PoolStats | None
    """The replica's connections, when the store has a replica."""
    vacuums: int
    """Vacuums of the store's tables that ran to their end (see ``vacuum_every``)."""
    failed_vacuums: int
    """Vacuums that did not: no connection, an error, or a table the server skipped (one the
    role may not vacuum, or one another session held locked)."""
    own_connections: int
    """Connections the store holds outside its pools now: its subscriptions' listener while
    any subscription is open, and a vacuum's while one runs (at most one of each)."""


def _record(out: observe, result: object) -> None:
    if isinstance(result, QueryResult):
        out.events = len(result.events)
        out.from_replica = result.from_replica
    elif isinstance(result, list) and out.operation == "read":
        out.events = len(result)


class _StoreBase:
    """What both stores share: construction, properties, and each operation's checks."""

    __slots__ = ("__weakref__", "_native", "_table")
    _asyncio = False

    def __init__(
        self,
        dsn: str | None = None,
        *,
        table: str = "events",
        pool_size: int = 10,
        timeout: float | None = 30.0,
        snapshot_table: str | None = None,
        replica_dsn: str | None = None,
        pool_timeout: float | None = None,
        vacuum_every: int | None = 10_000,
    ) -> None:
        if vacuum_every is not None:
            _count("vacuum_every", vacuum_every, least=1)
        if replica_dsn is None:
            replica_dsn = os.environ.get(REPLICA_DSN_ENV) or None
        self._native = _native.EventStore(
            _dsn(dsn),
            table,
            pool_size,
            timeout,
            snapshot_table,
            replica_dsn,
            self._asyncio,
            pool_timeout,
            vacuum_every,
        )
        self._table = table
        watch(self)

    @property
    def table(self) -> str:
        """The events table, as given (``name`` or ``schema.name``)."""
        return self._table

    @property
    def snapshot_table(self) -> str:
        """The snapshot table: as given, or ``<table>_snapshots`` beside the events."""
        return self._native.snapshot_table

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._native.closed

    def close(self) -> None:
        """Close the connection pool and end its sessions. Later calls raise
        :class:`InterfaceError`."""
        self._native.close()

    def stats(self) -> StoreStats:
        """The store's connections and vacuums now, without I/O: for health checks and
        dashboards (with OpenTelemetry, the meter reports them too)."""
        s = self._native.stats()
        replica = s["replica_pool"]
        return StoreStats(
            PoolStats(*s["pool"]),
            None if replica is None else PoolStats(*replica),
            s["vacuums"],
            s["failed_vacuums"],
            s["own_connections"],
        )

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"{type(self).__name__}(table={self.table!r}, {state})"

    # Each operation once: check the arguments, then describe the native call.

    def _create_schema(self, timeout: Timeout) -> _Call[None]:
        return _Call(None, lambda: self._native.create_schema(timeout))

    def _query(
        self, filter: EventFilter, timeout: Timeout, consistency: Consistency | None
    ) -> _Call[QueryResult]:
        native, eventual = _check_filter(filter), wants_eventual(consistency)
        return _Call(
            "query",
            lambda: self._native.query(native, timeout, eventual),
            lambda: filter.to_sql(self._table)[0],
        )

    def _append(
        self, filter: EventFilter, expected: int, events: tuple[Event, ...], timeout: Timeout
    ) -> _Call[list[int]]:
        native_filter = _check_filter(filter)
        if isinstance(expected, bool) or not isinstance(expected, int):
            raise TypeError("expected_max_sequence_number must be an int")
        check_bigint("expected_max_sequence_number", expected)
        native_events = _check_events(events)
        return _Call(
            "append",
            lambda: self._native.append(native_filter, expected, native_events, timeout),
            lambda: native_filter.append_sql(self._table),
            len(events),
        )

    def _append_unconditionally(
        self, events: tuple[Event, ...], timeout: Timeout
    ) -> _Call[list[int]]:
        native_events = _check_events(events)
        return _Call(
            "append_unconditionally",
            lambda: self._native.append_unconditionally(native_events, timeout),
            events=len(events),
        )

    def _import_batch(self, events: tuple[Event, ...], timeout: Timeout) -> _Call[list[int]]:
        native_events = _check_events(events)
        return _Call(
            "import",
            lambda: self._native.import_batch(native_events, timeout),
            events=len(events),
        )

    def _head(self, timeout: Timeout) -> _Call[int]:
        return _Call("head", lambda: self._native.head(timeout))

    def _reader(
        self,
        filter: EventFilter | None,
        after: int,
        limit: int | None,
        backwards: bool,
        batch_size: int,
    ) -> _native.Reader:
        native = _check_filter(_EVERY_EVENT if filter is None else filter)
        _count("after", after, least=0)
        if limit is not None:
            _count("limit", limit, least=1)
        _count("batch_size", batch_size, least=1)
        self._check_open()
        return self._native.read(native, after, limit, bool(backwards), batch_size)

    def _page(self, reader: _native.Reader, timeout: Timeout) -> _Call[list[RecordedEvent]]:
        return _Call("read", lambda: reader.next(timeout))

    def _subscription(
        self, filter: EventFilter | None, after: int, batch_size: int, poll_interval: float
    ) -> _native.Subscription:
        native = _check_filter(_EVERY_EVENT if filter is None else filter)
        _count("after", after, least=0)
        _count("batch_size", batch_size, least=1)
        self._check_open()
        return self._native.subscribe(native, after, batch_size, poll_interval)

    def _checkpoint(self, name: str, timeout: Timeout) -> _Call[int | None]:
        _check_name(name)
        return _Call("checkpoint", lambda: self._native.checkpoint(name, timeout))

    def _save_checkpoint(self, name: str, position: int, timeout: Timeout) -> _Call[bool]:
        _check_name(name)
        _count("position", position, least=0)
        return _Call(
            "save_checkpoint", lambda: self._native.save_checkpoint(name, position, timeout)
        )

    def _check_open(self) -> None:
        if self.closed:
            raise InterfaceError("the store is closed")

    def _save_snapshot(
        self,
        projection_type: str,
        filter_hash: str,
        sequence_number: int,
        data: Any,
        timeout: Timeout,
    ) -> _Call[bool]:
        check_key(projection_type, filter_hash)
        text = encode("the snapshot data", data)
        return _Call(
            "save_snapshot",
            lambda: self._native.save_snapshot(
                projection_type, filter_hash, sequence_number, text, timeout
            ),
        )

    def _load_snapshot(
        self,
        projection_type: str,
        filter_hash: str,
        timeout: Timeout,
        consistency: Consistency | None,
    ) -> _Call[Snapshot | None]:
        check_key(projection_type, filter_hash)
        eventual = wants_eventual(consistency)
        return _Call(
            "load_snapshot",
            lambda: self._native.load_snapshot(projection_type, filter_hash, timeout, eventual),
        )

    def _delete_snapshot(
        self, projection_type: str, filter_hash: str, timeout: Timeout
    ) -> _Call[bool]:
        check_key(projection_type, filter_hash)
        return _Call(
            "delete_snapshot",
            lambda: self._native.delete_snapshot(projection_type, filter_hash, timeout),
        )


class EventStore(_StoreBase):
    """A DCB event store on one PostgreSQL table, for plain (threaded) Python.

    ``dsn`` is a libpq-style URL or ``key=value`` string; when omitted, the environment
    variable ``DYNAMIC_STREAMS_DSN`` is read. ``table`` may be schema-qualified. ``timeout``
    is the default limit in seconds for each call (None: no limit); every call can set its
    own (``timeout=None`` lifts it for that call). ``pool_size`` connections at most are
    open at once; when all are busy a call waits for one, up to ``pool_timeout`` seconds
    (None: as long as its own timeout allows), then raises :class:`OperationTimeoutError`.
    After every ``vacuum_every`` events it writes, the store vacuums its tables in the
    background, on a connection of its own (None: leave them to autovacuum).
    Creating a store does no I/O: connections open on first use.

    Thread-safe: share one store between threads.
    """

    __slots__ = ()

    def _run(self, call: _Call[T]) -> T:
        if call.operation is None:
            return call.start()  # type: ignore[no-any-return]
        with observe(call.operation, self._table, call.sql, events=call.events) as out:
            result: T = call.start()
            _record(out, result)
        return result

    def create_schema(self, *, timeout: Timeout = STORE_DEFAULT) -> None:
        """Create the table and its indexes if they do not exist (safe to run concurrently)."""
        self._run(self._create_schema(timeout))

    def query(
        self,
        filter: EventFilter,
        *,
        timeout: Timeout = STORE_DEFAULT,
        consistency: Consistency | None = None,
    ) -> QueryResult:
        """The events matching ``filter`` in sequence order, and the highest sequence number.

        ``consistency="eventual"`` (or an :func:`eventual_consistency` block) reads from the
        replica when one is configured; decisions must read strongly (the default).
        """
        return self._run(self._query(filter, timeout, consistency))

    def append(
        self,
        filter: EventFilter,
        expected_max_sequence_number: int,
        *events: Event,
        timeout: Timeout = STORE_DEFAULT,
    ) -> list[int]:
        """Store ``events``, all or none, if no event matching ``filter`` was stored after
        ``expected_max_sequence_number``; return their sequence numbers.

        Raises :class:`ConcurrencyConflictError` (nothing stored) when one was.
        """
        return self._run(self._append(filter, expected_max_sequence_number, events, timeout))

    def append_unconditionally(self, *events: Event, timeout: Timeout = STORE_DEFAULT) -> list[int]:
        """Store ``events``, all or none, whatever is stored: for events no decision guards
        (imports, integration events). Returns their sequence numbers."""
        return self._run(self._append_unconditionally(events, timeout))

    def import_events(
        self,
        events: Iterable[Event],
        *,
        batch_size: int = DEFAULT_IMPORT_BATCH,
        progress: Callable[[int], object] | None = None,
        timeout: Timeout = STORE_DEFAULT,
    ) -> int:
        """Load a history (from another store, an NDJSON export...) through ``COPY``,
        ``batch_size`` events per transaction, whatever is stored; returns how many events it
        went through. ``progress`` is called with that count after each batch.

        Each batch is stored all or none, like :meth:`append_unconditionally` (key rows,
        locks, notifications alike) and gets new sequence numbers in the order given. Give
        the events ids to make a rerun after a failure safe: batches stored before are
        recognised and skipped. ``timeout`` applies to each batch.
        """
        _count("batch_size", batch_size, least=1)
        done = 0
        for batch in _batches(events, batch_size):
            self._run(self._import_batch(batch, timeout))
            done += len(batch)
            if progress is not None:
                progress(done)
        return done

    def head(self, *, timeout: Timeout = STORE_DEFAULT) -> int:
        """The highest sequence number at or below which every event is committed and
        visible (0 for an empty store). It waits for appends in flight, never blocks them."""
        return self._run(self._head(timeout))

    def read(
        self,
        filter: EventFilter | None = None,
        *,
        after: int = 0,
        limit: int | None = None,
        backwards: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        timeout: Timeout = STORE_DEFAULT,
    ) -> Iterator[RecordedEvent]:
        """The events matching ``filter`` (every event when None) with sequence numbers above
        ``after``, in ascending order (descending from the head when ``backwards``), at most
        ``limit`` of them, fetched ``batch_size`` at a time.

        For catching up and for read models: memory stays at two pages, no lock is taken, and
        from the second page on the next one is read while you take in the last (a connection
        is held for that read only; breaking out early stops it). It reads up to the head as
        of its start. Decisions use :meth:`query`, whose result the guard of
        :meth:`append` relies on. ``timeout`` applies to each page.
        """
        reader = self._reader(filter, after, limit, backwards, batch_size)

        def pages() -> Iterator[RecordedEvent]:
            try:
                while page := self._run(self._page(reader, timeout)):
                    yield from page
            finally:
                # Left early: the page read ahead lets go of its connection now.
                reader.close()

        return pages()

    def subscribe(
        self,
        filter: EventFilter | None = None,
        *,
        after: int = 0,
        batch_size: int = DEFAULT_BATCH_SIZE,
        poll_interval: float = 1.0,
    ) -> Subscription:
        """Every event matching ``filter`` (every event when None) with a sequence number
        above ``after``, in order, exactly once: the backlog, then live, until closed. See
        :mod:`dynamic_streams.reading`."""
        return Subscription(self._subscription(filter, after, batch_size, poll_interval), after)

    def checkpoint(self, name: str, *, timeout: Timeout = STORE_DEFAULT) -> int | None:
        """The saved position of the projection ``name`` (see :mod:`dynamic_streams.projector`),
        or None."""
        return self._run(self._checkpoint(name, timeout))

    def save_checkpoint(
        self, name: str, position: int, *, timeout: Timeout = STORE_DEFAULT
    ) -> bool:
        """Save ``position`` for the projection ``name`` unless a later one is saved (positions
        only move forward). Returns whether it saved."""
        return self._run(self._save_checkpoint(name, position, timeout))

    def save_snapshot(
        self,
        projection_type: str,
        filter_hash: str,
        sequence_number: int,
        data: Any,
        *,
        timeout: Timeout = STORE_DEFAULT,
    ) -> bool:
        """Save ``data`` (anything JSON) as the snapshot of ``projection_type`` over the
        filter with ``filter_hash``, as of ``sequence_number``, unless a snapshot with a higher
        sequence number is stored. Returns whether it saved."""
        return self._run(
            self._save_snapshot(projection_type, filter_hash, sequence_number, data, timeout)
        )

    def load_snapshot(
        self,
        projection_type: str,
        filter_hash: str,
        *,
        timeout: Timeout = STORE_DEFAULT,
        consistency: Consistency | None = None,
    ) -> Snapshot | None:
        """The snapshot, or None when there is none (``consistency`` as for :meth:`query`)."""
        return self._run(self._load_snapshot(projection_type, filter_hash, timeout, consistency))

    def delete_snapshot(
        self, projection_type: str, filter_hash: str, *, timeout: Timeout = STORE_DEFAULT
    ) -> bool:
        """Delete the snapshot (deleting a missing one is fine). Returns whether one existed."""
        return self._run(self._delete_snapshot(projection_type, filter_hash, timeout))

    def __enter__(self) -> EventStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncEventStore(_StoreBase):
    """The asyncio twin of :class:`EventStore`: the same operations, as coroutines.

    Its connections are not tied to an event loop, so one store can serve several loops
    (for example one per thread). Cancelling a task that awaits a call cancels the
    statement on the server.
    """

    __slots__ = ()
    _asyncio = True

    async def _run(self, call: _Call[T]) -> T:
        if call.operation is None:
            return await call.start()  # type: ignore[no-any-return]
        with observe(call.operation, self._table, call.sql, events=call.events) as out:
            result: T = await call.start()
            _record(out, result)
        return result

    async def create_schema(self, *, timeout: Timeout = STORE_DEFAULT) -> None:
        """Create the table and its indexes if they do not exist (safe to run concurrently)."""
        await self._run(self._create_schema(timeout))

    async def query(
        self,
        filter: EventFilter,
        *,
        timeout: Timeout = STORE_DEFAULT,
        consistency: Consistency | None = None,
    ) -> QueryResult:
        """The events matching ``filter`` in sequence order, and the highest sequence number;
        see :meth:`EventStore.query` for ``consistency``."""
        return await self._run(self._query(filter, timeout, consistency))

    async def append(
        self,
        filter: EventFilter,
        expected_max_sequence_number: int,
        *events: Event,
        timeout: Timeout = STORE_DEFAULT,
    ) -> list[int]:
        """Store ``events``, all or none, if no event matching ``filter`` was stored after
        ``expected_max_sequence_number``; return their sequence numbers.

        Raises :class:`ConcurrencyConflictError` (nothing stored) when one was.
        """
        return await self._run(self._append(filter, expected_max_sequence_number, events, timeout))

    async def append_unconditionally(
        self, *events: Event, timeout: Timeout = STORE_DEFAULT
    ) -> list[int]:
        """Store ``events`` whatever is stored; see :meth:`EventStore.append_unconditionally`."""
        return await self._run(self._append_unconditionally(events, timeout))

    async def import_events(
        self,
        events: Iterable[Event] | AsyncIterable[Event],
        *,
        batch_size: int = DEFAULT_IMPORT_BATCH,
        progress: Callable[[int], object] | None = None,
        timeout: Timeout = STORE_DEFAULT,
    ) -> int:
        """Load a history through ``COPY``; see :meth:`EventStore.import_events` (``events``
        may also be an async iterable here)."""
        _count("batch_size", batch_size, least=1)
        done = 0
        async for batch in _async_batches(events, batch_size):
            await self._run(self._import_batch(batch, timeout))
            done += len(batch)
            if progress is not None:
                progress(done)
        return done

    async def head(self, *, timeout: Timeout = STORE_DEFAULT) -> int:
        """The complete prefix's last sequence number; see :meth:`EventStore.head`."""
        return await self._run(self._head(timeout))

    def read(
        self,
        filter: EventFilter | None = None,
        *,
        after: int = 0,
        limit: int | None = None,
        backwards: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        timeout: Timeout = STORE_DEFAULT,
    ) -> AsyncIterator[RecordedEvent]:
        """An async iterator of the events matching ``filter``; see :meth:`EventStore.read`."""
        reader = self._reader(filter, after, limit, backwards, batch_size)

        async def pages() -> AsyncIterator[RecordedEvent]:
            try:
                while page := await self._run(self._page(reader, timeout)):
                    for event in page:
                        yield event
            finally:
                await reader.close()

        return pages()

    def subscribe(
        self,
        filter: EventFilter | None = None,
        *,
        after: int = 0,
        batch_size: int = DEFAULT_BATCH_SIZE,
        poll_interval: float = 1.0,
    ) -> AsyncSubscription:
        """Every event matching ``filter`` above ``after``, backlog then live; see
        :meth:`EventStore.subscribe`."""
        return AsyncSubscription(
            self._subscription(filter, after, batch_size, poll_interval), after
        )

    async def checkpoint(self, name: str, *, timeout: Timeout = STORE_DEFAULT) -> int | None:
        """The saved position of the projection ``name``, or None."""
        return await self._run(self._checkpoint(name, timeout))

    async def save_checkpoint(
        self, name: str, position: int, *, timeout: Timeout = STORE_DEFAULT
    ) -> bool:
        """Save a projection's position; see :meth:`EventStore.save_checkpoint`."""
        return await self._run(self._save_checkpoint(name, position, timeout))

    async def save_snapshot(
        self,
        projection_type: str,
        filter_hash: str,
        sequence_number: int,
        data: Any,
        *,
        timeout: Timeout = STORE_DEFAULT,
    ) -> bool:
        """Save a snapshot unless a higher one is stored; see :meth:`EventStore.save_snapshot`."""
        return await self._run(
            self._save_snapshot(projection_type, filter_hash, sequence_number, data, timeout)
        )

    async def load_snapshot(
        self,
        projection_type: str,
        filter_hash: str,
        *,
        timeout: Timeout = STORE_DEFAULT,
        consistency: Consistency | None = None,
    ) -> Snapshot | None:
        """The snapshot, or None when there is none (``consistency`` as for :meth:`query`)."""
        return await self._run(
            self._load_snapshot(projection_type, filter_hash, timeout, consistency)
        )

    async def delete_snapshot(
        self, projection_type: str, filter_hash: str, *, timeout: Timeout = STORE_DEFAULT
    ) -> bool:
        """Delete the snapshot (deleting a missing one is fine). Returns whether one existed."""
        return await self._run(self._delete_snapshot(projection_type, filter_hash, timeout))

    async def __aenter__(self) -> AsyncEventStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
