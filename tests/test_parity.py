"""The seed's filter test as facts: nine events, every count exact, through both stores.

Each event also carries its payload's ids as tags (``book:b1``, ``reader:r1``), so the tag
cases below select the same events as the predicate cases they mirror, and mixed items
combine the two.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from dynamic_streams import Event, EventFilter, P, build_event_filter

ADDED = "BookCopyAddedToCirculation"
REMOVED = "BookCopyRemovedFromCirculation"
LENT = "BookCopyLentToReader"
RETURNED = "BookCopyReturnedByReader"

T0 = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)


def at(i: int) -> datetime:
    """When fixture event number ``i`` (1-based) occurred: one second apart."""
    return T0 + timedelta(seconds=i - 1)


FIXTURE = [
    (ADDED, {"BookID": "b1"}),
    (LENT, {"BookID": "b1", "ReaderID": "r1"}),
    (RETURNED, {"BookID": "b1", "ReaderID": "r1"}),
    (REMOVED, {"BookID": "b1"}),
    (ADDED, {"BookID": "b2"}),
    (LENT, {"BookID": "b2", "ReaderID": "r2"}),
    (RETURNED, {"BookID": "b2", "ReaderID": "r2"}),
    (LENT, {"BookID": "b2", "ReaderID": "r1"}),
    (RETURNED, {"BookID": "b2", "ReaderID": "r1"}),
]


def tags_of(payload: dict[str, str]) -> list[str]:
    """The fixture event's tags: ``book:<BookID>``, then ``reader:<ReaderID>`` if any."""
    names = {"BookID": "book", "ReaderID": "reader"}
    return [f"{names[k]}:{v}" for k, v in payload.items()]


def start() -> Any:
    return build_event_filter().matching()


def last_items() -> Any:
    # (ET and P) or (ET and P): events 3, 4 and 9.
    return (
        start()
        .any_event_type_of(REMOVED)
        .and_all_predicates_of(P("BookID", "b1"))
        .or_matching()
        .any_event_type_of(RETURNED)
        .and_all_predicates_of(P("ReaderID", "r1"))
    )


# (case, filter, the fixture positions it matches)
CASES: list[tuple[str, EventFilter, list[int]]] = [
    ("match any event", build_event_filter().matching_any_event().finalize(), list(range(1, 10))),
    ("only occurred_from", build_event_filter().occurred_from(at(5)).finalize(), [5, 6, 7, 8, 9]),
    ("only occurred_until", build_event_filter().occurred_until(at(1)).finalize(), [1]),
    (
        "occurred_from and until",
        build_event_filter().occurred_from(at(2)).and_occurred_until(at(7)).finalize(),
        [2, 3, 4, 5, 6, 7],
    ),
    ("ET", start().any_event_type_of(ADDED).finalize(), [1, 5]),
    ("ET or ET", start().any_event_type_of(ADDED, REMOVED).finalize(), [1, 4, 5]),
    ("P", start().any_predicate_of(P("BookID", "b1")).finalize(), [1, 2, 3, 4]),
    (
        "P or P",
        start().any_predicate_of(P("BookID", "b1"), P("ReaderID", "r2")).finalize(),
        [1, 2, 3, 4, 6, 7],
    ),
    (
        "P and P",
        start().all_predicates_of(P("BookID", "b2"), P("ReaderID", "r1")).finalize(),
        [8, 9],
    ),
    (
        "ET and P",
        start().any_event_type_of(LENT).and_all_predicates_of(P("ReaderID", "r1")).finalize(),
        [2, 8],
    ),
    (
        "ET and (P or P)",
        start()
        .any_event_type_of(LENT)
        .and_any_predicate_of(P("BookID", "b1"), P("ReaderID", "r2"))
        .finalize(),
        [2, 6],
    ),
    (
        "ET and (P and P)",
        start()
        .any_event_type_of(LENT)
        .and_all_predicates_of(P("BookID", "b2"), P("ReaderID", "r1"))
        .finalize(),
        [8],
    ),
    (
        "(ET or ET) and P",
        start()
        .any_event_type_of(LENT, RETURNED)
        .and_all_predicates_of(P("BookID", "b1"))
        .finalize(),
        [2, 3],
    ),
    (
        "(ET or ET) and (P or P)",
        start()
        .any_event_type_of(LENT, RETURNED)
        .and_any_predicate_of(P("BookID", "b2"), P("ReaderID", "r1"))
        .finalize(),
        [2, 3, 6, 7, 8, 9],
    ),
    (
        "(ET or ET) and (P and P)",
        start()
        .any_event_type_of(LENT, RETURNED)
        .and_all_predicates_of(P("BookID", "b2"), P("ReaderID", "r1"))
        .finalize(),
        [8, 9],
    ),
    ("(ET and P) or (ET and P)", last_items().finalize(), [3, 4, 9]),
    ("the last + occurred_from", last_items().occurred_from(at(4)).finalize(), [4, 9]),
    ("the last + occurred_until", last_items().occurred_until(at(4)).finalize(), [3, 4]),
    (
        "the last + from and until",
        last_items().occurred_from(at(4)).and_occurred_until(at(8)).finalize(),
        [4],
    ),
    ("the last + sequence > 8", last_items().with_sequence_number_higher_than(8).finalize(), [9]),
]

