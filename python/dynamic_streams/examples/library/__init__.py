"""The example domain: a public library lending book copies to readers.

Each use case builds its filter, queries, decides in a pure function (:mod:`.decisions`),
and appends at most one event guarded by the same filter, retrying a few times with
jittered backoff when another decision got there first (:mod:`.service`).

Run the lending simulation with ``python -m dynamic_streams.examples.library``.
"""

from dynamic_streams.examples.library.decisions import (
    BookCopyCurrentlyLent,
    BookCopyLentToSomeoneElse,
    BookCopyNeverAdded,
    BookCopyNotInCirculation,
    BookCopyNotLentToReader,
    DomainError,
    ReaderHasOutstandingLoans,
    ReaderLoanLimitReached,
    ReaderNeverRegistered,
    ReaderNotRegistered,
)
from dynamic_streams.examples.library.service import Library, new_id

__all__ = [
    "BookCopyCurrentlyLent",
    "BookCopyLentToSomeoneElse",
    "BookCopyNeverAdded",
    "BookCopyNotInCirculation",
    "BookCopyNotLentToReader",
    "DomainError",
    "Library",
    "ReaderHasOutstandingLoans",
    "ReaderLoanLimitReached",
    "ReaderNeverRegistered",
    "ReaderNotRegistered",
    "new_id",
]
