"""Event sourcing on PostgreSQL with Dynamic Consistency Boundaries.

Query the events a decision depends on with a filter, decide, and append new events guarded
by the same filter: the append fails with :class:`ConcurrencyConflictError` if an event
matching the filter was stored in between, even under heavy concurrency.
"""

from dynamic_streams._native import __version__
from dynamic_streams.consistency import Consistency, eventual_consistency, strong_consistency
from dynamic_streams.errors import (
    ConcurrencyConflictError,
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InvalidInputError,
    OperationalError,
    OperationTimeoutError,
    ProgrammingError,
)
from dynamic_streams.events import Event, JsonObject, QueryResult, RecordedEvent
from dynamic_streams.filter import EventFilter, FilterBuilder, P, Predicate, build_event_filter
from dynamic_streams.projection import project, project_async
from dynamic_streams.projector import AsyncProjector, Projector
from dynamic_streams.reading import AsyncSubscription, Subscription
from dynamic_streams.snapshots import Snapshot
from dynamic_streams.store import (
    DSN_ENV,
    REPLICA_DSN_ENV,
    STORE_DEFAULT,
    AsyncEventStore,
    EventStore,
    PoolStats,
    StoreDefault,
    StoreStats,
)

__all__ = [
    "DSN_ENV",
    "REPLICA_DSN_ENV",
    "STORE_DEFAULT",
    "AsyncEventStore",
    "AsyncProjector",
    "AsyncSubscription",
    "ConcurrencyConflictError",
    "Consistency",
    "DataError",
    "DatabaseError",
    "Error",
    "Event",
    "EventFilter",
    "EventStore",
    "FilterBuilder",
    "IntegrityError",
    "InterfaceError",
    "InvalidInputError",
    "JsonObject",
    "OperationTimeoutError",
    "OperationalError",
    "P",
    "PoolStats",
    "Predicate",
    "ProgrammingError",
    "Projector",
    "QueryResult",
    "RecordedEvent",
    "Snapshot",
    "StoreDefault",
    "StoreStats",
    "Subscription",
    "__version__",
    "build_event_filter",
    "eventual_consistency",
    "project",
    "project_async",
    "strong_consistency",
]
