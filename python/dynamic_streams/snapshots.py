"""Snapshots of projections, and a helper that keeps a projection up to date incrementally.

A snapshot is the state of a projection (a fold over a filter's events) as of a sequence
number, keyed by the projection's type and the filter's :meth:`~EventFilter.hash`. The
store never replaces a snapshot with one of a lower sequence number, so concurrent savers
cannot move a snapshot back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from dynamic_streams.errors import InvalidInputError
from dynamic_streams.events import RecordedEvent
from dynamic_streams.filter import EventFilter

if TYPE_CHECKING:
    from dynamic_streams.store import AsyncEventStore, EventStore

__all__ = ["Snapshot", "project", "project_async"]

State = TypeVar("State")


class Snapshot(NamedTuple):
    """A stored projection state."""

    projection_type: str
    filter_hash: str
    sequence_number: int
    """The highest sequence number folded into ``data``."""
    data: Any
    created_at: datetime


def _encode(data: Any) -> str:
    try:
        return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"the snapshot data cannot be encoded as JSON: {err}") from err


def _check_key(projection_type: str, filter_hash: str) -> None:
    for what, value in (("projection type", projection_type), ("filter hash", filter_hash)):
        if not isinstance(value, str):
            raise InvalidInputError(f"the {what} must be a str, got {type(value).__name__}")


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
    snapshot = store.load_snapshot(projection_type, filter.hash())
    state, seen = (decode(snapshot.data), snapshot.sequence_number) if snapshot else (initial, 0)
    result = store.query(filter.after(seen))
    for event in result.events:
        state = fold(state, event)
    if result.max_sequence_number > seen:
        seen = result.max_sequence_number
        store.save_snapshot(projection_type, filter.hash(), seen, encode(state))
    return state, seen


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
    snapshot = await store.load_snapshot(projection_type, filter.hash())
    state, seen = (decode(snapshot.data), snapshot.sequence_number) if snapshot else (initial, 0)
    result = await store.query(filter.after(seen))
    for event in result.events:
        state = fold(state, event)
    if result.max_sequence_number > seen:
        seen = result.max_sequence_number
        await store.save_snapshot(projection_type, filter.hash(), seen, encode(state))
    return state, seen
