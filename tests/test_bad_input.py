"""Bad input: a clear exception before any I/O, and nothing stored."""

from __future__ import annotations

from typing import Any

import pytest
from dynamic_streams import (
    Event,
    EventStore,
    InterfaceError,
    InvalidInputError,
    ProgrammingError,
    _native,
    build_event_filter,
)

EVERYTHING = build_event_filter().matching_any_event().finalize()


@pytest.mark.parametrize(
    ("event_type", "payload", "metadata", "message"),
    [
        ("", {}, None, "empty"),
        ("   ", {}, None, "empty"),
        ("T\x00", {}, None, "NUL"),
        ("T", [1, 2], None, "JSON object"),
        ("T", "[1, 2]", None, "JSON object"),
        ("T", '"text"', None, "JSON object"),
        ("T", "null", None, "JSON object"),
        ("T", "{not json", None, "not valid JSON"),
        ("T", b"\xff\xfe", None, "UTF-8"),
        ("T", {"k": "v\x00"}, None, "NUL"),
        ("T", {"k\x00": 1}, None, "NUL"),
        ("T", '{"k": "\\u0000"}', None, "NUL"),
        ("T", {"k": float("nan")}, None, "JSON"),
        ("T", {"k": object()}, None, "JSON"),
        ("T", {}, [], "JSON object"),
        ("T", {}, "nope", "not valid JSON"),
        ("T", {}, {"m": "\x00"}, "NUL"),
    ],
)
def test_bad_events_are_rejected_when_built(
    event_type: str, payload: Any, metadata: Any, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Event(event_type, payload, metadata=metadata)


def test_event_type_must_be_text() -> None:
    with pytest.raises(InvalidInputError):
        Event(42, {})  # type: ignore[arg-type]


def test_times_outside_years_1_to_9999_are_rejected_natively() -> None:
    from datetime import datetime, timedelta, timezone

    # Python's datetime stops at years 1 and 9999 locally; in UTC these lie beyond them.
    for moment in [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-1))),
    ]:
        with pytest.raises(InvalidInputError, match="years 1 and 9999"):
            _native.StorableEvent("T", "{}", None, moment)
        with pytest.raises(InvalidInputError, match="years 1 and 9999"):
            _native.Filter(None, _native.Bound.occurred_from(moment))


def test_naive_occurred_at_is_rejected() -> None:
    from datetime import datetime

    with pytest.raises(InvalidInputError, match="naive"):
        Event("T", {}, occurred_at=datetime(2026, 1, 1))


def test_append_rejects_bad_arguments_and_stores_nothing(event_store: EventStore) -> None:
    with pytest.raises(InvalidInputError, match="at least one event"):
        event_store.append(EVERYTHING, 0)
    with pytest.raises(InvalidInputError, match="negative"):
        event_store.append(EVERYTHING, -1, Event("T", {}))
    with pytest.raises(TypeError):
        event_store.append(EVERYTHING, 0, {"not": "an event"})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        event_store.append("not a filter", 0, Event("T", {}))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        event_store.append(EVERYTHING, True, Event("T", {}))
    with pytest.raises(InvalidInputError, match="timeout"):
        event_store.query(EVERYTHING, timeout=-1)
    assert len(event_store.query(EVERYTHING)) == 0


def test_a_bound_of_the_other_kind_cannot_be_combined() -> None:
    after_from = build_event_filter().occurred_from(
        __import__("datetime").datetime.now().astimezone()
    )
    assert not hasattr(after_from, "with_sequence_number_higher_than")
    bounded = build_event_filter().with_sequence_number_higher_than(3)
    assert not hasattr(bounded, "and_occurred_until") and not hasattr(bounded, "occurred_from")
    # Below the builder, a native bound has one kind by construction; the native filter
    # refuses the impossible ones.
    now = __import__("datetime").datetime.now().astimezone()
    later = now + __import__("datetime").timedelta(seconds=1)
    for bound in [
        _native.Bound.occurred_between(later, now),
        _native.Bound.sequence_number_above(-1),
    ]:
        with pytest.raises(InvalidInputError):
            _native.Filter(None, bound)


