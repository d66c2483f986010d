"""Event filters and their fluent, immutable builder.

A filter is an OR of items, optionally narrowed by one global bound. An item is any of some
event types, and payload predicates, and tags (each part optional, at least one given)::

    filter = (
        build_event_filter()
        .matching()
        .any_event_type_of("BookCopyLentToReader", "BookCopyReturnedByReader")
        .and_any_predicate_of(P("BookID", book_id), P("ReaderID", reader_id))
        .finalize()
    )

Every step returns a new builder, so a shared partial filter can be extended in several
ways without one extension changing another. Each builder class offers only the steps that
make sense next, and a type checker sees that.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from dynamic_streams import _native
from dynamic_streams._json import check_bigint
from dynamic_streams.errors import InvalidInputError

__all__ = [
    "EventFilter",
    "FilterBuilder",
    "P",
    "Predicate",
    "build_event_filter",
]

PredicateValue = str | int | float | bool


class Predicate(NamedTuple):
    """``payload[key] == value`` on the payload's top level, compared as JSON values."""

    key: str
    value: PredicateValue


P = Predicate
"""Short alias: ``P("BookID", book_id)``."""


class _Item(NamedTuple):
    """One item as the builder collects it."""

    types: tuple[str, ...] = ()
    match: _native.Match | None = None
    predicates: tuple[Predicate, ...] = ()
    tag_match: _native.Match | None = None
    tags: tuple[str, ...] = ()


# The items so far, newest first, as a chain of pairs: a step costs the same however many
# items came before it (a filter of many items is built in linear time).
_Chain = tuple["_Chain", _Item] | None


class EventFilter:
    """A validated, sanitised filter. Build one with :func:`build_event_filter`.

    Equal filters compare and hash equal, however they were built.
    """

    __slots__ = ("_native",)

    def __init__(self, items: tuple[_Item, ...] | None, bound: _native.Bound | None) -> None:
        native_items = (
            None
            if items is None
            else [
                _native.FilterItem(
                    list(i.types), i.match, list(i.predicates), i.tag_match, list(i.tags)
                )
                for i in items
            ]
        )
        self._native = _native.Filter(native_items, bound)

    def canonical_json(self) -> str:
        """A deterministic serialisation: equal filters give equal text."""
        return self._native.canonical_json()

    def hash(self) -> str:
        """A stable SHA-256 hash of :meth:`canonical_json` (64 hex digits): equal filters hash
        equal in every process; it keys snapshots."""
        return self._native.hash()

    def after(self, sequence_number: int) -> EventFilter:
        """The same filter, only for events stored after ``sequence_number``: the incremental
        read after a snapshot. Raises :class:`InvalidInputError` for a filter with a time
        bound (events stored later may have occurred earlier)."""
        if isinstance(sequence_number, bool) or not isinstance(sequence_number, int):
            raise InvalidInputError("the sequence number must be an int")
        reopened = EventFilter.__new__(EventFilter)
        reopened._native = self._native.after(check_bigint("the sequence number", sequence_number))
        return reopened

    def to_sql(self, table: str = "events") -> tuple[str, list[str]]:
        """The SELECT this filter compiles to, and its parameters, for inspection."""
        return self._native.to_sql(table)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EventFilter):
            return NotImplemented
        return self._native == other._native

    def __hash__(self) -> int:
        return hash(self._native)

    def __repr__(self) -> str:
        return f"EventFilter({self.canonical_json()})"


def _predicates(preds: tuple[Predicate, ...]) -> tuple[Predicate, ...]:
    for p in preds:
        if not isinstance(p, tuple) or len(p) != 2 or not isinstance(p[0], str):
            raise InvalidInputError(f"expected P(key, value), got {p!r}")
        if not isinstance(p[1], (str, int, float)):  # bool is an int
            raise InvalidInputError(
                f"the value of predicate {p[0]!r} must be a str, int, float or bool, "
                f"got {type(p[1]).__name__}"
            )
    return tuple(Predicate(*p) for p in preds)


def _types(types: tuple[str, ...]) -> tuple[str, ...]:
    for t in types:
        if not isinstance(t, str):
            raise InvalidInputError(f"event types must be str, got {type(t).__name__}")
    return types


def _tags(tags: tuple[str, ...]) -> tuple[str, ...]:
    for t in tags:
        if not isinstance(t, str):
            raise InvalidInputError(f"tags must be str, got {type(t).__name__}")
    return tags


def _typed(current: _Item | None, event_types: tuple[str, ...]) -> _Item:
    return (current or _Item())._replace(types=_types(event_types))


def _with_predicates(
    current: _Item | None, match: _native.Match, preds: tuple[Predicate, ...]
) -> _Item:
    return (current or _Item())._replace(match=match, predicates=_predicates(preds))


