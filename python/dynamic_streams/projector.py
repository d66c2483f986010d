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
from collections.abc import Callable, Generator
from functools import partial
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


# Each step that may wait (a store call, the handler, the connection) is yielded as a thunk
# and sent back its result; a failure is thrown back in. The sync projector calls the
# thunks, the asyncio one also awaits what they return: the steps are written once.
_Steps = Generator[Callable[[], Any], Any, Any]


def _drive(steps: _Steps) -> Any:
    result: Any = None
    failure: BaseException | None = None
    while True:
        try:
            step = steps.throw(failure) if failure is not None else steps.send(result)
        except StopIteration as done:
            return done.value
        try:
            result, failure = step(), None
        except BaseException as err:  # thrown into the steps, which may roll back
            result, failure = None, err


async def _drive_async(steps: _Steps) -> Any:
    result: Any = None
    failure: BaseException | None = None
    while True:
        try:
            step = steps.throw(failure) if failure is not None else steps.send(result)
        except StopIteration as done:
            return done.value
        try:
            result, failure = step(), None
            if inspect.isawaitable(result):
                result = await result
        except BaseException as err:
            result, failure = None, err


class _Base:
    __slots__ = (
        "_connection",
        "_filter",
        "_handler",
        "_load",
        "_name",
        "_poll",
        "_save",
        "_stopped",
        "_store",
        "_sub",
    )

    def __init__(
        self,
        store: Any,
        name: str,
        filter: EventFilter | None,
        handler: Callable[[RecordedEvent], Any],
        connection: Any,
        poll_interval: float,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise InvalidInputError("a projector needs a name (its checkpoint's)")
        if not callable(handler):
            raise TypeError("the handler must be callable")
        self._store = store
        self._name = name
        self._filter = filter
        self._handler = handler
        self._connection = connection
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

    def _position(self) -> _Steps:
        conn = self._connection
        if conn is None:
            saved = yield lambda: self._store.checkpoint(self._name)
            return saved or 0
        cursor = conn.cursor()
        try:
            yield lambda: cursor.execute(self._load, (self._name,))
            row = yield cursor.fetchone
        finally:
            yield cursor.close
            yield conn.rollback  # ends the read's transaction
        return 0 if row is None else int(row[0])

    def _handle(self, page: list[RecordedEvent]) -> _Steps:
        last = page[-1].sequence_number
        conn = self._connection
        if conn is None:
            for event in page:
                yield partial(self._handler, event)
            yield lambda: self._store.save_checkpoint(self._name, last)
            return
        try:
            for event in page:
                yield partial(self._handler, event)
            cursor = conn.cursor()
            yield lambda: cursor.execute(self._save, (self._name, last))
            yield cursor.close
            yield conn.commit
        except BaseException:
            yield conn.rollback
            raise


class Projector(_Base):
    """Keeps a read model up to date; see the module's documentation."""

    __slots__ = ()

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
        super().__init__(store, name, filter, handler, connection, poll_interval)

    def position(self) -> int:
        """The sequence number of the last event handled and saved (0: none yet)."""
        return int(_drive(self._position()))

    def catch_up(self, *, batch_size: int = 1000) -> int:
        """Handle the events stored so far (up to the head as of now); return how many."""
        handled, page = 0, []
        for event in self._store.read(self._filter, after=self.position(), batch_size=batch_size):
            page.append(event)
            if len(page) == batch_size:
                _drive(self._handle(page))
                handled, page = handled + len(page), []
        if page:
            _drive(self._handle(page))
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
                        _drive(self._handle(page))
            finally:
                self._sub = None


class AsyncProjector(_Base):
    """The asyncio twin of :class:`Projector`: ``await run()`` until :meth:`stop` or
    cancellation."""

    __slots__ = ()

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
        super().__init__(store, name, filter, handler, connection, poll_interval)

    async def position(self) -> int:
        """The sequence number of the last event handled and saved (0: none yet)."""
        return int(await _drive_async(self._position()))

    async def catch_up(self, *, batch_size: int = 1000) -> int:
        """Handle the events stored so far; return how many."""
        handled, page = 0, []
        after = await self.position()
        async for event in self._store.read(self._filter, after=after, batch_size=batch_size):
            page.append(event)
            if len(page) == batch_size:
                await _drive_async(self._handle(page))
                handled, page = handled + len(page), []
        if page:
            await _drive_async(self._handle(page))
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
                        await _drive_async(self._handle(page))
            finally:
                self._sub = None
