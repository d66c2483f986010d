"""The event stores: :class:`EventStore` for plain Python, :class:`AsyncEventStore` for asyncio.

Both run on the same native engine: a pool of PostgreSQL connections per store. A synchronous
call releases the GIL and drives its connection from the calling thread; an asynchronous call
runs on a tokio runtime shared by the process. Do not call the synchronous store from code
running inside a tokio runtime; use the asynchronous one there.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

from dynamic_streams import _native
from dynamic_streams._observe import observe
from dynamic_streams.consistency import Consistency, wants_eventual
from dynamic_streams.errors import InvalidInputError
from dynamic_streams.events import Event, QueryResult
from dynamic_streams.filter import EventFilter
from dynamic_streams.snapshots import Snapshot, _check_key, _encode

__all__ = ["DSN_ENV", "REPLICA_DSN_ENV", "AsyncEventStore", "EventStore"]

DSN_ENV = "DYNAMIC_STREAMS_DSN"
"""The environment variable read for the DSN when none is passed."""

REPLICA_DSN_ENV = "DYNAMIC_STREAMS_REPLICA_DSN"
"""The environment variable read for the replica's DSN when none is passed."""


def _dsn(dsn: str | None) -> str:
    if dsn is None:
        dsn = os.environ.get(DSN_ENV)
    if not dsn:
        raise InvalidInputError(f"no DSN: pass one, or set the environment variable {DSN_ENV}")
    return dsn


def _check_filter(filter: EventFilter) -> Any:
    if not isinstance(filter, EventFilter):
        raise TypeError(f"expected an EventFilter, got {type(filter).__name__}")
    return filter._native


def _check_append(
    filter: EventFilter, expected: int, events: tuple[Event, ...]
) -> tuple[Any, list[Any]]:
    native_filter = _check_filter(filter)
    if isinstance(expected, bool) or not isinstance(expected, int):
        raise TypeError("expected_max_sequence_number must be an int")
    if not events:
        raise InvalidInputError("append needs at least one event")
    for e in events:
        if not isinstance(e, Event):
            raise TypeError(f"expected Event instances, got {type(e).__name__}")
    return native_filter, [e._native for e in events]


class _StoreBase:
    __slots__ = ("_native", "_table")
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
    ) -> None:
        if replica_dsn is None:
            replica_dsn = os.environ.get(REPLICA_DSN_ENV) or None
        self._native = _native.EventStore(
            _dsn(dsn), table, pool_size, timeout, snapshot_table, replica_dsn, self._asyncio
        )
        self._table = table

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
        """Close the connection pool. Later calls raise :class:`InterfaceError`."""
        self._native.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"{type(self).__name__}(table={self.table!r}, {state})"