EXPECTED_COUNTS = {
    "match any event": 9, "only occurred_from": 5, "only occurred_until": 1,
    "occurred_from and until": 6, "ET": 2, "ET or ET": 3, "P": 4, "P or P": 6, "P and P": 2,
    "ET and P": 2, "ET and (P or P)": 2, "ET and (P and P)": 1, "(ET or ET) and P": 2,
    "(ET or ET) and (P or P)": 6, "(ET or ET) and (P and P)": 2, "(ET and P) or (ET and P)": 3,
    "the last + occurred_from": 2, "the last + occurred_until": 2,
    "the last + from and until": 1, "the last + sequence > 8": 1,
}  # fmt: skip


# Tags beside (and combined with) types and predicates: (case, filter, positions).
TAG_CASES: list[tuple[str, EventFilter, list[int]]] = [
    ("T", start().all_tags_of("book:b1").finalize(), [1, 2, 3, 4]),
    ("T or T", start().any_tag_of("book:b1", "reader:r2").finalize(), [1, 2, 3, 4, 6, 7]),
    ("T and T", start().all_tags_of("book:b2", "reader:r1").finalize(), [8, 9]),
    ("T and T, no event has both", start().all_tags_of("book:b1", "reader:r2").finalize(), []),
    ("ET and T", start().any_event_type_of(LENT).and_all_tags_of("reader:r1").finalize(), [2, 8]),
    (
        "ET and (T or T)",
        start().any_event_type_of(LENT).and_any_tag_of("book:b1", "reader:r2").finalize(),
        [2, 6],
    ),
    (
        "T and ET",
        start().all_tags_of("reader:r1").and_any_event_type_of(RETURNED).finalize(),
        [3, 9],
    ),
    (
        "P and T",
        start().all_predicates_of(P("BookID", "b2")).and_all_tags_of("reader:r1").finalize(),
        [8, 9],
    ),
    (
        "ET and P and T",
        start()
        .any_event_type_of(LENT)
        .and_all_predicates_of(P("BookID", "b2"))
        .and_any_tag_of("reader:r1", "reader:r9")
        .finalize(),
        [8],
    ),
    (
        "(ET and T) or (ET and P)",
        start()
        .any_event_type_of(REMOVED)
        .and_all_tags_of("book:b1")
        .or_matching()
        .any_event_type_of(RETURNED)
        .and_all_predicates_of(P("ReaderID", "r1"))
        .finalize(),
        [3, 4, 9],
    ),
    (
        "T + sequence > 7",
        start().all_tags_of("book:b2").with_sequence_number_higher_than(7).finalize(),
        [8, 9],
    ),
]


def test_the_cases_are_the_domain_table() -> None:
    assert {name: len(positions) for name, _, positions in CASES} == EXPECTED_COUNTS


def test_parity_fixture(store: Any) -> None:
    nothing = build_event_filter().matching_any_event().finalize()
    seqs = []
    for i, (event_type, payload) in enumerate(FIXTURE, start=1):
        event = Event(event_type, payload, occurred_at=at(i), tags=tags_of(payload))
        seqs += store.append(nothing, len(seqs), event)
    # A fresh table numbers from 1, so the sequence bound of the last case means event 9.
    assert seqs == list(range(1, 10))

    for name, filter, positions in CASES + TAG_CASES:
        result = store.query(filter)
        assert [e.sequence_number for e in result] == positions, name
        if name in EXPECTED_COUNTS:
            assert len(result) == EXPECTED_COUNTS[name], name
        assert result.max_sequence_number == (positions[-1] if positions else 0), name
        for e, pos in zip(result, positions, strict=True):
            assert (e.event_type, e.payload) == FIXTURE[pos - 1], name
            assert e.tags == tuple(tags_of(FIXTURE[pos - 1][1])), name
            assert e.occurred_at == at(pos), name
        assert [e.sequence_number for e in store.read(filter)] == positions, name