def _tagged(current: _Item | None, match: _native.Match, tags: tuple[str, ...]) -> _Item:
    return (current or _Item())._replace(tag_match=match, tags=_tags(tags))


class _State:
    __slots__ = ("_bound", "_current", "_items")

    def __init__(
        self,
        items: _Chain = None,
        current: _Item | None = None,
        bound: _native.Bound | None = None,
    ) -> None:
        self._items = items
        self._current = current
        self._bound = bound

    def _all_items(self) -> _Chain:
        return self._items if self._current is None else (self._items, self._current)


class _Finalizable(_State):
    __slots__ = ()

    def finalize(self) -> EventFilter:
        """The filter. Raises :class:`InvalidInputError` if an item is empty after sanitising
        or the bound is impossible."""
        items: list[_Item] = []
        chain = self._all_items()
        while chain is not None:
            chain, item = chain
            items.append(item)
        return EventFilter(tuple(reversed(items)) or None, self._bound)


class BoundedFilter(_Finalizable):
    """A filter whose bound is complete: only ``finalize`` remains."""

    __slots__ = ()


class AfterOccurredFrom(_Finalizable):
    """``occurred_from`` was given: an upper time bound may follow."""

    __slots__ = ("_start",)

    def __init__(self, items: _Chain, current: _Item | None, start: datetime) -> None:
        super().__init__(items, current, _native.Bound.occurred_from(start))
        self._start = start

    def and_occurred_until(self, until: datetime) -> BoundedFilter:
        """Also only events that occurred at or before ``until``."""
        return BoundedFilter(
            self._items, self._current, _native.Bound.occurred_between(self._start, until)
        )


class _Bounds(_State):
    __slots__ = ()

    def occurred_from(self, start: datetime) -> AfterOccurredFrom:
        """Only events that occurred at or after ``start`` (inclusive)."""
        return AfterOccurredFrom(self._items, self._current, start)

    def occurred_until(self, until: datetime) -> BoundedFilter:
        """Only events that occurred at or before ``until`` (inclusive)."""
        return BoundedFilter(self._items, self._current, _native.Bound.occurred_until(until))

    def with_sequence_number_higher_than(self, sequence_number: int) -> BoundedFilter:
        """Only events stored after ``sequence_number`` (exclusive)."""
        if isinstance(sequence_number, bool) or not isinstance(sequence_number, int):
            raise InvalidInputError("the sequence number must be an int")
        bound = _native.Bound.sequence_number_above(
            check_bigint("the sequence number", sequence_number)
        )
        return BoundedFilter(self._items, self._current, bound)


class CompleteItem(_Bounds, _Finalizable):
    """An item that has all it can have: add another with ``or_matching``, bound, or finalize."""

    __slots__ = ()

    def or_matching(self) -> EmptyItem:
        """Start another item; the filter matches events that match any item."""
        return EmptyItem(self._all_items())


class ItemWithTypesAndPredicates(CompleteItem):
    """An item with event types and predicates; tags may narrow it."""

    __slots__ = ()

    def and_all_tags_of(self, *tags: str) -> CompleteItem:
        """...and the event carries every one of ``tags``."""
        return CompleteItem(self._items, _tagged(self._current, _native.Match.ALL, tags))

    def and_any_tag_of(self, *tags: str) -> CompleteItem:
        """...and the event carries at least one of ``tags``."""
        return CompleteItem(self._items, _tagged(self._current, _native.Match.ANY, tags))


class ItemWithTypesAndTags(CompleteItem):
    """An item with event types and tags; predicates may narrow it."""

    __slots__ = ()

    def and_any_predicate_of(self, *predicates: Predicate) -> CompleteItem:
        """...and the payload matches at least one of ``predicates``."""
        return CompleteItem(
            self._items, _with_predicates(self._current, _native.Match.ANY, predicates)
        )

    def and_all_predicates_of(self, *predicates: Predicate) -> CompleteItem:
        """...and the payload matches every one of ``predicates``."""
        return CompleteItem(
            self._items, _with_predicates(self._current, _native.Match.ALL, predicates)
        )


class ItemWithPredicatesAndTags(CompleteItem):
    """An item with predicates and tags; event types may narrow it."""

    __slots__ = ()

    def and_any_event_type_of(self, *event_types: str) -> CompleteItem:
        """...and the event has one of ``event_types``."""
        return CompleteItem(self._items, _typed(self._current, event_types))


