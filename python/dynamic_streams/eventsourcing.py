"""A DCB recorder for the ``eventsourcing`` package, on this store (the ``eventsourcing`` extra).

An eventsourcing DCB application switches to it by configuration alone::

    PERSISTENCE_MODULE=dynamic_streams.eventsourcing
    DYNAMIC_STREAMS_DSN=postgresql://...

Settings, read from the application's environment (so ``<APP NAME>_<SETTING>`` overrides
``<SETTING>``, as eventsourcing does everywhere):

- ``DYNAMIC_STREAMS_DSN``: the database (required);
- ``DYNAMIC_STREAMS_TABLE``: the events table (default ``<app name in lower case>_events``,
  ``dcb_events`` without a name);
- ``CREATE_TABLE``: create or upgrade the schema when the recorder is made (default yes).

A recorder's query item is an item of this store's filters: any of its types and all of its
tags. An event's ``data`` (bytes) is stored as the payload ``{"utf8": text}`` when it is
UTF-8 text without NUL (JSON a transcoder wrote stays readable in SQL), else
``{"base64": ...}``; either reads back byte for byte. Conflicts raise eventsourcing's
``IntegrityError``, and the store's other errors eventsourcing's exception of the same
DB-API name.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from eventsourcing import persistence as es_persistence
from eventsourcing.dcb.api import (
    DCBAppendCondition,
    DCBEvent,
    DCBQuery,
    DCBReadResponse,
    DCBRecorder,
    DCBSequencedEvent,
    DCBSubscription,
)
from eventsourcing.dcb.persistence import DCBInfrastructureFactory
from eventsourcing.persistence import TrackingRecorder

from dynamic_streams import errors
from dynamic_streams.events import Event, RecordedEvent
from dynamic_streams.filter import EventFilter, build_event_filter
from dynamic_streams.store import DSN_ENV, EventStore

__all__ = ["TABLE_ENV", "DynamicStreamsDCBRecorder", "Factory"]

TABLE_ENV = "DYNAMIC_STREAMS_TABLE"
"""The setting that names the events table."""

# Ours to eventsourcing's, most specific first.
_ERRORS: list[tuple[type[errors.Error], type[Exception]]] = [
    (errors.IntegrityError, es_persistence.IntegrityError),
    (errors.InvalidInputError, es_persistence.ProgrammingError),
    (errors.DataError, es_persistence.DataError),
    (errors.OperationalError, es_persistence.OperationalError),
    (errors.ProgrammingError, es_persistence.ProgrammingError),
    (errors.DatabaseError, es_persistence.DatabaseError),
    (errors.InterfaceError, es_persistence.InterfaceError),
    (errors.Error, es_persistence.PersistenceError),
]


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except errors.Error as err:
        for ours, theirs in _ERRORS:
            if isinstance(err, ours):
                raise theirs(str(err)) from err
        raise  # pragma: no cover - errors.Error is the last entry


def _filter(query: DCBQuery | None) -> EventFilter | None:
    """The store's filter for ``query`` (None: every event). An item with neither types nor
    tags matches every event, and so does the whole query."""
    if query is None or not query.items or any(not (i.types or i.tags) for i in query.items):
        return None
    builder: Any = build_event_filter()
    for n, item in enumerate(query.items):
        builder = builder.matching() if n == 0 else builder.or_matching()
        if item.types:
            builder = builder.any_event_type_of(*item.types)
            if item.tags:
                builder = builder.and_all_tags_of(*item.tags)
        else:
            builder = builder.all_tags_of(*item.tags)
    result: EventFilter = builder.finalize()
    return result


def _payload(data: bytes) -> dict[str, str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = "\0"
    if "\0" in text:
        return {"base64": base64.b64encode(data).decode("ascii")}
    return {"utf8": text}


def _data(payload: dict[str, Any]) -> bytes:
    if "utf8" in payload:
        return str(payload["utf8"]).encode("utf-8")
    return base64.b64decode(payload["base64"])


def _sequenced(e: RecordedEvent) -> DCBSequencedEvent:
    return DCBSequencedEvent(
        event=DCBEvent(type=e.event_type, data=_data(e.payload), tags=list(e.tags)),
        position=e.sequence_number,
    )


class _ReadResponse(DCBReadResponse):
    """The events of one read, and its head: the head of the store when the read began (and
    at least the last event's position) without a limit; with one, the last event's position
    (None when there is none)."""

    def __init__(self, events: Iterator[RecordedEvent], head: int | None) -> None:
        self._events = events
        self._head = head

    @property
    def head(self) -> int | None:
        return self._head

    def __next__(self) -> DCBSequencedEvent:
        with _translated():
            event = next(self._events)
        self._head = max(self._head or 0, event.sequence_number)
        return _sequenced(event)


class DynamicStreamsDCBRecorder(DCBRecorder):
    """eventsourcing's DCB recorder interface on an :class:`EventStore`."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def read(
        self,
        query: DCBQuery | None = None,
        *,
        after: int | None = None,
        limit: int | None = None,
    ) -> DCBReadResponse:
        if limit is not None and limit <= 0:
            return _ReadResponse(iter(()), None)
        with _translated():
            filter = _filter(query)
            if limit is not None:
                # At most `limit` events, as asked: read now, so the head is known up front.
                events = list(self.store.read(filter, after=after or 0, limit=limit))
                last = events[-1].sequence_number if events else None
                return _ReadResponse(iter(events), last)
            head = self.store.head()
            return _ReadResponse(self.store.read(filter, after=after or 0), head or None)

    def append(
        self, events: Sequence[DCBEvent], condition: DCBAppendCondition | None = None
    ) -> int:
        if not events:
            raise es_persistence.ProgrammingError("an append needs at least one event")
        with _translated():
            stored = [Event(e.type, _payload(e.data), tags=e.tags) for e in events]
            if condition is None:
                numbers = self.store.append_unconditionally(*stored)
            else:
                boundary = _filter(condition.fail_if_events_match)
                if boundary is None:
                    boundary = build_event_filter().matching_any_event().finalize()
                numbers = self.store.append(boundary, condition.after or 0, *stored)
        return numbers[-1]

    def subscribe(
        self,
        query: DCBQuery | None = None,
        *,
        after: int | None = None,
    ) -> _Subscription:
        return _Subscription(self, query, after)


