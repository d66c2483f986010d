"""The exceptions of dynamic_streams, following the DB-API names.

::

    Error
    ├── InterfaceError            the library was used wrongly (closed store, after fork)
    ├── InvalidInputError         bad input, rejected before any I/O (also a ValueError)
    └── DatabaseError             the database or the connection failed
        ├── DataError             SQLSTATE class 22
        ├── IntegrityError        SQLSTATE class 23
        │   └── ConcurrencyConflictError   the append guard failed; nothing was stored
        ├── OperationalError      connection lost or refused, server shutting down, ...
        │   └── OperationTimeoutError      the call hit its timeout (also a TimeoutError)
        └── ProgrammingError      SQLSTATE class 42 (for example a missing table)

Exceptions raised by the server carry ``sqlstate`` and the server's ``detail``.
"""

from __future__ import annotations

__all__ = [
    "ConcurrencyConflictError",
    "DataError",
    "DatabaseError",
    "Error",
    "IntegrityError",
    "InterfaceError",
    "InvalidInputError",
    "OperationTimeoutError",
    "OperationalError",
    "ProgrammingError",
]


class Error(Exception):
    """Base class of every exception this library raises."""

    sqlstate: str | None = None
    """The server's SQLSTATE code, when the server raised the error."""

    detail: str | None = None
    """The server's detail message, when it gave one."""


class InterfaceError(Error):
    """The library was used in a way it does not support (a closed store, a store after fork)."""


class InvalidInputError(Error, ValueError):
    """Input rejected before any I/O: an empty event type, a payload that is not a JSON object,
    an empty filter item, an invalid table name, a bad DSN."""


class DatabaseError(Error):
    """The database, or the connection to it, failed."""


class DataError(DatabaseError):
    """The server rejected a value (SQLSTATE class 22)."""


class IntegrityError(DatabaseError):
    """An integrity rule was violated (SQLSTATE class 23)."""


class ConcurrencyConflictError(IntegrityError):
    """An event matching the append's filter was stored after the expected sequence number.

    Nothing of the append was stored. Query again, decide again, and retry.
    """

    expected_max_sequence_number: int | None = None
    """The expected maximum sequence number the failed append was given."""


class OperationalError(DatabaseError):
    """The connection failed or the server could not do the work (refused, lost, shut down)."""


class OperationTimeoutError(OperationalError, TimeoutError):
    """The call did not finish within its timeout; its statement was cancelled on the server.

    A timeout that fires while the commit is in flight cannot tell whether the commit landed:
    query again before retrying.
    """


class ProgrammingError(DatabaseError):
    """The SQL could not run as sent (SQLSTATE class 42), for example a missing table."""
