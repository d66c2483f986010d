"""Guarded append, through both stores: what users rely on when they decide and append."""

from __future__ import annotations

import gc
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest
from dynamic_streams import (
    ConcurrencyConflictError,
    DataError,
    Event,
    IntegrityError,
    P,
    RecordedEvent,
    build_event_filter,
)

BOOK = build_event_filter().matching().any_event_type_of("Lent").and_all_predicates_of(P("BookID", "b1")).finalize()  # fmt: skip
EVERYTHING = build_event_filter().matching_any_event().finalize()


def lent(book: str = "b1", reader: str = "r1", **kw: Any) -> Event:
    return Event("Lent", {"BookID": book, "ReaderID": reader}, **kw)


def test_append_with_the_queried_number_succeeds(store: Any) -> None:
    result = store.query(BOOK)
    assert (result.events, result.max_sequence_number) == ([], 0)
    assert store.append(BOOK, result.max_sequence_number, lent()) == [1]
    result = store.query(BOOK)
    assert [(e.sequence_number, e.payload) for e in result] == [
        (1, {"BookID": "b1", "ReaderID": "r1"})
    ]
    assert result.max_sequence_number == 1
    assert store.append(BOOK, 1, lent(reader="r2")) == [2]


def test_a_matching_event_slipped_in_is_a_conflict_and_nothing_is_stored(store: Any) -> None:
    seen = store.query(BOOK).max_sequence_number
    store.append(BOOK, seen, lent(reader="someone else"))
    with pytest.raises(ConcurrencyConflictError) as info:
        store.append(BOOK, seen, lent(reader="me"))
    assert isinstance(info.value, IntegrityError)
    assert info.value.expected_max_sequence_number == seen
    assert [e.payload["ReaderID"] for e in store.query(EVERYTHING)] == ["someone else"]


def test_a_multi_event_append_is_all_or_nothing(store: Any) -> None:
    seen = store.query(BOOK).max_sequence_number
    assert store.append(BOOK, seen, lent("b1"), lent("b2"), lent("b3")) == [1, 2, 3]
    with pytest.raises(ConcurrencyConflictError):
        store.append(BOOK, seen, lent("b4"), lent("b5"), lent("b6"), lent("b7"), lent("b8"))
    assert [e.payload["BookID"] for e in store.query(EVERYTHING)] == ["b1", "b2", "b3"]


def test_events_outside_the_boundary_do_not_conflict(store: Any) -> None:
    seen = store.query(BOOK).max_sequence_number
    store.append(EVERYTHING, 0, lent("b2"), Event("Returned", {"BookID": "b1"}))
    assert store.append(BOOK, seen, lent("b1")) == [3]


def test_returned_sequence_numbers_are_the_stored_ones(store: Any) -> None:
    assigned: list[int] = []
    for n in range(4):
        assigned += store.append(
            EVERYTHING, len(assigned), *(lent(f"b{n}-{i}") for i in range(n + 1))
        )
    stored = store.query(EVERYTHING)
    assert [e.sequence_number for e in stored] == assigned
    assert [e.payload["BookID"] for e in stored] == [
        f"b{n}-{i}" for n in range(4) for i in range(n + 1)
    ]
    assert assigned == sorted(set(assigned))
    assert stored.max_sequence_number == assigned[-1]


def test_instants_across_datetimes_range_read_back_exactly(store: Any) -> None:
    instants = [
        datetime(1, 1, 1, tzinfo=timezone.utc),
        datetime(255, 12, 31, 23, 59, 59, 65535, tzinfo=timezone.utc),
        datetime(256, 1, 1, 0, 0, 0, 65536, tzinfo=timezone.utc),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
        datetime(1970, 1, 1, tzinfo=timezone.utc),
        datetime(2000, 2, 29, 12, 34, 56, 1, tzinfo=timezone.utc),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
    ]
    store.append(EVERYTHING, 0, *(Event("Lent", {}, occurred_at=t) for t in instants))
    read = [e.occurred_at for e in store.query(EVERYTHING)]
    assert read == instants
    assert all(t.tzinfo is timezone.utc and t.fold == 0 for t in read)


