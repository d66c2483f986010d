"""The thin shell around the decisions: filter, query, decide, append, retry on conflict."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from dynamic_streams import (
    ConcurrencyConflictError,
    Event,
    EventFilter,
    EventStore,
    P,
    RecordedEvent,
    build_event_filter,
    project,
)
from dynamic_streams.examples.library import decisions as d
from dynamic_streams.examples.library.decisions import NewEvent


def new_id() -> str:
    """A UUIDv7 string: 48 bits of Unix milliseconds, then random bits."""
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


def _filter(types: Sequence[str], *predicates: P) -> EventFilter:
    return (
        build_event_filter()
        .matching()
        .any_event_type_of(*types)
        .and_any_predicate_of(*predicates)
        .finalize()
    )


class Library:
    """The library's use cases on an :class:`EventStore`.

    Each method returns True when it appended an event, False when there was nothing to do,
    and raises a :class:`DomainError` when the rules refuse. A concurrency conflict is
    retried up to ``max_attempts`` times with jittered exponential backoff; ``conflicts``
    counts the retries.
    """

    def __init__(
        self, store: EventStore, *, max_attempts: int = 6, backoff_seconds: float = 0.002
    ) -> None:
        self.store = store
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self._lock = threading.Lock()
        self.conflicts = 0

    def _run(
        self, filter: EventFilter, decide: Callable[[list[RecordedEvent]], NewEvent | None]
    ) -> bool:
        for attempt in range(self.max_attempts):
            result = self.store.query(filter)
            new = decide(result.events)
            if new is None:
                return False
            try:
                self.store.append(
                    filter, result.max_sequence_number, Event(new.event_type, new.payload)
                )
                return True
            except ConcurrencyConflictError:
                with self._lock:
                    self.conflicts += 1
                if attempt + 1 == self.max_attempts:
                    raise
                time.sleep(random.uniform(0, self.backoff_seconds * 2**attempt))
        raise AssertionError("unreachable")

    def books_lent_to(self, reader_id: str) -> list[str]:
        """The copies a reader holds now: an incremental projection kept in a snapshot, so
        each call folds only the loans and returns stored since the last one."""
        f = (
            build_event_filter()
            .matching()
            .any_event_type_of(d.LENT, d.RETURNED)
            .and_all_predicates_of(P("ReaderID", reader_id))
            .finalize()
        )

        def fold(held: list[str], e: RecordedEvent) -> list[str]:
            book = e.payload["BookID"]
            return [*held, book] if e.event_type == d.LENT else [b for b in held if b != book]

        nothing: list[str] = []
        held, _ = project(self.store, "books-lent-to-reader", f, nothing, fold)
        return sorted(held)

    def add_book_copy(self, book_id: str, **details: Any) -> bool:
        """Add a book copy to circulation."""
        f = _filter([d.ADDED, d.REMOVED], P("BookID", book_id))
        return self._run(f, lambda h: d.add_book_copy(h, book_id, details))

    def remove_book_copy(self, book_id: str) -> bool:
        """Remove a book copy from circulation."""
        f = _filter([d.ADDED, d.REMOVED, d.LENT, d.RETURNED], P("BookID", book_id))
        return self._run(f, lambda h: d.remove_book_copy(h, book_id))

    def register_reader(self, reader_id: str, name: str) -> bool:
        """Register a reader."""
        f = _filter([d.REGISTERED, d.CANCELED], P("ReaderID", reader_id))
        return self._run(f, lambda h: d.register_reader(h, reader_id, name))

    def cancel_reader_contract(self, reader_id: str) -> bool:
        """Cancel a reader's contract."""
        f = _filter([d.REGISTERED, d.CANCELED, d.LENT, d.RETURNED], P("ReaderID", reader_id))
        return self._run(f, lambda h: d.cancel_reader_contract(h, reader_id))

    def lend_book_copy(self, book_id: str, reader_id: str) -> bool:
        """Lend a book copy to a reader."""
        f = _filter(
            [d.ADDED, d.REMOVED, d.REGISTERED, d.CANCELED, d.LENT, d.RETURNED],
            P("BookID", book_id),
            P("ReaderID", reader_id),
        )
        return self._run(f, lambda h: d.lend_book_copy(h, book_id, reader_id))

    def return_book_copy(self, book_id: str, reader_id: str) -> bool:
        """Return a book copy a reader borrowed."""
        f = _filter(
            [d.ADDED, d.LENT, d.RETURNED, d.REGISTERED],
            P("BookID", book_id),
            P("ReaderID", reader_id),
        )
        return self._run(f, lambda h: d.return_book_copy(h, book_id, reader_id))


def check_invariants(events: Sequence[RecordedEvent]) -> list[str]:
    """Replays the whole log; returns every violation of: a copy is lent to at most one
    reader at a time, and no reader holds more than the loan limit."""
    borrower: dict[str, str] = {}
    loans: dict[str, set[str]] = {}
    problems = []
    for e in events:
        p = e.payload
        if e.event_type == d.LENT:
            if p["BookID"] in borrower:
                problems.append(f"#{e.sequence_number}: {p['BookID']} lent twice")
            borrower[p["BookID"]] = p["ReaderID"]
            held = loans.setdefault(p["ReaderID"], set())
            held.add(p["BookID"])
            if len(held) > d.MAX_LOANS:
                problems.append(f"#{e.sequence_number}: {p['ReaderID']} holds {len(held)}")
        elif e.event_type == d.RETURNED:
            borrower.pop(p["BookID"], None)
            loans.get(p["ReaderID"], set()).discard(p["BookID"])
    return problems


LOANS = build_event_filter().matching().any_event_type_of(d.LENT, d.RETURNED).finalize()
"""The events that change which copies are lent."""


class BooksLent:
    """A read model: which reader holds each lent copy, kept up to date by a projector.

    ``apply`` is the projector's handler; it is idempotent per event (it remembers the last
    sequence number it applied), so the projector's at-least-once delivery is harmless.
    """

    def __init__(self) -> None:
        self.borrower: dict[str, str] = {}
        self.position = 0
        self._lock = threading.Lock()

    def apply(self, event: RecordedEvent) -> None:
        with self._lock:
            if event.sequence_number <= self.position:
                return
            p = event.payload
            if event.event_type == d.LENT:
                self.borrower[p["BookID"]] = p["ReaderID"]
            elif event.event_type == d.RETURNED:
                self.borrower.pop(p["BookID"], None)
            self.position = event.sequence_number

    def snapshot(self) -> tuple[int, dict[str, str]]:
        with self._lock:
            return self.position, dict(self.borrower)

    @classmethod
    def folded(cls, events: Sequence[RecordedEvent]) -> BooksLent:
        """The read model built from scratch from ``events``."""
        model = cls()
        for e in events:
            if e.event_type in (d.LENT, d.RETURNED):
                model.apply(e)
        return model
