"""Logging and OpenTelemetry around each store operation.

Logs go to the ``dynamic_streams`` logger: every operation at DEBUG with its duration and its
SQL (never its parameters, which may hold personal data, and never credentials), conflicts
at INFO, errors at WARNING. When the ``opentelemetry-api`` package is installed, each query,
append and snapshot call is a span, and durations and counts are recorded as metrics, with
each store's connections and vacuums, read from it when the application's reader collects;
they go wherever the application's providers send them (nowhere, until it sets one). Without
the package, none of this code runs beyond one flag check.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import weakref
from types import TracebackType
from typing import Any

from dynamic_streams.errors import ConcurrencyConflictError, Error, OperationTimeoutError

logger = logging.getLogger("dynamic_streams")
# An application that configured no logging sees nothing of the library's (Python's last
# resort handler would print warnings about errors the application caught).
logger.addHandler(logging.NullHandler())

try:
    from opentelemetry import metrics as _metrics
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - exercised in environments without it
    _trace = None  # type: ignore[assignment]
    _metrics = None  # type: ignore[assignment]


# The stores whose pools and vacuums the meter reports, each with a name unique in the
# process ("<table>#<n>") and the process that opened it (a forked child cannot use its
# parent's stores): held weakly, so a store's series end when it is collected.
_watched: weakref.WeakKeyDictionary[Any, tuple[str, int]] = weakref.WeakKeyDictionary()
_watch_count = itertools.count(1)


def watch(store: Any) -> None:
    """Has the meter report ``store.stats()`` (when the API is installed)."""
    if _instruments is not None:
        _watched[store] = (f"{store.table}#{next(_watch_count)}", os.getpid())


def _stats() -> list[tuple[dict[str, str], Any]]:
    """Each watched store's attributes and statistics."""
    pid = os.getpid()
    return [
        ({"dcb.table": store.table, "dcb.store": name}, store.stats())
        for store, (name, opened_by) in list(_watched.items())
        if opened_by == pid
    ]


def _pools() -> list[tuple[dict[str, str], Any]]:
    """Each watched store's pools, with their attributes."""
    found = []
    for attributes, stats in _stats():
        name = attributes["dcb.store"]
        found.append((attributes | {"db.client.connection.pool.name": name}, stats.pool))
        if stats.replica_pool is not None:
            replica = {"db.client.connection.pool.name": f"{name} replica"}
            found.append((attributes | replica, stats.replica_pool))
    return found


def _connections(_options: Any) -> list[Any]:
    assert _metrics is not None
    return [
        _metrics.Observation(count, attributes | {"db.client.connection.state": state})
        for attributes, pool in _pools()
        for state, count in (("idle", pool.idle), ("used", pool.open - pool.idle))
    ]


def _waiting(_options: Any) -> list[Any]:
    assert _metrics is not None
    return [_metrics.Observation(pool.waiting, attributes) for attributes, pool in _pools()]


def _most(_options: Any) -> list[Any]:
    assert _metrics is not None
    return [_metrics.Observation(pool.max_size, attributes) for attributes, pool in _pools()]


def _own(_options: Any) -> list[Any]:
    assert _metrics is not None
    return [
        _metrics.Observation(stats.own_connections, attributes) for attributes, stats in _stats()
    ]


def _vacuums(_options: Any) -> list[Any]:
    assert _metrics is not None
    return [
        _metrics.Observation(count, attributes | {"dcb.outcome": outcome})
        for attributes, stats in _stats()
        for outcome, count in (("done", stats.vacuums), ("failed", stats.failed_vacuums))
    ]


class _Instruments:
    def __init__(self) -> None:
        assert _trace is not None and _metrics is not None
        self.tracer = _trace.get_tracer("dynamic_streams")
        meter = _metrics.get_meter("dynamic_streams")
        # Read from the stores when the application's reader collects (OpenTelemetry's
        # names for a client's connection pool, and the vacuums of `vacuum_every`).
        for name, callback, unit, description in (
            ("count", _connections, "{connection}", "Connections of each pool, idle or used"),
            ("pending_requests", _waiting, "{request}", "Calls waiting for a connection"),
            ("max", _most, "{connection}", "The most connections each pool opens"),
        ):
            meter.create_observable_up_down_counter(
                f"db.client.connection.{name}",
                callbacks=[callback],
                unit=unit,
                description=description,
            )
        meter.create_observable_up_down_counter(
            "dcb.connections.own",
            callbacks=[_own],
            unit="{connection}",
            description="Connections each store holds outside its pools (listener, vacuum)",
        )
        meter.create_observable_counter(
            "dcb.vacuums",
            callbacks=[_vacuums],
            description="Vacuums of each store's tables, done or failed",
        )
        self.duration = meter.create_histogram(
            "dcb.operation.duration", unit="s", description="Duration of store operations"
        )
        self.queried = meter.create_counter("dcb.events.queried", description="Events read")
        self.appended = meter.create_counter("dcb.events.appended", description="Events stored")
        self.conflicts = meter.create_counter("dcb.conflicts", description="Failed append guards")
        self.errors = meter.create_counter("dcb.errors", description="Operations that failed")
        self.timeouts = meter.create_counter("dcb.timeouts", description="Operations timed out")
        self.cancellations = meter.create_counter(
            "dcb.cancellations", description="Operations cancelled by the caller"
        )


