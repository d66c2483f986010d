"""Snapshots of projections.

A snapshot is the state of a projection (a fold over a filter's events) as of a sequence
number, keyed by the projection's type and the filter's :meth:`~EventFilter.hash`. The
store never replaces a snapshot with one of a lower sequence number, so concurrent savers
cannot move a snapshot back. :func:`~dynamic_streams.project` keeps one up to date.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from dynamic_streams.errors import InvalidInputError

__all__ = ["Snapshot"]


class Snapshot(NamedTuple):
    """A stored projection state."""

    projection_type: str
    filter_hash: str
    sequence_number: int
    """The highest sequence number folded into ``data``."""
    data: Any
    created_at: datetime


def check_key(projection_type: str, filter_hash: str) -> None:
    """Rejects a snapshot key that is not two strings (the engine checks their content)."""
    for what, value in (("projection type", projection_type), ("filter hash", filter_hash)):
        if not isinstance(value, str):
            raise InvalidInputError(f"the {what} must be a str, got {type(value).__name__}")
