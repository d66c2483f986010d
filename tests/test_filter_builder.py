"""The fluent builder: immutable steps, sanitising, equality, and the errors it raises."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from dynamic_streams import EventFilter, InvalidInputError, P, build_event_filter

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_steps_never_change_the_builder_they_extend() -> None:
    base = build_event_filter().matching().any_event_type_of("A")
    narrow = base.and_all_predicates_of(P("k", "v")).finalize()
    wide = base.or_matching().any_event_type_of("B").finalize()
    again = base.finalize()
    assert again == build_event_filter().matching().any_event_type_of("A").finalize()
    assert narrow != again and wide != again and narrow != wide


def test_equal_filters_compile_to_identical_sql_however_built() -> None:
    a = (
        build_event_filter().matching().any_event_type_of("X", "Y", "X", "")
        .and_any_predicate_of(P("b", 2), P("a", "1"), P("b", 2.0))
        .or_matching().all_predicates_of(P("n", True))
        .finalize()
    )  # fmt: skip
    b = (
        build_event_filter().matching().all_predicates_of(P("n", True))
        .or_matching().any_predicate_of(P("a", "1"), P("b", 2)).and_any_event_type_of("Y", "X")
        .or_matching().any_event_type_of("X", "Y").and_any_predicate_of(P("a", "1"), P("b", 2))
        .finalize()
    )  # fmt: skip
    assert a == b and hash(a) == hash(b)
    assert a.to_sql() == b.to_sql()
    assert a.canonical_json() == b.canonical_json()
    assert isinstance(a, EventFilter)


def test_values_are_typed_json() -> None:
    f = build_event_filter().matching().all_predicates_of(P("n", 1), P("f", 1.5), P("b", False))
    sql, params = f.finalize().to_sql()
    # $1: the key index lookup; $2: the exact condition, typed JSON values.
    assert "payload @> $2::jsonb" in sql
    assert params[1] == 'Json(Object {"b": Bool(false), "f": Number(1.5), "n": Number(1)})'


@pytest.mark.parametrize(
    "make",
    [
        lambda: build_event_filter().matching().any_event_type_of().finalize(),
        lambda: build_event_filter().matching().any_event_type_of("", "  ").finalize(),
        lambda: build_event_filter().matching().any_predicate_of().finalize(),
        lambda: build_event_filter().matching().all_predicates_of(P("", "x"), P("k", "")).finalize(),
        # An empty key names no payload field: an error, never a silently dropped predicate.
        lambda: build_event_filter().matching().any_event_type_of("A")
        .and_any_predicate_of(P("k", "v"), P("", "v")).finalize(),
        lambda: build_event_filter().matching().any_event_type_of("A")
        .or_matching().any_event_type_of("").finalize(),
        lambda: build_event_filter().occurred_from(NOW).and_occurred_until(NOW - timedelta(1)).finalize(),
        lambda: build_event_filter().with_sequence_number_higher_than(-1).finalize(),
        lambda: build_event_filter().occurred_from(datetime(2026, 1, 1)).finalize(),
        lambda: build_event_filter().matching().any_event_type_of("A\x00").finalize(),
        lambda: build_event_filter().matching().all_predicates_of(P("k", "v\x00")).finalize(),
        lambda: build_event_filter().matching().all_predicates_of(P("k", float("nan"))).finalize(),
        lambda: build_event_filter().matching().all_predicates_of(P("k", 2**70)).finalize(),
        lambda: build_event_filter().matching().all_predicates_of(("k",)).finalize(),  # type: ignore[arg-type]
    ],
)  # fmt: skip
def test_bad_filters_raise_invalid_input(make: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        make()  # type: ignore[operator]
    assert isinstance(info.value, ValueError)
    assert str(info.value)


def test_unsupported_predicate_values_are_invalid_input_when_given() -> None:
    with pytest.raises(InvalidInputError, match="str, int, float or bool"):
        build_event_filter().matching().all_predicates_of(P("k", None)).finalize()  # type: ignore[arg-type]


def test_the_builder_offers_only_sensible_steps() -> None:
    start = build_event_filter()
    assert not hasattr(start, "finalize")
    assert not hasattr(start, "or_matching")
    empty = start.matching()
    assert not hasattr(empty, "finalize") and not hasattr(empty, "occurred_from")
    with_types = empty.any_event_type_of("A")
    assert not hasattr(with_types, "and_any_event_type_of")
    with_preds = empty.any_predicate_of(P("k", "v"))
    assert not hasattr(with_preds, "and_any_predicate_of")
    complete = with_types.and_any_predicate_of(P("k", "v"))
    assert not hasattr(complete, "and_all_predicates_of")
    after_from = complete.occurred_from(NOW)
    assert not hasattr(after_from, "or_matching") and not hasattr(after_from, "occurred_until")
    bounded = after_from.and_occurred_until(NOW)
    assert [m for m in dir(bounded) if not m.startswith("_")] == ["finalize"]
    assert not hasattr(start.matching_any_event(), "or_matching")


@pytest.mark.parametrize(
    ("a", "b"),
    [(1e16, 10**16), (1.0, 1), (-0.0, 0), (1e18, 10**18), (-2.5e-7, -2.5e-7), (9e15, 9 * 10**15)],
)
def test_numbers_equal_as_jsonb_compares_them_make_equal_filters(a: float, b: float) -> None:
    fa, fb = (
        build_event_filter().matching().all_predicates_of(P("n", v)).finalize() for v in (a, b)
    )
    assert fa == fb and hash(fa) == hash(fb)
    assert fa.hash() == fb.hash() and fa.canonical_json() == fb.canonical_json()
    assert fa.to_sql() == fb.to_sql()


def test_different_numbers_stay_apart() -> None:
    f = [
        build_event_filter().matching().all_predicates_of(P("n", v)).finalize()
        for v in (0.1, 0.2, 1, 1.5)
    ]
    assert len({x.hash() for x in f}) == 4
