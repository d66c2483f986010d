"""The pure decision core: history in, at most one new event out (or a domain error).

Nothing here does I/O. Each function gets the events its use case's filter matched, in
order, and returns the event to append, or None when there is nothing to do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dynamic_streams import RecordedEvent

ADDED = "BookCopyAddedToCirculation"
REMOVED = "BookCopyRemovedFromCirculation"
REGISTERED = "ReaderRegistered"
CANCELED = "ReaderContractCanceled"
LENT = "BookCopyLentToReader"
RETURNED = "BookCopyReturnedByReader"

MAX_LOANS = 10


@dataclass(frozen=True)
class NewEvent:
    """An event the decision wants appended."""

    event_type: str
    payload: dict[str, Any]


class DomainError(Exception):
    """A use case refused: the request contradicts the library's rules."""


class BookCopyNeverAdded(DomainError):
    """The book copy was never added to circulation."""


class BookCopyNotInCirculation(DomainError):
    """The book copy is not in circulation (never added, or removed)."""


class BookCopyCurrentlyLent(DomainError):
    """The book copy is lent and cannot be removed."""


class BookCopyLentToSomeoneElse(DomainError):
    """The book copy is lent to another reader."""


class BookCopyNotLentToReader(DomainError):
    """The book copy was never lent to this reader."""


class ReaderNeverRegistered(DomainError):
    """The reader never registered."""


class ReaderNotRegistered(DomainError):
    """The reader is not registered (never, or the contract was canceled)."""


class ReaderHasOutstandingLoans(DomainError):
    """The reader still holds book copies."""


class ReaderLoanLimitReached(DomainError):
    """The reader already holds the most copies allowed."""


@dataclass
class _State:
    """What the history says about one book copy and one reader."""

    book_added: bool = False
    book_in_circulation: bool = False
    book_lent_to: str | None = None
    reader_ever_registered: bool = False
    reader_registered: bool = False
    reader_loans: set[str] = field(default_factory=set)
    lent_to_reader_before: bool = False


def _fold(history: Iterable[RecordedEvent], book_id: str | None, reader_id: str | None) -> _State:
    s = _State()
    for e in history:
        p = e.payload
        this_book = book_id is not None and p.get("BookID") == book_id
        this_reader = reader_id is not None and p.get("ReaderID") == reader_id
        if e.event_type == ADDED and this_book:
            s.book_added = s.book_in_circulation = True
        elif e.event_type == REMOVED and this_book:
            s.book_in_circulation = False
        elif e.event_type == REGISTERED and this_reader:
            s.reader_ever_registered = s.reader_registered = True
        elif e.event_type == CANCELED and this_reader:
            s.reader_registered = False
        elif e.event_type == LENT:
            if this_book:
                s.book_lent_to = p["ReaderID"]
            if this_reader:
                s.reader_loans.add(p["BookID"])
                s.lent_to_reader_before |= this_book
        elif e.event_type == RETURNED:
            if this_book:
                s.book_lent_to = None
            if this_reader:
                s.reader_loans.discard(p["BookID"])
    return s


def add_book_copy(
    history: Iterable[RecordedEvent], book_id: str, details: dict[str, Any]
) -> NewEvent | None:
    """Add a copy to circulation; nothing to do if it is in circulation already."""
    if _fold(history, book_id, None).book_in_circulation:
        return None
    return NewEvent(ADDED, {"BookID": book_id, **details})


def remove_book_copy(history: Iterable[RecordedEvent], book_id: str) -> NewEvent | None:
    """Remove a copy from circulation; it must have been added and must not be lent."""
    s = _fold(history, book_id, None)
    if not s.book_added:
        raise BookCopyNeverAdded(book_id)
    if s.book_lent_to is not None:
        raise BookCopyCurrentlyLent(book_id)
    if not s.book_in_circulation:
        return None
    return NewEvent(REMOVED, {"BookID": book_id})


def register_reader(history: Iterable[RecordedEvent], reader_id: str, name: str) -> NewEvent | None:
    """Register a reader; nothing to do if registered already."""
    if _fold(history, None, reader_id).reader_registered:
        return None
    return NewEvent(REGISTERED, {"ReaderID": reader_id, "Name": name})


def cancel_reader_contract(history: Iterable[RecordedEvent], reader_id: str) -> NewEvent | None:
    """Cancel a reader's contract; the reader must be registered and hold no copies."""
    s = _fold(history, None, reader_id)
    if not s.reader_ever_registered:
        raise ReaderNeverRegistered(reader_id)
    if s.reader_loans:
        raise ReaderHasOutstandingLoans(reader_id)
    if not s.reader_registered:
        return None
    return NewEvent(CANCELED, {"ReaderID": reader_id})


def lend_book_copy(
    history: Iterable[RecordedEvent], book_id: str, reader_id: str
) -> NewEvent | None:
    """Lend a copy to a reader, checking in order: the reader is registered, the copy is in
    circulation, not already lent to this reader (nothing to do), not lent to anyone else,
    and the reader holds fewer than the limit."""
    s = _fold(history, book_id, reader_id)
    if not s.reader_registered:
        raise ReaderNotRegistered(reader_id)
    if not s.book_in_circulation:
        raise BookCopyNotInCirculation(book_id)
    if s.book_lent_to == reader_id:
        return None
    if s.book_lent_to is not None:
        raise BookCopyLentToSomeoneElse(book_id)
    if len(s.reader_loans) >= MAX_LOANS:
        raise ReaderLoanLimitReached(reader_id)
    return NewEvent(LENT, {"BookID": book_id, "ReaderID": reader_id})


def return_book_copy(
    history: Iterable[RecordedEvent], book_id: str, reader_id: str
) -> NewEvent | None:
    """Return a copy: the reader registered once, the copy was added, and it was lent to this
    reader; nothing to do if it was returned already."""
    s = _fold(history, book_id, reader_id)
    if not s.reader_ever_registered:
        raise ReaderNeverRegistered(reader_id)
    if not s.book_added:
        raise BookCopyNeverAdded(book_id)
    if s.book_lent_to == reader_id:
        return NewEvent(RETURNED, {"BookID": book_id, "ReaderID": reader_id})
    if s.lent_to_reader_before:
        return None
    raise BookCopyNotLentToReader(book_id)
