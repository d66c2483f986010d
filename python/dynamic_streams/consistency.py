"""Read consistency: strong (the primary, the default) or eventual (a replica, if any).

Decisions must read strongly: only a strong read sees every event committed before it, which
the append guard relies on. Views that may lag can read eventually, per call
(``consistency="eventual"``) or for a block of code::

    with eventual_consistency():
        report = store.query(all_loans)        # served by the replica

The block's setting lives in a context variable, so it holds for the thread or asyncio task
that entered it, and for tasks that task creates, but never leaks into other threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Literal

from dynamic_streams.errors import InvalidInputError

__all__ = ["Consistency", "eventual_consistency", "strong_consistency"]

Consistency = Literal["strong", "eventual"]

_current: ContextVar[Consistency] = ContextVar("dynamic_streams_consistency", default="strong")


@contextmanager
def _using(level: Consistency) -> Iterator[None]:
    token = _current.set(level)
    try:
        yield
    finally:
        _current.reset(token)


def eventual_consistency() -> AbstractContextManager[None]:
    """Within the block, reads without an explicit consistency go to the replica."""
    return _using("eventual")


def strong_consistency() -> AbstractContextManager[None]:
    """Within the block, reads without an explicit consistency go to the primary."""
    return _using("strong")


def wants_eventual(consistency: Consistency | None) -> bool:
    """Whether a read with this argument (None: the block's setting) may use the replica."""
    level = _current.get() if consistency is None else consistency
    if level not in ("strong", "eventual"):
        raise InvalidInputError(f"consistency must be 'strong' or 'eventual', not {level!r}")
    return level == "eventual"