@pytest.mark.parametrize(
    "table",
    ["", "1events", "ev-ents", "a.b.c", 'e"; DROP TABLE x; --', "événements", "x" * 60, "s.", ".t"],
)
def test_invalid_table_names_are_rejected(table: str) -> None:
    with pytest.raises(InvalidInputError, match="table name"):
        EventStore("postgresql://localhost/db", table=table)


def test_invalid_configuration_is_rejected() -> None:
    for pool_size in [0, 10_000, 2**40]:
        with pytest.raises(InvalidInputError, match="pool_size"):
            EventStore("postgresql://localhost/db", pool_size=pool_size)
    with pytest.raises(InvalidInputError, match="DSN"):
        EventStore("postgresql://user:s3cret@[::1:5432/db")
    for timeout in [0, -1, float("nan"), float("inf"), 1e300]:
        with pytest.raises(InvalidInputError, match="timeout"):
            EventStore("postgresql://localhost/db", timeout=timeout)
    for vacuum_every in [0, -1, 2**64]:
        with pytest.raises(InvalidInputError, match="vacuum_every"):
            EventStore("postgresql://localhost/db", vacuum_every=vacuum_every)
    for not_a_count in [True, 1.5, "10"]:
        with pytest.raises(TypeError, match="vacuum_every"):
            EventStore("postgresql://localhost/db", vacuum_every=not_a_count)  # type: ignore[arg-type]


def test_a_missing_dsn_says_how_to_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DYNAMIC_STREAMS_DSN", raising=False)
    with pytest.raises(InvalidInputError, match="DYNAMIC_STREAMS_DSN"):
        EventStore()


def test_a_missing_table_is_a_programming_error(event_store_dsn: str) -> None:
    with (
        EventStore(event_store_dsn, table="no_such_table_here") as store,
        pytest.raises(ProgrammingError) as info,
    ):
        store.query(EVERYTHING)
    assert info.value.sqlstate == "42P01"


def test_a_closed_store_raises_interface_error(event_store: EventStore) -> None:
    event_store.close()
    assert event_store.closed
    with pytest.raises(InterfaceError, match="closed"):
        event_store.query(EVERYTHING)


def _nested(depth: int) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for _ in range(depth):
        payload = {"k": payload}
    return payload


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: Event("T", _nested(2000)), "payload"),
        (lambda: Event("T", {}, metadata=_nested(2000)), "metadata"),
        (lambda: build_event_filter().with_sequence_number_higher_than(2**70), "sequence number"),
        (lambda: EVERYTHING.after(2**70), "sequence number"),
        (lambda: build_event_filter().matching().all_predicates_of(("k", [1])), "'k'"),  # type: ignore[arg-type]
        (lambda: build_event_filter().matching().any_predicate_of(("k", None)), "'k'"),  # type: ignore[arg-type]
        (lambda: build_event_filter().matching().any_event_type_of("A").and_any_predicate_of(("k", {})), "'k'"),  # type: ignore[arg-type]
    ],
)  # fmt: skip
def test_every_bad_input_is_an_invalid_input_error_naming_the_argument(
    make: Any, argument: str
) -> None:
    with pytest.raises(InvalidInputError, match=argument):
        make()


def test_an_expected_number_beyond_64_bits_is_rejected_before_any_io(
    event_store: EventStore,
) -> None:
    for expected in (2**63, -(2**63) - 1, 2**70):
        with pytest.raises(InvalidInputError, match="expected_max_sequence_number"):
            event_store.append(EVERYTHING, expected, Event("T", {}))
    assert len(event_store.query(EVERYTHING)) == 0


@pytest.mark.parametrize(
    ("dsn", "named"),
    [
        ("postgresql://u:s3cret-pw@localhost/db?sslmodee=require", "unknown option `sslmodee`"),
        ("host=localhost password=s3cret-pw colour=blue", "unknown option `colour`"),
        ("host=localhost password=s3cret-pw port=x", "invalid value for option `port`"),
    ],
)
def test_a_bad_dsn_option_is_named_without_the_password(dsn: str, named: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        EventStore(dsn)
    assert named in str(info.value) and "s3cret-pw" not in str(info.value)
