//! Upkeep of the store's tables as they grow: a vacuum in the background after every so
//! many events the store has written.
//!
//! PostgreSQL marks an insert-only table's pages all-visible, and sets its rows' hint bits,
//! only when it vacuums them, and autovacuum looks at a table at most once a minute
//! (`autovacuum_naptime`), after [`crate::sql::ddl`]'s 10,000 inserts at the soonest. Until
//! then every read of a recent event also visits its key rows' heap, and the first read of
//! a page dirties it (with data checksums, PostgreSQL 18's default, it also writes the
//! page's full image to the WAL), which, once the table outgrows shared buffers, is a read
//! and a write per event. A vacuum right behind the writes finds those pages still in
//! memory: on a stock server, a 1M-event load through `append` took no longer with it (32.5
//! against 35.8 s; 30 vacuums of each table), and a lending query right after the load took
//! 0.46 instead of 1.20 ms (0.40 ms after a full VACUUM).
//!
//! A vacuum starts `SETTLE` after it is due. An append wakes the subscribers in a
//! transaction of its own that commits without waiting for the WAL to reach disk (it wrote
//! none), and PostgreSQL will not set the hint bits of rows whose transaction ids lie near
//! such a commit until the WAL is flushed past it (by the next append's commit, or within
//! `wal_writer_delay`, 200 ms by default): a vacuum right after the last append of a burst
//! leaves its pages as it found them.
//!
//! One vacuum at a time per store, on a connection of its own (never one of the pool's, so
//! that a call never waits for it), opened for it and closed after; none starts once the
//! store is closed or dropped (its application may be about to drop the database). It only
//! helps: a vacuum that cannot run (the role does not own the tables, the server is down)
//! is skipped, and the next one is tried after as many events again. The store counts the
//! vacuums that ran to their end and those that failed ([`Vacuums`]), for its statistics,
//! and tells the application why each failed one did ([`Background::warn`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_postgres::error::Severity;
use tokio_postgres::AsyncMessage;

use crate::error::Error;
use crate::pool::Dialer;
use crate::sql::statements as sql;
use crate::table::TableName;

/// Where a store's background work runs, and where its failures are told.
#[derive(Clone, Copy, Debug)]
pub struct Background {
    /// Runs work on a runtime that runs all the time (a synchronous store's own runtime
    /// only runs while a call waits on it).
    pub spawn: fn(Pin<Box<dyn Future<Output = ()> + Send>>),
    /// Tells the application, in words, what background work could not do (never
    /// credentials: the server's own message, or where it could not be reached).
    pub warn: fn(&str),
}

/// How long after it is due a vacuum starts: a few times `wal_writer_delay`'s default.
const SETTLE: Duration = Duration::from_secs(1);

/// The longest a vacuum waits for its connection: a server that does not answer by then is
/// left alone until the next one is due.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How many vacuums a store ran to their end, and how many failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vacuums {
    pub done: u64,
    pub failed: u64,
}

#[derive(Default)]
struct Counts {
    done: AtomicU64,
    failed: AtomicU64,
}

/// When a store's tables are vacuumed, and the vacuum in progress.
pub(crate) struct Upkeep {
    every: u64,
    written: AtomicU64,
    running: Arc<AtomicBool>,
    counts: Arc<Counts>,
    closed: Arc<AtomicBool>,
    background: Background,
    dialer: Dialer,
    vacuum: Arc<str>,
    /// The tables vacuumed, for messages.
    tables: Arc<str>,
}

impl Upkeep {
    /// Vacuums `table`'s events and key rows after every `every` events written.
    pub(crate) fn new(
        table: &TableName,
        every: u64,
        background: Background,
        dialer: Dialer,
    ) -> Self {
        Self {
            every,
            written: AtomicU64::new(0),
            running: Arc::new(AtomicBool::new(false)),
            counts: Arc::default(),
            closed: Arc::new(AtomicBool::new(false)),
            background,
            dialer,
            vacuum: sql::vacuum(table).into(),
            tables: format!("{} and {}", table.keys_quoted(), table.quoted()).into(),
        }
    }

    /// Counts `events` written by the store, and starts a vacuum when they are due (unless
    /// one is still at work: it is tried again after the next write).
    pub(crate) fn wrote(&self, events: usize) {
        let written = self.written.fetch_add(events as u64, Ordering::Relaxed) + events as u64;
        if written < self.every || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.written.store(0, Ordering::Relaxed);
        let (dialer, vacuum, tables, running, counts, closed) = (
            self.dialer.clone(),
            Arc::clone(&self.vacuum),
            Arc::clone(&self.tables),
            Arc::clone(&self.running),
            Arc::clone(&self.counts),
            Arc::clone(&self.closed),
        );
        let warn = self.background.warn;
        (self.background.spawn)(Box::pin(async move {
            tokio::time::sleep(SETTLE).await;
            if closed.load(Ordering::Acquire) {
                return;
            }
            match run(&dialer, &vacuum).await {
                Ok(()) => counts.done.fetch_add(1, Ordering::Relaxed),
                Err(why) => {
                    warn(&format!(
                        "the vacuum of {tables} did not complete ({why}); autovacuum is left to do it"
                    ));
                    counts.failed.fetch_add(1, Ordering::Relaxed)
                }
            };
            running.store(false, Ordering::Release);
        }));
    }

    /// The vacuums run so far.
    pub(crate) fn vacuums(&self) -> Vacuums {
        Vacuums {
            done: self.counts.done.load(Ordering::Relaxed),
            failed: self.counts.failed.load(Ordering::Relaxed),
        }
    }

    /// No vacuum starts from now on (one at work finishes).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// Runs `vacuum` on a connection of its own: whether it ran to its end on every table (no
/// error, and no warning: the server warns, and goes on, when it skips a table that the
/// role may not vacuum or that another session holds locked), and if not, why.
async fn run(dialer: &Dialer, vacuum: &str) -> Result<(), String> {
    let (client, mut connection) = match tokio::time::timeout(CONNECT_TIMEOUT, dialer.open()).await
    {
        Ok(Ok(opened)) => opened,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err(format!("no connection within {CONNECT_TIMEOUT:?}")),
    };
    let mut messages = futures_util::stream::poll_fn(|cx| connection.poll_message(cx));
    let mut warnings = Vec::new();
    let ran = {
        let ran = client.batch_execute(vacuum);
        tokio::pin!(ran);
        loop {
            tokio::select! {
                ran = &mut ran => break ran.map_err(|e| Error::from(e).to_string()),
                message = messages.next() => match message {
                    Some(Ok(AsyncMessage::Notice(notice))) => {
                        if notice.parsed_severity() == Some(Severity::Warning) {
                            warnings.push(notice.message().to_owned());
                        }
                    }
                    Some(Ok(_)) => {}
                    None | Some(Err(_)) => {
                        return Err("the connection ended before the vacuum did".to_owned())
                    }
                },
            }
        }
    };
    // Without its client, the connection says goodbye to the server and ends.
    drop(client);
    while let Some(Ok(_)) = messages.next().await {}
    ran?;
    if warnings.is_empty() {
        Ok(())
    } else {
        Err(warnings.join("; "))
    }
}

impl Drop for Upkeep {
    /// A store dropped without being closed starts no vacuum either.
    fn drop(&mut self) {
        self.close();
    }
}
