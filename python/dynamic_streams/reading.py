"""Subscriptions: every event matching a filter after a position, in order, exactly once.

:meth:`EventStore.subscribe` and :meth:`AsyncEventStore.subscribe` return them. A
subscription delivers the backlog first, then new events as they are committed, woken by a
notification each append sends (and a poll every ``poll_interval`` seconds, should one be
missed). It never skips an event that commits late below one already delivered: it delivers
only below the head, where every event is committed. It holds no connection while its
consumer works, at most one page of events in memory, and takes no lock. When the server
cannot be reached it waits and resumes after the last event it delivered.

Stop it with :meth:`Subscription.close`, by leaving its ``with`` block, or (asyncio) by
cancelling the task that iterates it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Iterator
from types import TracebackType

from dynamic_streams import _native
from dynamic_streams.events import RecordedEvent

__all__ = ["AsyncSubscription", "Subscription"]


class _Base:
    __slots__ = ("_native", "_page", "_position")

    def __init__(self, native: _native.Subscription, after: int) -> None:
        self._native = native
        self._page: deque[RecordedEvent] = deque()
        self._position = after

    @property
    def position(self) -> int:
        """The sequence number of the last event delivered (or the one it started after):
        subscribe with ``after=position`` to go on from here."""
        return self._position

    @property
    def closed(self) -> bool:
        return self._native.closed

    def close(self) -> None:
        """Stop: the iteration ends, and a wait for new events returns at once."""
        self._native.close()
        self._page.clear()

    def _take(self) -> RecordedEvent:
        event = self._page.popleft()
        self._position = event.sequence_number
        return event

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"{type(self).__name__}(position={self._position}, {state})"


class Subscription(_Base):
    """An iterator of :class:`RecordedEvent`, without end until closed."""

    __slots__ = ()

    def __iter__(self) -> Iterator[RecordedEvent]:
        return self

    def __next__(self) -> RecordedEvent:
        while not self._page:
            page = self._native.next(None)
            if page is None:
                raise StopIteration
            self._page.extend(page)
        return self._take()

    def poll(self, timeout: float) -> list[RecordedEvent]:
        """The events there are, waiting up to ``timeout`` seconds for some (empty: none came,
        or the subscription is closed)."""
        if not self._page:
            self._page.extend(self._native.next(timeout) or ())
        return [self._take() for _ in range(len(self._page))]

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncSubscription(_Base):
    """An async iterator of :class:`RecordedEvent`, without end until closed or cancelled."""

    __slots__ = ()

    def __aiter__(self) -> AsyncIterator[RecordedEvent]:
        return self

    async def __anext__(self) -> RecordedEvent:
        while not self._page:
            page = await self._native.next(None)
            if page is None:
                raise StopAsyncIteration
            self._page.extend(page)
        return self._take()

    async def poll(self, timeout: float) -> list[RecordedEvent]:
        """The events there are, waiting up to ``timeout`` seconds for some (empty: none came,
        or the subscription is closed)."""
        if not self._page:
            self._page.extend(await self._native.next(timeout) or ())
        return [self._take() for _ in range(len(self._page))]

    async def __aenter__(self) -> AsyncSubscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