class EventStore(_StoreBase):
    """A DCB event store on one PostgreSQL table, for plain (threaded) Python.

    ``dsn`` is a libpq-style URL or ``key=value`` string; when omitted, the environment
    variable ``DYNAMIC_STREAMS_DSN`` is read. ``table`` may be schema-qualified. ``timeout``
    is the default limit in seconds for each call (None: no limit); every call can override
    it. Creating a store does no I/O: connections open on first use.

    Thread-safe: share one store between threads.
    """

    __slots__ = ()

    def create_schema(self, *, timeout: float | None = None) -> None:
        """Create the table and its indexes if they do not exist (safe to run concurrently)."""
        self._native.create_schema(timeout)

    def query(
        self,
        filter: EventFilter,
        *,
        timeout: float | None = None,
        consistency: Consistency | None = None,
    ) -> QueryResult:
        """The events matching ``filter`` in sequence order, and the highest sequence number.

        ``consistency="eventual"`` (or an :func:`eventual_consistency` block) reads from the
        replica when one is configured; decisions must read strongly (the default).
        """
        native, eventual = _check_filter(filter), wants_eventual(consistency)
        with observe("query", self._table, lambda: filter.to_sql(self._table)[0]) as out:
            result = QueryResult._from_rows(*self._native.query(native, timeout, eventual))
            out.from_replica = result.from_replica
            out.events = len(result.events)
        return result

    def append(
        self,
        filter: EventFilter,
        expected_max_sequence_number: int,
        *events: Event,
        timeout: float | None = None,
    ) -> list[int]:
        """Store ``events``, all or none, if no event matching ``filter`` was stored after
        ``expected_max_sequence_number``; return their sequence numbers.

        Raises :class:`ConcurrencyConflictError` (nothing stored) when one was.
        """
        native_filter, native_events = _check_append(filter, expected_max_sequence_number, events)
        with observe(
            "append", self._table, lambda: native_filter.append_sql(self._table), events=len(events)
        ):
            return self._native.append(
                native_filter, expected_max_sequence_number, native_events, timeout
            )

    def save_snapshot(
        self,
        projection_type: str,
        filter_hash: str,
        sequence_number: int,
        data: Any,
        *,
        timeout: float | None = None,
    ) -> bool:
        """Save ``data`` (anything JSON) as the snapshot of ``projection_type`` over the
        filter with ``filter_hash``, as of ``sequence_number``, unless a snapshot with a higher
        sequence number is stored. Returns whether it saved."""
        _check_key(projection_type, filter_hash)
        encoded = _encode(data)
        with observe("save_snapshot", self._table):
            return self._native.save_snapshot(
                projection_type, filter_hash, sequence_number, encoded, timeout
            )

    def load_snapshot(
        self,
        projection_type: str,
        filter_hash: str,
        *,
        timeout: float | None = None,
        consistency: Consistency | None = None,
    ) -> Snapshot | None:
        """The snapshot, or None when there is none (``consistency`` as for :meth:`query`)."""
        _check_key(projection_type, filter_hash)
        eventual = wants_eventual(consistency)
        with observe("load_snapshot", self._table):
            row = self._native.load_snapshot(projection_type, filter_hash, timeout, eventual)
        return None if row is None else Snapshot(projection_type, filter_hash, *row)

    def delete_snapshot(
        self, projection_type: str, filter_hash: str, *, timeout: float | None = None
    ) -> bool:
        """Delete the snapshot (deleting a missing one is fine). Returns whether one existed."""
        _check_key(projection_type, filter_hash)
        with observe("delete_snapshot", self._table):
            return self._native.delete_snapshot(projection_type, filter_hash, timeout)

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

    async def create_schema(self, *, timeout: float | None = None) -> None:
        """Create the table and its indexes if they do not exist (safe to run concurrently)."""
        await self._native.create_schema_async(timeout)

    async def query(
        self,
        filter: EventFilter,
        *,
        timeout: float | None = None,
        consistency: Consistency | None = None,
    ) -> QueryResult:
        """The events matching ``filter`` in sequence order, and the highest sequence number;
        see :meth:`EventStore.query` for ``consistency``."""
        native, eventual = _check_filter(filter), wants_eventual(consistency)
        with observe("query", self._table, lambda: filter.to_sql(self._table)[0]) as out:
            result = QueryResult._from_rows(
                *await self._native.query_async(native, timeout, eventual)
            )
            out.from_replica = result.from_replica
            out.events = len(result.events)
        return result

    async def append(
        self,
        filter: EventFilter,
        expected_max_sequence_number: int,
        *events: Event,
        timeout: float | None = None,
    ) -> list[int]:
        """Store ``events``, all or none, if no event matching ``filter`` was stored after
        ``expected_max_sequence_number``; return their sequence numbers.

        Raises :class:`ConcurrencyConflictError` (nothing stored) when one was.
        """
        native_filter, native_events = _check_append(filter, expected_max_sequence_number, events)
        with observe(
            "append", self._table, lambda: native_filter.append_sql(self._table), events=len(events)
        ):
            result: list[int] = await self._native.append_async(
                native_filter, expected_max_sequence_number, native_events, timeout
            )
        return result

    async def save_snapshot(
        self,
        projection_type: str,
        filter_hash: str,
        sequence_number: int,
        data: Any,
        *,
        timeout: float | None = None,
    ) -> bool:
        """Save a snapshot unless a higher one is stored; see :meth:`EventStore.save_snapshot`."""
        _check_key(projection_type, filter_hash)
        encoded = _encode(data)
        with observe("save_snapshot", self._table):
            saved: bool = await self._native.save_snapshot_async(
                projection_type, filter_hash, sequence_number, encoded, timeout
            )
        return saved

    async def load_snapshot(
        self,
        projection_type: str,
        filter_hash: str,
        *,
        timeout: float | None = None,
        consistency: Consistency | None = None,
    ) -> Snapshot | None:
        """The snapshot, or None when there is none (``consistency`` as for :meth:`query`)."""
        _check_key(projection_type, filter_hash)
        eventual = wants_eventual(consistency)
        with observe("load_snapshot", self._table):
            row = await self._native.load_snapshot_async(
                projection_type, filter_hash, timeout, eventual
            )
        return None if row is None else Snapshot(projection_type, filter_hash, *row)

    async def delete_snapshot(
        self, projection_type: str, filter_hash: str, *, timeout: float | None = None
    ) -> bool:
        """Delete the snapshot (deleting a missing one is fine). Returns whether one existed."""
        _check_key(projection_type, filter_hash)
        with observe("delete_snapshot", self._table):
            deleted: bool = await self._native.delete_snapshot_async(
                projection_type, filter_hash, timeout
            )
        return deleted

    async def __aenter__(self) -> AsyncEventStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
