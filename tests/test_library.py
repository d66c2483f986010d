"""The example domain's use cases, end to end on a store: each rule, in the order it is checked."""

from __future__ import annotations

import pytest
from dynamic_streams import EventStore, build_event_filter
from dynamic_streams.examples import library as lib
from dynamic_streams.examples.library import Library, new_id


@pytest.fixture
def library(event_store: EventStore) -> Library:
    return Library(event_store)


def test_new_ids_are_uuid7() -> None:
    ids = [new_id() for _ in range(100)]
    assert len(set(ids)) == 100
    assert all(i[14] == "7" and i[19] in "89ab" for i in ids)


def test_add_and_remove_book_copy(library: Library) -> None:
    book = new_id()
    with pytest.raises(lib.BookCopyNeverAdded):
        library.remove_book_copy(book)
    assert library.add_book_copy(book, Title="Dune") is True
    assert library.add_book_copy(book, Title="Dune") is False
    assert library.remove_book_copy(book) is True
    assert library.remove_book_copy(book) is False


def test_register_and_cancel_reader(library: Library) -> None:
    reader, book = new_id(), new_id()
    with pytest.raises(lib.ReaderNeverRegistered):
        library.cancel_reader_contract(reader)
    assert library.register_reader(reader, "Ada") is True
    assert library.register_reader(reader, "Ada") is False
    library.add_book_copy(book)
    library.lend_book_copy(book, reader)
    with pytest.raises(lib.ReaderHasOutstandingLoans):
        library.cancel_reader_contract(reader)
    library.return_book_copy(book, reader)
    assert library.cancel_reader_contract(reader) is True
    assert library.cancel_reader_contract(reader) is False
    with pytest.raises(lib.ReaderNotRegistered):
        library.lend_book_copy(book, reader)


def test_lend_checks_its_rules_in_order(library: Library) -> None:
    reader, other, book = new_id(), new_id(), new_id()
    with pytest.raises(lib.ReaderNotRegistered):
        library.lend_book_copy(book, reader)
    library.register_reader(reader, "Ada")
    library.register_reader(other, "Bob")
    with pytest.raises(lib.BookCopyNotInCirculation):
        library.lend_book_copy(book, reader)
    library.add_book_copy(book)
    assert library.lend_book_copy(book, reader) is True
    assert library.lend_book_copy(book, reader) is False
    with pytest.raises(lib.BookCopyLentToSomeoneElse):
        library.lend_book_copy(book, other)
    with pytest.raises(lib.BookCopyCurrentlyLent):
        library.remove_book_copy(book)


def test_a_reader_holds_at_most_ten_copies(library: Library) -> None:
    reader = new_id()
    library.register_reader(reader, "Ada")
    books = [new_id() for _ in range(11)]
    for b in books:
        library.add_book_copy(b)
    for b in books[:10]:
        assert library.lend_book_copy(b, reader) is True
    with pytest.raises(lib.ReaderLoanLimitReached):
        library.lend_book_copy(books[10], reader)
    library.return_book_copy(books[0], reader)
    assert library.lend_book_copy(books[10], reader) is True


def test_return_book_copy(library: Library, event_store: EventStore) -> None:
    reader, other, book = new_id(), new_id(), new_id()
    with pytest.raises(lib.ReaderNeverRegistered):
        library.return_book_copy(book, reader)
    library.register_reader(reader, "Ada")
    library.register_reader(other, "Bob")
    with pytest.raises(lib.BookCopyNeverAdded):
        library.return_book_copy(book, reader)
    library.add_book_copy(book)
    with pytest.raises(lib.BookCopyNotLentToReader):
        library.return_book_copy(book, reader)
    library.lend_book_copy(book, reader)
    with pytest.raises(lib.BookCopyNotLentToReader):
        library.return_book_copy(book, other)
    assert library.return_book_copy(book, reader) is True
    assert library.return_book_copy(book, reader) is False
    types = [
        e.event_type
        for e in event_store.query(build_event_filter().matching_any_event().finalize())
    ]
    assert types[-2:] == ["BookCopyLentToReader", "BookCopyReturnedByReader"]


def test_schema_qualified_tables_work(event_store_dsn: str) -> None:
    table = f"lib_{new_id().replace('-', '')[-10:]}.events"
    with EventStore(event_store_dsn, table=table) as store:
        store.create_schema()
        library = Library(store)
        assert library.register_reader(new_id(), "Ada") is True
        assert store.table == table
        store._native.drop_table(None)