_instruments = _Instruments() if _trace is not None else None
_MISSING = object()
_METRICS_INTERNAL = getattr(_metrics, "_internal", None)
_PROVIDER_FROM_ENVIRONMENT = any(
    name in os.environ for name in ("OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER")
)
# The API's placeholder until a meter provider is set; not public, so found defensively
# (if it moves, telemetry is treated as on, which only costs time).
_PROXY_METER_PROVIDER: Any = getattr(
    getattr(_metrics, "_internal", None), "_ProxyMeterProvider", ()
)


_telemetry_seen_on = False


def _providers_set() -> bool:
    """Whether a tracer or meter provider is set, asked of the API (microseconds a call)."""
    assert _trace is not None and _metrics is not None
    return not isinstance(_trace.get_tracer_provider(), _trace.ProxyTracerProvider) or (
        not isinstance(_metrics.get_meter_provider(), _PROXY_METER_PROVIDER)
    )


def _telemetry_on() -> bool:
    """Whether the application has set a tracer or meter provider: until it does, the API's
    no-op spans would cost time for nothing.

    Providers are set at most once and never unset, so a yes is remembered. Until then the
    API's own globals answer (two attribute reads instead of the API's environment
    lookups, about 10 us in place on a 0.4 ms query); when they are not where this version
    of the API keeps them, or a provider comes from the environment, the API is asked."""
    global _telemetry_seen_on
    if _telemetry_seen_on:
        return True
    if _instruments is None:
        return False
    if (
        getattr(_trace, "_TRACER_PROVIDER", _MISSING) is None
        and getattr(_METRICS_INTERNAL, "_METER_PROVIDER", _MISSING) is None
        and not _PROVIDER_FROM_ENVIRONMENT
    ):
        return False
    _telemetry_seen_on = _providers_set()
    return _telemetry_seen_on


def _log_failure(operation: str, table: str, elapsed: float, err: Error) -> None:
    logger.warning(
        "%s on %s failed after %.2f ms: %s: %s",
        operation,
        table,
        elapsed * 1e3,
        type(err).__name__,
        err,
    )


class observe:
    """Wraps one operation: ``with observe("query", table, sql) as out: ...; out.events = n``.

    ``sql`` is a callable giving the operation's SQL, called only for DEBUG logs. A plain
    class rather than a generator: on the common path (no telemetry, logging above INFO)
    entering and leaving cost two flag checks, which matters on a sub-millisecond call.
    """

    __slots__ = (
        "_attributes",
        "_span",
        "_span_cm",
        "_sql",
        "_started",
        "events",
        "from_replica",
        "operation",
        "table",
    )

    def __init__(self, operation: str, table: str, sql: Any = None, *, events: int = 0) -> None:
        self.operation = operation
        self.table = table
        self._sql = sql
        self.events = events
        self.from_replica = False
        self._span_cm: Any = None
        self._attributes: dict[str, Any] | None = None

    def __enter__(self) -> observe:
        telemetry = _telemetry_on()
        if telemetry or logger.isEnabledFor(logging.INFO):
            self._attributes = {
                "db.system": "postgresql",
                "dcb.operation": self.operation,
                "dcb.table": self.table,
                "dcb.database": "primary",
            }
            if _instruments is not None and telemetry:
                self._span_cm = _instruments.tracer.start_as_current_span(
                    f"dynamic_streams.{self.operation}",
                    kind=_trace.SpanKind.CLIENT,
                    attributes=self._attributes,
                    record_exception=False,
                    set_status_on_exception=False,
                )
                self._span = self._span_cm.__enter__()
        self._started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        failure: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._attributes is None:
            # The common case: nothing to record unless it failed.
            if isinstance(failure, Error) and not isinstance(failure, ConcurrencyConflictError):
                _log_failure(
                    self.operation, self.table, time.perf_counter() - self._started, failure
                )
            return
        self._record(time.perf_counter() - self._started, failure)

    def _record(self, elapsed: float, failure: BaseException | None) -> None:
        operation, table = self.operation, self.table
        conflict = isinstance(failure, ConcurrencyConflictError)
        cancelled = isinstance(failure, (asyncio.CancelledError, KeyboardInterrupt))
        timed_out = isinstance(failure, OperationTimeoutError)
        if _instruments is not None and self._span_cm is not None:
            span = self._span
            span.set_attribute("dcb.events", self.events)
            span.set_attribute("dcb.database", "replica" if self.from_replica else "primary")
            span.set_attribute("dcb.conflict", conflict)
            if failure is not None and not conflict:
                span.record_exception(failure)
                span.set_status(_trace.Status(_trace.StatusCode.ERROR, type(failure).__name__))
            self._span_cm.__exit__(None, None, None)
            metric_attributes = {"dcb.operation": operation, "dcb.table": table}
            _instruments.duration.record(elapsed, metric_attributes)
            if failure is None and operation in ("query", "read"):
                _instruments.queried.add(self.events, metric_attributes)
            if failure is None and operation in ("append", "append_unconditionally", "import"):
                _instruments.appended.add(self.events, metric_attributes)
            if conflict:
                _instruments.conflicts.add(1, metric_attributes)
            elif timed_out:
                _instruments.timeouts.add(1, metric_attributes)
            elif cancelled:
                _instruments.cancellations.add(1, metric_attributes)
            elif failure is not None:
                _instruments.errors.add(1, metric_attributes)
        if conflict:
            logger.info(
                "%s on %s: concurrency conflict after %.2f ms", operation, table, elapsed * 1e3
            )
        elif isinstance(failure, Error):
            _log_failure(operation, table, elapsed, failure)
        elif failure is None and logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s on %s: %d events in %.2f ms; SQL: %s",
                operation,
                table,
                self.events,
                elapsed * 1e3,
                self._sql() if self._sql else "-",
            )
