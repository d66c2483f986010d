"""Events: what you append (:class:`Event`) and what you read back (:class:`RecordedEvent`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from dynamic_streams import _native
from dynamic_streams._json import encode
from dynamic_streams.errors import InvalidInputError

__all__ = ["Event", "JsonObject", "QueryResult", "RecordedEvent"]

JsonObject = Mapping[str, Any]
"""A JSON object as Python sees it: a mapping from strings to JSON values."""


def _json_text(what: str, value: JsonObject | str | bytes) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidInputError(f"{what} is not valid UTF-8: {err}") from err
    if isinstance(value, str):
        return value
    if not isinstance(value, Mapping):
        raise InvalidInputError(
            f"{what} must be a JSON object (a mapping), got {type(value).__name__}"
        )
    return encode(what, value)


def _id(value: UUID | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, UUID):
        return str(value)
    raise InvalidInputError(f"the event id must be a UUID or its text, got {type(value).__name__}")


def _tags(tags: Iterable[str]) -> list[str]:
    if isinstance(tags, str):
        raise InvalidInputError("tags must be an iterable of str, not one str")
    listed = list(tags)
    for t in listed:
        if not isinstance(t, str):
            raise InvalidInputError(f"tags must be str, got {type(t).__name__}")
    return listed


class Event:
    """An event to append, validated when it is built, before any I/O.

    ``payload`` and ``metadata`` are JSON objects: a mapping, or JSON text (``str`` or
    ``bytes``). ``occurred_at`` must be timezone-aware; it defaults to now. It is stored
    with microsecond precision.

    ``id`` (a :class:`uuid.UUID` or its text) makes appends of the event idempotent: once an
    event with this id is stored, appending it again stores nothing and returns the stored
    sequence number (an append retried after a timeout whose commit landed). The same id
    with another type, payload or tags is an :class:`IntegrityError`.

    ``tags`` are non-empty strings naming what the event is about (``"book:b1"``), matched by
    a filter's tag steps (``all_tags_of``, ``any_tag_of``). A repeated tag is kept once; the
    order is kept for reading back.
    """

    __slots__ = ("_native",)

    def __init__(
        self,
        event_type: str,
        payload: JsonObject | str | bytes,
        *,
        metadata: JsonObject | str | bytes | None = None,
        occurred_at: datetime | None = None,
        id: UUID | str | None = None,
        tags: Iterable[str] = (),
    ) -> None:
        if not isinstance(event_type, str):
            raise InvalidInputError(
                f"the event type must be a str, got {type(event_type).__name__}"
            )
        self._native = _native.StorableEvent(
            event_type,
            _json_text("the payload", payload),
            None if metadata is None else _json_text("the metadata", metadata),
            occurred_at,
            _id(id),
            _tags(tags),
        )

    @property
    def event_type(self) -> str:
        """The event's type."""
        return self._native.event_type

    @property
    def occurred_at(self) -> datetime:
        """When the event occurred, in UTC."""
        return self._native.occurred_at

    @property
    def id(self) -> UUID | None:
        """The event's id, if it has one."""
        text = self._native.id
        return None if text is None else UUID(text)

    @property
    def tags(self) -> tuple[str, ...]:
        """The event's tags, in the order given, each once."""
        return tuple(self._native.tags)

    def __repr__(self) -> str:
        return f"Event({self.event_type!r}, occurred_at={self.occurred_at.isoformat()})"


class RecordedEvent(NamedTuple):
    """An event as stored, with the sequence number the store gave it."""

    sequence_number: int
    occurred_at: datetime
    """When the event occurred, in UTC."""
    event_type: str
    payload: dict[str, Any]
    metadata: dict[str, Any]
    id: UUID | None = None
    """The id it was appended with, if any."""
    tags: tuple[str, ...] = ()
    """Its tags, in the order they were given."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The events a filter matched, in ascending sequence order, and the highest sequence
    number among them (0 when none): pass it to ``append`` as the expected maximum."""

    events: list[RecordedEvent]
    max_sequence_number: int
    from_replica: bool = False
    """Whether a read replica answered (an eventual read; see :mod:`dynamic_streams.consistency`)."""

    def __iter__(self) -> Iterator[RecordedEvent]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)