def test_metadata_payload_and_time_round_trip(store: Any) -> None:
    when = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=timezone.utc)
    metadata = {
        "MessageID": "m-1",
        "CausationID": "c-1",
        "CorrelationID": "k-1",
        "n": [1, 2.5, None],
    }
    payload = {
        "BookID": "b1",
        "nested": {"a": [True, False, None]},
        "big": 2**70,
        "negative": -(2**64),
        "float": 0.1,
        "text": "Grüße ✓",
    }
    store.append(EVERYTHING, 0, Event("Lent", payload, metadata=metadata, occurred_at=when))
    store.append(EVERYTHING, 1, Event("Lent", '{"BookID":"b2"}', metadata=b'{"x":1}'))
    first, second = store.query(EVERYTHING)
    assert type(first) is RecordedEvent and first == tuple(first) and len(first) == 7
    assert first.id is None and first.tags == ()  # appended without an id or tags
    assert first._replace(sequence_number=7).sequence_number == 7
    assert (first.event_type, first.payload, first.metadata) == ("Lent", payload, metadata)
    # Numbers keep their exact value and type.
    assert type(first.payload["big"]) is int and type(first.payload["float"]) is float
    assert first.occurred_at == when and first.occurred_at.tzinfo == timezone.utc
    assert (second.payload, second.metadata) == ({"BookID": "b2"}, {"x": 1})
    assert abs((datetime.now(timezone.utc) - second.occurred_at).total_seconds()) < 60


def test_default_metadata_is_an_empty_object(store: Any) -> None:
    store.append(EVERYTHING, 0, lent())
    assert store.query(EVERYTHING).events[0].metadata == {}


def test_predicates_compare_json_values(store: Any) -> None:
    store.append(EVERYTHING, 0, Event("T", {"n": 1, "f": 1.5, "b": True, "s": "1"}))
    for p, hits in [
        (P("n", 1), 1), (P("n", 1.0), 1), (P("n", "1"), 0), (P("f", 1.5), 1),
        (P("b", True), 1), (P("b", 1), 0), (P("s", "1"), 1), (P("s", 1), 0),
    ]:  # fmt: skip
        f = build_event_filter().matching().all_predicates_of(p).finalize()
        assert len(store.query(f)) == hits, p


def test_hostile_strings_are_stored_and_matched_literally(store: Any) -> None:
    hostile = [
        "'); DROP TABLE events; --",
        "\"double\" 'single' `back` \\ \\\\ \\u0041 %s $1 ::jsonb",
        "Ünïcødé 🐉 中文 עברית \u200b",
        "x" * 100_000,
    ]
    for i, h in enumerate(hostile):
        store.append(EVERYTHING, i, Event(h, {h: h, "other": i}, metadata={h: h}))
    for i, h in enumerate(hostile):
        f = (
            build_event_filter()
            .matching()
            .any_event_type_of(h)
            .and_all_predicates_of(P(h, h))
            .finalize()
        )
        (event,) = store.query(f)
        assert (event.event_type, event.payload, event.metadata) == (h, {h: h, "other": i}, {h: h})
    assert len(store.query(EVERYTHING)) == len(hostile)


def _matching(kind: str, *predicates: P) -> Any:
    item = build_event_filter().matching()
    chosen = item.all_predicates_of if kind == "all" else item.any_predicate_of
    return chosen(*predicates).finalize()


def test_an_empty_string_is_matched_literally_never_dropped(store: Any) -> None:
    store.append(EVERYTHING, 0, Event("T", {"a": "x", "b": ""}))  # 1
    store.append(EVERYTHING, 1, Event("T", {"a": "x"}))  # 2: no b
    store.append(EVERYTHING, 2, Event("T", {"b": ""}))  # 3
    store.append(EVERYTHING, 3, Event("T", {"b": "y"}))  # 4
    numbers = lambda f: [e.sequence_number for e in store.query(f)]  # noqa: E731
    # ALL: a == "x" and b == "" (dropping b would widen it to event 2).
    assert numbers(_matching("all", P("a", "x"), P("b", ""))) == [1]
    # ANY: a == "x" or b == "" (dropping b would narrow it, missing event 3).
    assert numbers(_matching("any", P("a", "x"), P("b", ""))) == [1, 2, 3]
    assert numbers(_matching("all", P("b", ""))) == [1, 3]


