"""Projections that keep up: a read model fed by a subscription, resumed from a checkpoint.

Give a :class:`Projector` a name, a filter and a handler. It follows a subscription to the
filter's events from the position saved under its name, calls the handler with each event in
order, and saves the position of each page it finished. After a crash it resumes where the
last saved page ended.

Delivery is *at least once*: the events handled since the last saved position are handled
again after a crash, so the handler must tolerate repeats (an upsert, a set, a check of the
event's sequence number against the read model's). *Exactly once* when the read model lives
in a database the application reaches through a DB-API connection (psycopg, for a read model
in PostgreSQL): pass it as ``connection``, and the projector saves the position through that
connection, in the transaction in which the handler wrote the page's changes. The handler then
writes through the same connection and never commits itself; the position and the read model
move together or not at all.

:class:`AsyncProjector` is the asyncio twin (its handler may be a coroutine function, its
connection a psycopg ``AsyncConnection``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dynamic_streams.errors import InvalidInputError
from dynamic_streams.events import RecordedEvent
from dynamic_streams.filter import EventFilter

if TYPE_CHECKING:
    from dynamic_streams.reading import AsyncSubscription, Subscription
    from dynamic_streams.store import AsyncEventStore, EventStore

__all__ = ["AsyncProjector", "Projector"]


def _dbapi(sql: str) -> str:
    """The store's ``$n`` parameters as DB-API's ``format`` style (``%s``, in order)."""
    return re.sub(r"\$\d+", "%s", sql)


class _Base:
    __slots__ = ("_filter", "_handler", "_load", "_name", "_poll", "_save", "_stopped", "_sub")

    def __init__(
        self,
        store: EventStore | AsyncEventStore,
        name: str,
        filter: EventFilter | None,
        handler: Callable[[RecordedEvent], Any],
        poll_interval: float,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise InvalidInputError("a projector needs a name (its checkpoint's)")
        if not callable(handler):
            raise TypeError("the handler must be callable")
        self._name = name
        self._filter = filter
        self._handler = handler
        self._poll = poll_interval
        self._stopped = False
        load, save = store._native.checkpoint_sql
        self._load, self._save = _dbapi(load), _dbapi(save)
        self._sub: Subscription | AsyncSubscription | None = None

    @property
    def name(self) -> str:
        return self._name

    def stop(self) -> None:
        """Stop :meth:`run` after the page in hand (from any thread)."""
        self._stopped = True
        if self._sub is not None:
            self._sub.close()


class Projector(_Base):
    """Keeps a read model up to date; see the module's documentation."""

    __slots__ = ("_connection", "_store")

    def __init__(
        self,
        store: EventStore,
        name: str,
        filter: EventFilter | None,
        handler: Callable[[RecordedEvent], object],
        *,
        connection: Any = None,
        poll_interval: float = 1.0,
    ) -> None:
        super().__init__(store, name, filter, handler, poll_interval)
        self._store = store
        self._connection = connection

    def position(self) -> int:
        """The sequence number of the last event handled and saved (0: none yet)."""
        if self._connection is None:
            return self._store.checkpoint(self._name) or 0
        cursor = self._connection.cursor()
        try:
            cursor.execute(self._load, (self._name,))
            row = cursor.fetchone()
        finally:
            cursor.close()
            self._connection.rollback()  # ends the read's transaction
        return 0 if row is None else int(row[0])

    def _handle(self, page: list[RecordedEvent]) -> None:
        last = page[-1].sequence_number
        if self._connection is None:
            for event in page:
                self._handler(event)
            self._store.save_checkpoint(self._name, last)
            return
        try:
            for event in page:
                self._handler(event)
            cursor = self._connection.cursor()
            cursor.execute(self._save, (self._name, last))
            cursor.close()
            self._connection.commit()
        except BaseException:
            self._connection.rollback()
            raise

    def catch_up(self, *, batch_size: int = 1000) -> int:
        """Handle the events stored so far (up to the head as of now); return how many."""
        handled, page = 0, []
        for event in self._store.read(self._filter, after=self.position(), batch_size=batch_size):
            page.append(event)
            if len(page) == batch_size:
                self._handle(page)
                handled, page = handled + len(page), []
        if page:
            self._handle(page)
            handled += len(page)
        return handled

    def run(self, *, batch_size: int = 1000) -> None:
        """Follow the events, backlog then live, until :meth:`stop` (or an exception from the
        handler, which propagates after the pages before it were saved)."""
        self._stopped = False
        with self._store.subscribe(
            self._filter, after=self.position(), batch_size=batch_size, poll_interval=self._poll
        ) as sub:
            self._sub = sub
            try:
                while not self._stopped:
                    page = sub.poll(self._poll)
                    if page:
                        self._handle(page)
            finally:
                self._sub = None


class AsyncProjector(_Base):
    """The asyncio twin of :class:`Projector`: ``await run()`` until :meth:`stop` or
    cancellation."""

    __slots__ = ("_connection", "_store")

    def __init__(
        self,
        store: AsyncEventStore,
        name: str,
        filter: EventFilter | None,
        handler: Callable[[RecordedEvent], Any],
        *,
        connection: Any = None,
        poll_interval: float = 1.0,
    ) -> None:
        super().__init__(store, name, filter, handler, poll_interval)
        self._store = store
        self._connection = connection

    async def position(self) -> int:
        """The sequence number of the last event handled and saved (0: none yet)."""
        if self._connection is None:
            return await self._store.checkpoint(self._name) or 0
        cursor = self._connection.cursor()
        try:
            await cursor.execute(self._load, (self._name,))
            row = await cursor.fetchone()
        finally:
            await cursor.close()
            await self._connection.rollback()
        return 0 if row is None else int(row[0])

    async def _call(self, event: RecordedEvent) -> None:
        result = self._handler(event)
        if inspect.isawaitable(result):
            await result

    async def _handle(self, page: list[RecordedEvent]) -> None:
        last = page[-1].sequence_number
        if self._connection is None:
            for event in page:
                await self._call(event)
            await self._store.save_checkpoint(self._name, last)
            return
        try:
            for event in page:
                await self._call(event)
            cursor = self._connection.cursor()
            await cursor.execute(self._save, (self._name, last))
            await cursor.close()
            await self._connection.commit()
        except BaseException:
            await self._connection.rollback()
            raise

    async def catch_up(self, *, batch_size: int = 1000) -> int:
        """Handle the events stored so far; return how many."""
        handled, page = 0, []
        after = await self.position()
        async for event in self._store.read(self._filter, after=after, batch_size=batch_size):
            page.append(event)
            if len(page) == batch_size:
                await self._handle(page)
                handled, page = handled + len(page), []
        if page:
            await self._handle(page)
            handled += len(page)
        return handled

    async def run(self, *, batch_size: int = 1000) -> None:
        """Follow the events, backlog then live, until :meth:`stop` or cancellation."""
        self._stopped = False
        after = await self.position()
        async with self._store.subscribe(
            self._filter, after=after, batch_size=batch_size, poll_interval=self._poll
        ) as sub:
            self._sub = sub
            try:
                while not self._stopped:
                    page = await sub.poll(self._poll)
                    if page:
                        await self._handle(page)
            finally:
                self._sub = None
