"""Projections kept up to date incrementally from their snapshots.

:func:`project` (and :func:`project_async` for the asyncio store) loads a projection's
snapshot, folds in only the events stored since, and saves a new snapshot. Both run the same
steps, written once in :func:`_steps`; they differ only in how each store call is waited for.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

from dynamic_streams.events import QueryResult, RecordedEvent
from dynamic_streams.filter import EventFilter
from dynamic_streams.snapshots import Snapshot

if TYPE_CHECKING:
    from dynamic_streams.store import AsyncEventStore, EventStore

__all__ = ["project", "project_async"]

State = TypeVar("State")

# Each step yields a store call to make (a thunk) and is sent back its result.
_Steps = Generator[Callable[[], Any], Any, tuple[State, int]]


def _steps(
    store: EventStore | AsyncEventStore,
    projection_type: str,
    filter: EventFilter,
    initial: State,
    fold: Callable[[State, RecordedEvent], State],
    encode: Callable[[State], Any],
    decode: Callable[[Any], State],
) -> _Steps[State]:
    filter_hash = filter.hash()
    snapshot: Snapshot | None = yield lambda: store.load_snapshot(projection_type, filter_hash)
    state, seen = (decode(snapshot.data), snapshot.sequence_number) if snapshot else (initial, 0)
    result: QueryResult = yield lambda: store.query(filter.after(seen))
    for event in result.events:
        state = fold(state, event)
    if result.max_sequence_number > seen:
        seen = result.max_sequence_number
        data = encode(state)
        yield lambda: store.save_snapshot(projection_type, filter_hash, seen, data)
    return state, seen


def _send(steps: _Steps[State], result: Any) -> Callable[[], Any] | tuple[State, int]:
    """Sends ``result`` to ``steps``: the next store call to make, or, when there is none,
    the projection's outcome (a tuple, so never callable)."""
    try:
        return steps.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def project(
    store: EventStore,
    projection_type: str,
    filter: EventFilter,
    initial: State,
    fold: Callable[[State, RecordedEvent], State],
    *,
    encode: Callable[[State], Any] = lambda state: state,
    decode: Callable[[Any], State] = lambda data: data,
) -> tuple[State, int]:
    """Brings a projection up to date: load its snapshot (or start from ``initial``), fold in
    only the events stored since, and save a new snapshot if anything was folded.

    ``encode`` and ``decode`` convert the state to and from JSON-able data. Returns the state
    and the sequence number it is current as of.
    """
    steps = _steps(store, projection_type, filter, initial, fold, encode, decode)
    step = _send(steps, None)
    while callable(step):
        step = _send(steps, step())
    return step


async def project_async(
    store: AsyncEventStore,
    projection_type: str,
    filter: EventFilter,
    initial: State,
    fold: Callable[[State, RecordedEvent], State],
    *,
    encode: Callable[[State], Any] = lambda state: state,
    decode: Callable[[Any], State] = lambda data: data,
) -> tuple[State, int]:
    """The asyncio twin of :func:`project`."""
    steps = _steps(store, projection_type, filter, initial, fold, encode, decode)
    step = _send(steps, None)
    while callable(step):
        step = _send(steps, await step())
    return step
