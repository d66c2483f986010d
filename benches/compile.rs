//! Pure-engine costs with no database: building a filter, compiling it to SQL, and deriving
//! the guard's lock keys, for the lending use case's filter (six types, two predicates).

mod common;

use common::lending_filter;
use criterion::{criterion_group, criterion_main, Criterion};
use dynamic_streams::sql::statements;
use dynamic_streams::{guard, keys, StorableEvent, TableName};
use std::hint::black_box;

const BOOK: &str = "0193a0c2-7f3e-7000-8000-000000000001";
const READER: &str = "0193a0c2-7f3e-7000-8000-000000000002";

fn benches(c: &mut Criterion) {
    let table = TableName::parse("events").expect("valid table");
    let filter = lending_filter(BOOK, READER);
    let event = StorableEvent::new(
        "BookCopyLentToReader",
        r#"{"BookID":"0193a0c2-7f3e-7000-8000-000000000001","ReaderID":"0193a0c2-7f3e-7000-8000-000000000002"}"#,
        None,
        None,
    )
    .expect("valid event");

    c.bench_function("build lending filter", |b| {
        b.iter(|| black_box(lending_filter(BOOK, READER)));
    });
    let events = std::slice::from_ref(&event);
    c.bench_function("compile query", |b| {
        b.iter(|| {
            let lookup = keys::lookup(&table, black_box(&filter));
            black_box(statements::query(&table, &filter, lookup.as_ref()))
        });
    });
    c.bench_function("compile guarded insert", |b| {
        b.iter(|| {
            let lookup = keys::lookup(&table, black_box(&filter));
            let guard = statements::Guard {
                filter: &filter,
                lookup: lookup.as_ref(),
                expected: 0,
            };
            black_box(statements::insert(&table, Some(&guard), events))
        });
    });
    c.bench_function("lock keys for append", |b| {
        b.iter(|| {
            let lookup = keys::lookup(&table, black_box(&filter));
            black_box(guard::for_append(&table, lookup.as_ref(), events))
        });
    });
}

criterion_group!(compile, benches);
criterion_main!(compile);
