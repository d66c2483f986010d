"""Logging and OpenTelemetry around each store operation.

Logs go to the ``dynamic_streams`` logger: every operation at DEBUG with its duration and its
SQL (never its parameters, which may hold personal data, and never credentials), conflicts
at INFO, errors at WARNING. When the ``opentelemetry-api`` package is installed, each query,
append and snapshot call is a span, and durations and counts are recorded as metrics; they
go wherever the application's providers send them (nowhere, until it sets one). Without
the package, none of this code runs beyond one flag check.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dynamic_streams.errors import ConcurrencyConflictError, Error, OperationTimeoutError

logger = logging.getLogger("dynamic_streams")

try:
    from opentelemetry import metrics as _metrics
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - exercised in environments without it
    _trace = None  # type: ignore[assignment]
    _metrics = None  # type: ignore[assignment]


class _Instruments:
    def __init__(self) -> None:
        assert _trace is not None and _metrics is not None
        self.tracer = _trace.get_tracer("dynamic_streams")
        meter = _metrics.get_meter("dynamic_streams")
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
# The API's placeholder until a meter provider is set; not public, so found defensively
# (if it moves, telemetry is treated as on, which only costs time).
_PROXY_METER_PROVIDER: Any = getattr(
    getattr(_metrics, "_internal", None), "_ProxyMeterProvider", ()
)


def _telemetry_on() -> bool:
    """Whether the application has set a tracer or meter provider: until it does, the API's
    no-op spans would cost time for nothing."""
    if _instruments is None:
        return False
    return not isinstance(_trace.get_tracer_provider(), _trace.ProxyTracerProvider) or (
        not isinstance(_metrics.get_meter_provider(), _PROXY_METER_PROVIDER)
    )


class Outcome:
    """What the operation reports back: how many events it read or stored."""

    __slots__ = ("events", "from_replica")

    def __init__(self) -> None:
        self.events = 0
        self.from_replica = False


def _log_failure(operation: str, table: str, elapsed: float, err: Error) -> None:
    logger.warning(
        "%s on %s failed after %.2f ms: %s: %s",
        operation,
        table,
        elapsed * 1e3,
        type(err).__name__,
        err,
    )


@contextmanager
def observe(operation: str, table: str, sql: Any = None, *, events: int = 0) -> Iterator[Outcome]:
    """Wraps one operation; ``sql`` is a callable giving its SQL, called only for DEBUG logs."""
    outcome = Outcome()
    outcome.events = events
    if not _telemetry_on() and not logger.isEnabledFor(logging.INFO):
        # The common case: nothing to record unless it fails.
        started = time.perf_counter()
        try:
            yield outcome
        except Error as err:
            if not isinstance(err, ConcurrencyConflictError):
                _log_failure(operation, table, time.perf_counter() - started, err)
            raise
        return
    debug = logger.isEnabledFor(logging.DEBUG)
    attributes: dict[str, Any] = {
        "db.system": "postgresql",
        "dcb.operation": operation,
        "dcb.table": table,
        "dcb.database": "primary",
    }
    span_cm = (
        _instruments.tracer.start_as_current_span(
            f"dynamic_streams.{operation}",
            kind=_trace.SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        if _instruments is not None and _telemetry_on()
        else None
    )
    span = span_cm.__enter__() if span_cm is not None else None
    started = time.perf_counter()
    failure: BaseException | None = None
    try:
        yield outcome
    except BaseException as err:
        failure = err
        raise
    finally:
        elapsed = time.perf_counter() - started
        conflict = isinstance(failure, ConcurrencyConflictError)
        cancelled = isinstance(failure, (asyncio.CancelledError, KeyboardInterrupt))
        timed_out = isinstance(failure, OperationTimeoutError)
        attributes["dcb.events"] = outcome.events
        attributes["dcb.conflict"] = conflict
        if _instruments is not None and span_cm is not None and span is not None:
            span.set_attribute("dcb.events", outcome.events)
            span.set_attribute("dcb.database", "replica" if outcome.from_replica else "primary")
            span.set_attribute("dcb.conflict", conflict)
            if failure is not None and not conflict:
                span.record_exception(failure)
                span.set_status(_trace.Status(_trace.StatusCode.ERROR, type(failure).__name__))
            span_cm.__exit__(None, None, None)
            metric_attributes = {"dcb.operation": operation, "dcb.table": table}
            _instruments.duration.record(elapsed, metric_attributes)
            if failure is None and operation == "query":
                _instruments.queried.add(outcome.events, metric_attributes)
            if failure is None and operation == "append":
                _instruments.appended.add(outcome.events, metric_attributes)
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
        elif failure is not None and isinstance(failure, Error):
            _log_failure(operation, table, elapsed, failure)
        elif failure is None and debug:
            logger.debug(
                "%s on %s: %d events in %.2f ms; SQL: %s",
                operation,
                table,
                outcome.events,
                elapsed * 1e3,
                sql() if sql else "-",
            )
