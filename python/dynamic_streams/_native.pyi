"""Type stubs for the native engine. Users import the facade, :mod:`dynamic_streams`."""

from collections.abc import Awaitable
from datetime import datetime
from typing import Any, final

from dynamic_streams.events import RecordedEvent

__all__ = ["EventStore", "Filter", "StorableEvent", "index_keys"]

_SnapshotRow = tuple[int, Any, datetime]
_Item = tuple[list[str], str | None, list[tuple[str, str | int | float | bool]]]
_Bound = tuple[str, int | None, int | None]

@final
class Filter:
    def __new__(cls, items: list[_Item] | None, bound: _Bound | None = None) -> Filter: ...
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
        occurred_at: int | None = None,
    ) -> StorableEvent: ...
    @property
    def event_type(self) -> str: ...
    @property
    def occurred_at(self) -> int: ...

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
    ) -> EventStore: ...
    @property
    def snapshot_table(self) -> str: ...
    def save_snapshot(
        self,
        projection_type: str,
        filter_hash: str,
        sequence_number: int,
        data: str,
        timeout: float | None = None,
    ) -> bool: ...
    def load_snapshot(
        self,
        projection_type: str,
        filter_hash: str,
        timeout: float | None = None,
        eventual: bool = False,
    ) -> _SnapshotRow | None: ...
    def delete_snapshot(
        self, projection_type: str, filter_hash: str, timeout: float | None = None
    ) -> bool: ...
    def save_snapshot_async(
        self,
        projection_type: str,
        filter_hash: str,
        sequence_number: int,
        data: str,
        timeout: float | None = None,
    ) -> Awaitable[bool]: ...
    def load_snapshot_async(
        self,
        projection_type: str,
        filter_hash: str,
        timeout: float | None = None,
        eventual: bool = False,
    ) -> Awaitable[_SnapshotRow | None]: ...
    def delete_snapshot_async(
        self, projection_type: str, filter_hash: str, timeout: float | None = None
    ) -> Awaitable[bool]: ...
    @property
    def table(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    def create_schema(self, timeout: float | None = None) -> None: ...
    def drop_table(self, timeout: float | None = None) -> None: ...
    def query(
        self, filter: Filter, timeout: float | None = None, eventual: bool = False
    ) -> tuple[list[RecordedEvent], int, bool]: ...
    def append(
        self,
        filter: Filter,
        expected_max_sequence_number: int,
        events: list[StorableEvent],
        timeout: float | None = None,
    ) -> list[int]: ...
    def create_schema_async(self, timeout: float | None = None) -> Awaitable[None]: ...
    def query_async(
        self, filter: Filter, timeout: float | None = None, eventual: bool = False
    ) -> Awaitable[tuple[list[RecordedEvent], int, bool]]: ...
    def append_async(
        self,
        filter: Filter,
        expected_max_sequence_number: int,
        events: list[StorableEvent],
        timeout: float | None = None,
    ) -> Awaitable[list[int]]: ...

def index_keys(table: str, payload_json: str) -> list[int]: ...
