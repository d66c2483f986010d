"""Type stubs for the native engine. Users import the facade, :mod:`dynamic_streams`.

A store opened with ``asyncio=True`` returns awaitables from its operations, one opened
without returns values: hence ``Any`` for those results (the facade's two store classes
give them precise types).
"""

from datetime import datetime
from typing import Any, ClassVar, Final, final

__all__ = [
    "STORE_DEFAULT",
    "Bound",
    "EventStore",
    "Filter",
    "FilterItem",
    "Match",
    "Reader",
    "StorableEvent",
    "StoreDefault",
    "Subscription",
    "__version__",
    "index_keys",
]

__version__: Final[str]

@final
class StoreDefault: ...

STORE_DEFAULT: Final[StoreDefault]
_Timeout = float | None | StoreDefault

@final
class Match:
    ANY: ClassVar[Match]
    ALL: ClassVar[Match]

@final
class FilterItem:
    def __new__(
        cls,
        event_types: list[str],
        match: Match | None = None,
        predicates: list[tuple[str, str | int | float | bool]] = ...,
        tag_match: Match | None = None,
        tags: list[str] = ...,
    ) -> FilterItem: ...

@final
class Bound:
    @staticmethod
    def occurred_from(start: datetime) -> Bound: ...
    @staticmethod
    def occurred_until(until: datetime) -> Bound: ...
    @staticmethod
    def occurred_between(start: datetime, until: datetime) -> Bound: ...
    @staticmethod
    def sequence_number_above(sequence_number: int) -> Bound: ...

@final
class Filter:
    def __new__(cls, items: list[FilterItem] | None, bound: Bound | None = None) -> Filter: ...
    def canonical_json(self) -> str: ...
    def hash(self) -> str: ...
    def after(self, sequence_number: int) -> Filter: ...
    def to_sql(self, table: str) -> tuple[str, list[str]]: ...
    def append_sql(self, table: str) -> str: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class StorableEvent:
    def __new__(
        cls,
        event_type: str,
        payload: str,
        metadata: str | None = None,
        occurred_at: datetime | None = None,
        id: str | None = None,
        tags: list[str] = ...,
    ) -> StorableEvent: ...
    @property
    def event_type(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def id(self) -> str | None: ...
    @property
    def tags(self) -> list[str]: ...

@final
class EventStore:
    def __new__(
        cls,
        dsn: str,
        table: str = "events",
        pool_size: int = 10,
        timeout: float | None = ...,
        snapshot_table: str | None = None,
        replica_dsn: str | None = None,
        asyncio: bool = False,
        pool_timeout: float | None = None,
        vacuum_every: int | None = ...,
    ) -> EventStore: ...
    @property
    def table(self) -> str: ...
    @property
    def snapshot_table(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...
    def create_schema(self, timeout: _Timeout = ...) -> Any: ...
    def drop_table(self, timeout: _Timeout = ...) -> Any: ...
    def query(self, filter: Filter, timeout: _Timeout = ..., eventual: bool = False) -> Any: ...
    def append(
        self,
        filter: Filter,
        expected_max_sequence_number: int,
        events: list[StorableEvent],
        timeout: _Timeout = ...,
    ) -> Any: ...
    def append_unconditionally(
        self, events: list[StorableEvent], timeout: _Timeout = ...
    ) -> Any: ...
    def import_batch(self, events: list[StorableEvent], timeout: _Timeout = ...) -> Any: ...
    def head(self, timeout: _Timeout = ...) -> Any: ...
    def checkpoint(self, name: str, timeout: _Timeout = ...) -> Any: ...
    def save_checkpoint(self, name: str, position: int, timeout: _Timeout = ...) -> Any: ...
    @property
    def checkpoint_sql(self) -> tuple[str, str]: ...
    def read(
        self, filter: Filter, after: int, limit: int | None, backwards: bool, batch_size: int
    ) -> Reader: ...
    def subscribe(
        self, filter: Filter, after: int, batch_size: int, poll_interval: float
    ) -> Subscription: ...
    def save_snapshot(
        self,
        projection_type: str,
        filter_hash: str,
        sequence_number: int,
        data: str,
        timeout: _Timeout = ...,
    ) -> Any: ...
    def load_snapshot(
        self,
        projection_type: str,
        filter_hash: str,
        timeout: _Timeout = ...,
        eventual: bool = False,
    ) -> Any: ...
    def delete_snapshot(
        self, projection_type: str, filter_hash: str, timeout: _Timeout = ...
    ) -> Any: ...

@final
class Reader:
    def next(self, timeout: _Timeout) -> Any: ...
    def close(self) -> Any: ...

@final
class Subscription:
    def next(self, wait: float | None = None) -> Any: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...

def index_keys(table: str, payload_json: str, tags: list[str] = ...) -> list[int]: ...