def test_the_guard_sees_an_event_matching_only_by_an_empty_string(store: Any) -> None:
    boundary = _matching("any", P("a", "x"), P("b", ""))
    seen = store.query(boundary).max_sequence_number
    store.append(EVERYTHING, store.query(EVERYTHING).max_sequence_number, Event("T", {"b": ""}))
    with pytest.raises(ConcurrencyConflictError):
        store.append(boundary, seen, Event("T", {"a": "x"}))
    assert len(store.query(EVERYTHING)) == 1


def test_a_number_matches_however_it_was_written(store: Any) -> None:
    store.append(EVERYTHING, 0, Event("T", {"n": 10**16}), Event("T", {"n": 1.5}))
    for value, expected in [(1e16, [1]), (10**16, [1]), (1.5, [2]), (1.50, [2]), (2, [])]:
        f = build_event_filter().matching().all_predicates_of(P("n", value)).finalize()
        assert [e.sequence_number for e in store.query(f)] == expected, value


def test_no_stored_number_can_break_reads(store: Any) -> None:
    from decimal import Decimal

    huge_int = "9" * 5000  # beyond Python's default limit on digits in int text
    texts = [
        '{"x": 1e5000}',
        f'{{"x": {huge_int}}}',
        '{"x": 1' + "0" * 400 + ".5}",  # beyond the float range, with a fraction
        '{"x": 0.1000000000000000000001}',  # more digits than a float holds
        '{"x": 0.1}',
        '{"x": 123456789012345678901234567890}',
    ]
    for text in texts:
        store.append(EVERYTHING, store.query(EVERYTHING).max_sequence_number, Event("T", text))
    read = [e.payload["x"] for e in store.query(EVERYTHING)]
    assert read == [
        Decimal(10) ** 5000,
        Decimal(huge_int),
        Decimal("1" + "0" * 400 + ".5"),
        Decimal("0.1000000000000000000001"),
        0.1,
        123456789012345678901234567890,
    ]
    assert [type(x) for x in read[-2:]] == [float, int]


def test_events_read_back_are_left_to_reference_counting_where_no_cycle_can_form(
    store: Any,
) -> None:
    """The cyclic GC skips what cannot be in a cycle (as CPython itself decides, lazily), so a
    large read is not traversed collection after collection; anything that could hold a
    cycle stays tracked."""
    store.append_unconditionally(
        Event("Flat", {"a": 1, "b": "x", "nested": {"c": None}}, tags=["t"]),
        Event("WithList", {"a": [1, 2]}),
        Event("WithId", {"a": 1}, id=uuid.uuid4()),
    )
    flat, with_list, with_id = store.query(EVERYTHING)
    assert not gc.is_tracked(flat) and not gc.is_tracked(flat.payload)
    assert not gc.is_tracked(flat.payload["nested"]) and not gc.is_tracked(flat.tags)
    assert gc.is_tracked(with_list.payload) and gc.is_tracked(with_list)
    assert gc.is_tracked(with_id)  # a UUID is a container to the GC
    # A payload given a container is followed again, as any dict is.
    flat.payload["cycle"] = [flat.payload]
    assert gc.is_tracked(flat.payload)


def test_payloads_with_many_and_long_keys_read_back_whole(store: Any) -> None:
    # Past what a read shares between its events (1,024 keys of up to 64 bytes).
    payload = {f"k{i}-" * (i % 40 + 1): i for i in range(2_000)}
    store.append_unconditionally(Event("Wide", payload), Event("Wide", payload))
    assert [e.payload for e in store.query(EVERYTHING)] == [payload, payload]
    assert [e.payload for e in store.read()] == [payload, payload]


