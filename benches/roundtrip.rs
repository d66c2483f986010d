//! The engine's database round trips without Python: the same lending query the Python
//! benchmarks run, and a guarded append, against a primed store.
//!
//! Needs `DCB_BENCH_DSN` and `DCB_BENCH_TABLE` (set by `make bench`); without them it only
//! says so. `DCB_BENCH_BOOK` and `DCB_BENCH_READER` name the entities to query.

use std::time::Duration;

mod common;

use common::lending_filter;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use dynamic_streams::{Consistency, EventStore, StorableEvent, StoreConfig, TableName, Timeout};

fn benches(c: &mut Criterion) {
    let (Ok(dsn), Ok(table)) = (
        std::env::var("DCB_BENCH_DSN"),
        std::env::var("DCB_BENCH_TABLE"),
    ) else {
        eprintln!("roundtrip: set DCB_BENCH_DSN and DCB_BENCH_TABLE to run (make bench does)");
        return;
    };
    let book = std::env::var("DCB_BENCH_BOOK").unwrap_or_else(|_| "no-such-book".into());
    let reader = std::env::var("DCB_BENCH_READER").unwrap_or_else(|_| "no-such-reader".into());
    // As the synchronous Python store runs: the waiting thread drives the I/O.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = EventStore::new(StoreConfig {
        dsn,
        table: TableName::parse(&table).expect("valid table"),
        pool_size: 2,
        timeout: Some(Duration::from_secs(30)),
        snapshot_table: None,
        replica_dsn: None,
        pool_timeout: None,
        vacuum_every: None,
        background: None,
    })
    .expect("store");
    let filter = lending_filter(&book, &reader);
    let found = rt
        .block_on(store.query(&filter, Consistency::Strong, Timeout::StoreDefault))
        .expect("query");
    eprintln!("roundtrip: the query finds {} events", found.events.len());

    c.bench_function("engine: query copy + reader", |b| {
        b.iter(|| {
            rt.block_on(store.query(&filter, Consistency::Strong, Timeout::StoreDefault))
                .expect("query")
        });
    });
    let mut n = 0_u64;
    c.bench_function("engine: append 1 event, guarded", |b| {
        b.iter_batched(
            || {
                // A fresh copy: its boundary's expected number comes from a query (not timed).
                n += 1;
                let book = format!("criterion-{}-{n}", std::process::id());
                let filter = lending_filter(&book, &reader);
                let payload = format!(r#"{{"BookID":"{book}"}}"#);
                let event = StorableEvent::new("BookCopyAddedToCirculation", &payload, None, None)
                    .expect("event");
                let expected = rt
                    .block_on(store.query(&filter, Consistency::Strong, Timeout::StoreDefault))
                    .expect("query")
                    .max_sequence_number;
                (filter, expected, event)
            },
            |(filter, expected, event)| {
                rt.block_on(store.append(&filter, expected, &[event], Timeout::StoreDefault))
                    .expect("append")
            },
            BatchSize::SmallInput,
        );
    });
}

criterion_group!(roundtrip, benches);
criterion_main!(roundtrip);