class _Subscription(DCBSubscription[DynamicStreamsDCBRecorder]):
    """A subscription of the store behind eventsourcing's interface: blocks for new events,
    ends when stopped."""

    def __init__(
        self,
        recorder: DynamicStreamsDCBRecorder,
        query: DCBQuery | None = None,
        after: int | None = None,
    ) -> None:
        super().__init__(recorder=recorder, query=query, after=after)
        with _translated():
            self._events = recorder.store.subscribe(_filter(query), after=after or 0)

    def stop(self) -> None:
        super().stop()
        self._events.close()

    def __next__(self) -> DCBSequencedEvent:
        with _translated():
            event = next(self._events)
        self._last_position = event.sequence_number
        return _sequenced(event)


class Factory(DCBInfrastructureFactory[TrackingRecorder]):
    """Selected by ``PERSISTENCE_MODULE=dynamic_streams.eventsourcing``: one store per
    application, closed with it."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        dsn = self.env.get(DSN_ENV)
        if not dsn:
            raise es_persistence.InfrastructureFactoryError(
                f"no DSN: set {DSN_ENV} in the application's environment"
            )
        table = self.env.get(TABLE_ENV) or f"{self.env.name.lower() or 'dcb'}_events"
        with _translated():
            self._store = EventStore(dsn, table=table)
        self._recorder = DynamicStreamsDCBRecorder(self._store)
        self._schema_ready = False

    def dcb_recorder(self) -> DCBRecorder:
        create = self.env.get("CREATE_TABLE", "y").lower() not in (
            "n",
            "no",
            "f",
            "false",
            "0",
            "off",
        )
        if create and not self._schema_ready:
            with _translated():
                self._store.create_schema()
            self._schema_ready = True
        return self._recorder

    def close(self) -> None:
        self._store.close()
        super().close()