def test_payloads_read_back_as_the_server_wrote_them(store: Any, event_store_dsn: str) -> None:
    """Payloads and metadata are read from the server's JSON text: each one equals what
    the standard library's `json` makes of that same text, keys in its order (PostgreSQL's:
    shorter keys first), through every escape, control character, surrogate pair, nesting
    and kind of value."""
    import json

    import psycopg

    deep: Any = "bottom"
    for i in range(120):
        deep = {"d": deep} if i % 2 else [deep, i]
    texts = [
        '{"b": 1, "aa": 2, "": 3, "a": 4}',
        '{"s": "\\" \\\\ \\/ \\b \\f \\n \\r \\t"}',
        '{"c": "' + "".join(f"\\u{n:04x}" for n in range(1, 32)) + '\\u007f"}',
        '{"u": "\\u00e9\\u4e2d \\ud83d\\ude00 é中 😀 \\u200b", "k\\n\\u00e9y": "v"}',
        '{"x": [], "y": {}, "z": [[], [{}], {"a": [null, true, false]}]}',
        '{"n": [0, -0, 1, -1, 1.5, -2.25, 9223372036854775807, -9223372036854775808]}',
        '{"long": "' + "é" * 5000 + "\\n" + "x" * 5000 + '"}',
        json.dumps({"deep": deep}),
    ]
    for text in texts:
        store.append_unconditionally(Event("T", text, metadata=text))
    with psycopg.connect(event_store_dsn, autocommit=True) as conn:
        stored = conn.execute(
            f"SELECT payload::text FROM {store.table} ORDER BY sequence_number"
        ).fetchall()
    expected = [json.loads(text) for (text,) in stored]
    read = store.query(EVERYTHING).events
    assert [e.payload for e in read] == expected
    assert [e.metadata for e in read] == expected
    assert [list(e.payload) for e in read] == [list(x) for x in expected]
    assert list(read[0].payload) == ["", "a", "b", "aa"]


def test_a_payload_nested_too_deep_to_read_is_a_data_error(
    store: Any, event_store_dsn: str
) -> None:
    """The store appends payloads nested up to 128 levels; one written deeper by another
    tool is refused when read, with the library's error, not a crash."""
    import json

    import psycopg

    deep: Any = "x"
    for _ in range(200):
        deep = [deep]
    with psycopg.connect(event_store_dsn, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {store.table} (occurred_at, event_type, payload) "
            "VALUES (now(), 'T', %s::jsonb)",
            (json.dumps({"a": deep}),),
        )
    with pytest.raises(DataError, match="nested deeper than 128 levels"):
        store.query(EVERYTHING)


def test_a_commit_the_server_refuses_fails_the_write_and_stores_nothing(
    store: Any, event_store_dsn: str
) -> None:
    """A write's commit is sent in one message with the notification after it: a commit that
    fails (here a deferred trigger refusing one kind of event) must fail the write, whichever
    way it was made, and leave the connection fit for the next."""
    import psycopg

    refuse = f"refuse_{store.table}"
    with psycopg.connect(event_store_dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE FUNCTION {refuse}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.event_type = 'Refused' THEN "
            "RAISE EXCEPTION 'refused at commit' USING ERRCODE = 'check_violation'; END IF; "
            "RETURN NULL; END $$"
        )
        conn.execute(
            f"CREATE CONSTRAINT TRIGGER {refuse} AFTER INSERT ON {store.table} "
            f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {refuse}()"
        )
    try:
        store.append_unconditionally(lent())
        for write in (
            lambda: store.append_unconditionally(Event("Refused", {})),
            lambda: store.append(BOOK, 1, Event("Refused", {"BookID": "b1"})),
            lambda: store.import_events([lent("b2"), Event("Refused", {})]),
        ):
            with pytest.raises(IntegrityError, match="refused at commit"):
                write()
            assert [e.event_type for e in store.query(EVERYTHING).events] == ["Lent"]
        [n] = store.append(BOOK, 1, lent())
        assert n > 1
        assert [e.sequence_number for e in store.query(BOOK).events] == [1, n]
    finally:
        with psycopg.connect(event_store_dsn, autocommit=True) as conn:
            conn.execute(f"DROP FUNCTION {refuse}() CASCADE")