class ItemWithTypes(CompleteItem):
    """An item with event types; predicates and tags may narrow it."""

    __slots__ = ()

    def and_any_predicate_of(self, *predicates: Predicate) -> ItemWithTypesAndPredicates:
        """...and the payload matches at least one of ``predicates``."""
        part = _with_predicates(self._current, _native.Match.ANY, predicates)
        return ItemWithTypesAndPredicates(self._items, part)

    def and_all_predicates_of(self, *predicates: Predicate) -> ItemWithTypesAndPredicates:
        """...and the payload matches every one of ``predicates``."""
        part = _with_predicates(self._current, _native.Match.ALL, predicates)
        return ItemWithTypesAndPredicates(self._items, part)

    def and_all_tags_of(self, *tags: str) -> ItemWithTypesAndTags:
        """...and the event carries every one of ``tags``."""
        return ItemWithTypesAndTags(self._items, _tagged(self._current, _native.Match.ALL, tags))

    def and_any_tag_of(self, *tags: str) -> ItemWithTypesAndTags:
        """...and the event carries at least one of ``tags``."""
        return ItemWithTypesAndTags(self._items, _tagged(self._current, _native.Match.ANY, tags))


class ItemWithPredicates(CompleteItem):
    """An item with predicates; event types and tags may narrow it."""

    __slots__ = ()

    def and_any_event_type_of(self, *event_types: str) -> ItemWithTypesAndPredicates:
        """...and the event has one of ``event_types``."""
        return ItemWithTypesAndPredicates(self._items, _typed(self._current, event_types))

    def and_all_tags_of(self, *tags: str) -> ItemWithPredicatesAndTags:
        """...and the event carries every one of ``tags``."""
        return ItemWithPredicatesAndTags(
            self._items, _tagged(self._current, _native.Match.ALL, tags)
        )

    def and_any_tag_of(self, *tags: str) -> ItemWithPredicatesAndTags:
        """...and the event carries at least one of ``tags``."""
        return ItemWithPredicatesAndTags(
            self._items, _tagged(self._current, _native.Match.ANY, tags)
        )


class ItemWithTags(CompleteItem):
    """An item with tags; event types and predicates may narrow it."""

    __slots__ = ()

    def and_any_event_type_of(self, *event_types: str) -> ItemWithTypesAndTags:
        """...and the event has one of ``event_types``."""
        return ItemWithTypesAndTags(self._items, _typed(self._current, event_types))

    def and_any_predicate_of(self, *predicates: Predicate) -> ItemWithPredicatesAndTags:
        """...and the payload matches at least one of ``predicates``."""
        part = _with_predicates(self._current, _native.Match.ANY, predicates)
        return ItemWithPredicatesAndTags(self._items, part)

    def and_all_predicates_of(self, *predicates: Predicate) -> ItemWithPredicatesAndTags:
        """...and the payload matches every one of ``predicates``."""
        part = _with_predicates(self._current, _native.Match.ALL, predicates)
        return ItemWithPredicatesAndTags(self._items, part)


class EmptyItem(_State):
    """A new, empty item: say what it matches."""

    __slots__ = ()

    def any_event_type_of(self, *event_types: str) -> ItemWithTypes:
        """Events of any of ``event_types``."""
        return ItemWithTypes(self._items, _typed(None, event_types))

    def any_predicate_of(self, *predicates: Predicate) -> ItemWithPredicates:
        """Events whose payload matches at least one of ``predicates``."""
        part = _with_predicates(None, _native.Match.ANY, predicates)
        return ItemWithPredicates(self._items, part)

    def all_predicates_of(self, *predicates: Predicate) -> ItemWithPredicates:
        """Events whose payload matches every one of ``predicates``."""
        part = _with_predicates(None, _native.Match.ALL, predicates)
        return ItemWithPredicates(self._items, part)

    def all_tags_of(self, *tags: str) -> ItemWithTags:
        """Events that carry every one of ``tags``."""
        return ItemWithTags(self._items, _tagged(None, _native.Match.ALL, tags))

    def any_tag_of(self, *tags: str) -> ItemWithTags:
        """Events that carry at least one of ``tags``."""
        return ItemWithTags(self._items, _tagged(None, _native.Match.ANY, tags))


class AnyEvent(_Bounds, _Finalizable):
    """A filter that matches every event; a bound may narrow it."""

    __slots__ = ()


class FilterBuilder(_Bounds):
    """The start of a filter: ``matching()`` an item, or ``matching_any_event()`` on purpose.

    A bound right away (``occurred_from`` and so on) filters every event by that bound alone.
    """

    __slots__ = ()

    def matching(self) -> EmptyItem:
        """Start the first item."""
        return EmptyItem()

    def matching_any_event(self) -> AnyEvent:
        """Match every event (on purpose)."""
        return AnyEvent()


def build_event_filter() -> FilterBuilder:
    """Start building an :class:`EventFilter`."""
    return FilterBuilder()
