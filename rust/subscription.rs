//! Subscriptions: every event matching a filter above a position, in sequence order, exactly
//! once: the backlog first, then live.
//!
//! Gap-free by construction: a subscription delivers only events up to a position below
//! which every number is settled, so an event that commits after a higher one was drawn is
//! never skipped. Live, that position is where the numbers visible above the last one stop
//! being consecutive (each number up to there is committed): one cheap look at the log,
//! which reads the next page in the same round trip and keeps what the look settles. A
//! number missing for longer than [`GAP_WAIT`] (in flight, or drawn by an append that rolled
//! back) and a long backlog are settled by the head ([`EventStore::head`]), which waits for
//! the writers in flight. Live delivery is woken by a notification each append sends after
//! its commit, received by a [`Listener`] on a connection of its own while some subscription
//! waits for one ([`crate::wake`]), with a poll every `poll_interval` for notifications that
//! never came (a channel down, an appender that died between its commit and its
//! notification). A subscription holds no lock and no connection while it waits, and one
//! page at a time in memory: a slow consumer only lets notifications coalesce.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::{BoxFuture, OptionFuture};
use futures_util::StreamExt;
use tokio::sync::{watch, Notify};
use tokio_postgres::AsyncMessage;

use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::filter::Filter;
use crate::pool::Dialer;
use crate::store::{EventStore, Reader, Timeout};
use crate::wake::{Wakes, Wakeups};

/// The longest pause between attempts when the server cannot be reached.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Stops a subscription, from any thread.
#[derive(Debug, Default)]
pub struct Stop {
    stopped: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    async fn stopped(&self) {
        let notified = self.notify.notified();
        if !self.is_stopped() {
            notified.await;
        }
    }
}

/// A subscription in progress: where it is, and what wakes it.
#[derive(Debug)]
pub struct Subscription {
    reader: Reader,
    wakes: Arc<Wakes>,
    wakeups: watch::Receiver<u64>,
    poll_interval: Duration,
    stop: Arc<Stop>,
    /// Since when a number above the position has been missing.
    gap_since: Option<tokio::time::Instant>,
    last_look: Option<tokio::time::Instant>,
}

/// Most sequence numbers one look at the log fetches; a subscription further behind reads
/// up to the head instead.
const NUMBERS: i64 = 100_000;

/// The shortest time between two looks at the log of one subscription.
const COALESCE: Duration = Duration::from_millis(2);

/// How long a missing number may stay missing before the head settles whether it is in
/// flight or was never committed (an append rolled back after drawing it).
const GAP_WAIT: Duration = Duration::from_millis(20);

/// The end of the run of consecutive numbers from `position + 1` in `numbers` (ascending).
fn contiguous(position: i64, numbers: &[i64]) -> i64 {
    let mut end = position;
    for n in numbers {
        if *n != end + 1 {
            break;
        }
        end = *n;
    }
    end
}

/// Receives the table's notifications on a connection of its own, reconnecting when it is
/// lost (each reconnection wakes the subscriptions: they may have missed some), for every
/// subscription of one store, until the last is dropped. Run it on a runtime that runs all
/// the time, so notifications are read as they come whatever the consumers do.
pub struct Listener {
    dialer: Dialer,
    channel: String,
    wakes: Arc<Wakes>,
    /// Where the store finds this listener to share it.
    slot: Wakeups,
}

impl Subscription {
    /// A subscription to the events of `filter` above `after`, delivered in pages of at most
    /// `batch_size`, and, when the store's subscriptions have none running, the listener
    /// that wakes them, to run.
    pub fn new(
        store: &EventStore,
        filter: Filter,
        after: i64,
        batch_size: usize,
        poll_interval: Duration,
    ) -> Result<(Self, Option<Listener>)> {
        if poll_interval.is_zero() {
            return Err(Error::invalid("poll_interval must be positive"));
        }
        let mut reader = Reader::new(store.table(), filter, after, None, false, batch_size)?;
        reader.extend_to(after);
        let slot = store.wakeups();
        let mut running = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (wakes, listener) = if let Some(wakes) = running.upgrade() {
            (wakes, None)
        } else {
            let wakes = Arc::new(Wakes::new());
            *running = Arc::downgrade(&wakes);
            let listener = Listener {
                dialer: store.dialer(),
                channel: crate::keys::channel(store.table()),
                wakes: Arc::clone(&wakes),
                slot: Arc::clone(&slot),
            };
            (wakes, Some(listener))
        };
        let wakeups = wakes.subscribe();
        drop(running);
        let stop = Arc::new(Stop::default());
        Ok((
            Self {
                reader,
                wakes,
                wakeups,
                poll_interval,
                stop,
                gap_since: None,
                last_look: None,
            },
            listener,
        ))
    }

    /// What stops this subscription.
    pub fn stop_handle(&self) -> Arc<Stop> {
        Arc::clone(&self.stop)
    }

    /// The sequence number of the last event delivered, or the position it started after.
    pub fn position(&self) -> i64 {
        self.reader.position()
    }

    /// The next events, waiting for them for at most `wait` (`None`: until there are some).
    /// None when the subscription was stopped; an empty page when `wait` ran out. Failures
    /// to reach the server are waited out (the next attempt resumes from the position);
    /// other failures are returned, and the subscription can go on after them.
    pub async fn next(
        &mut self,
        store: &EventStore,
        wait: Option<Duration>,
    ) -> Result<Option<Vec<RecordedEvent>>> {
        let deadline = wait.map(|w| tokio::time::Instant::now() + w);
        let mut pause = Duration::from_millis(50);
        loop {
            if self.stop.is_stopped() {
                return Ok(None);
            }
            match self.step(store, deadline).await {
                Ok(Some(events)) => return Ok(Some(events)),
                Ok(None) => {
                    if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        return Ok(Some(Vec::new()));
                    }
                }
                Err(e) if e.is_disconnect() || matches!(e, Error::Timeout(_)) => {
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = self.stop.stopped() => {}
                    }
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Delivers what is there up to the settled position, moves that position on, or waits
    /// for a wake-up (None: nothing to deliver yet).
    async fn step(
        &mut self,
        store: &EventStore,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Option<Vec<RecordedEvent>>> {
        let events = store.read(&mut self.reader, Timeout::StoreDefault).await?;
        if !events.is_empty() {
            return Ok(Some(events));
        }
        // At most one look every COALESCE: under a stream of commits, each look then finds
        // several, instead of each costing a look (and the writers' server the work).
        if let Some(next) = self.last_look.map(|t| t + COALESCE) {
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = self.stop.stopped() => return Ok(None),
            }
        }
        self.last_look = Some(tokio::time::Instant::now());
        // Seen before the log is looked at: a commit after this wakes the wait below.
        self.wakeups.borrow_and_update();
        let position = self.reader.position();
        let (last, numbers, page) = store.look(&self.reader, NUMBERS).await?;
        let complete = contiguous(position, &numbers);
        let precise = last - position > NUMBERS
            || self
                .gap_since
                .is_some_and(|since| since.elapsed() >= GAP_WAIT && complete == position);
        if precise {
            // A backlog, or a gap that stays: the head, which waits out the writers in flight.
            self.gap_since = None;
            let head = store.head(Timeout::StoreDefault).await?;
            if head > position {
                self.reader.extend_to(head);
                return Ok(None);
            }
        } else if complete > position {
            self.gap_since = (complete < last).then(tokio::time::Instant::now);
            let events = self.reader.settle(complete, page);
            return Ok((!events.is_empty()).then_some(events));
        } else if complete < last {
            self.gap_since.get_or_insert_with(tokio::time::Instant::now);
        }
        let poll = tokio::time::sleep(if self.gap_since.is_some() {
            GAP_WAIT.min(self.poll_interval)
        } else {
            self.poll_interval
        });
        let until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let _waiting = self.wakes.waiting();
        tokio::select! {
            _ = self.wakeups.changed() => {}
            () = poll => {}
            () = until => {}
            () = self.stop.stopped() => {}
        }
        Ok(None)
    }
}

impl Listener {
    /// Runs until the store's last subscription is dropped.
    pub async fn run(self) {
        let mut pause = Duration::from_millis(50);
        while !self.is_done() {
            if self.listen().await {
                pause = Duration::from_millis(50);
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.wakes.closed() => {}
            }
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// Whether no subscription is left; if so, the store starts a new listener for the next.
    fn is_done(&self) -> bool {
        let mut slot = self
            .slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let done = self.wakes.is_closed();
        if done {
            *slot = Weak::new();
        }
        done
    }

    /// One connection's life: `LISTEN`, then a wake-up per notification until it breaks,
    /// `UNLISTEN` at a notification while no subscription waits, `LISTEN` again when one
    /// begins to wait ([`crate::wake`]). Whether it got as far as listening.
    async fn listen(&self) -> bool {
        let Ok((client, mut connection)) = self.dialer.open().await else {
            return false;
        };
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        let listen = format!("LISTEN \"{}\"", self.channel);
        let unlisten = format!("UNLISTEN \"{}\"", self.channel);
        // The command in flight, if any, and whether it is a LISTEN.
        let mut switching: Option<BoxFuture<'_, Result<(), tokio_postgres::Error>>> =
            Some(Box::pin(client.batch_execute(&listen)));
        let mut to_listen = true;
        let (mut listening, mut listened) = (false, false);
        loop {
            tokio::select! {
                Some(done) = OptionFuture::from(switching.as_mut()) => {
                    switching = None;
                    if done.is_err() {
                        return listened;
                    }
                    listening = to_listen;
                    if listening {
                        listened = true;
                        // Commits while nothing listened are found now.
                        self.wakes.wake();
                    }
                }
                () = self.wakes.one_began(), if switching.is_none() && !listening => {
                    if self.wakes.any_waiting() {
                        to_listen = true;
                        switching = Some(Box::pin(client.batch_execute(&listen)));
                    }
                }
                message = messages.next() => match message {
                    Some(Ok(AsyncMessage::Notification(_))) => {
                        self.wakes.wake();
                        if listening && switching.is_none() && !self.wakes.any_waiting() {
                            to_listen = false;
                            switching = Some(Box::pin(client.batch_execute(&unlisten)));
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return listened,
                },
                () = self.wakes.closed() => return listened,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::contiguous;

    #[test]
    fn the_settled_position_stops_at_the_first_missing_number() {
        assert_eq!(contiguous(10, &[]), 10);
        assert_eq!(contiguous(10, &[11, 12, 13]), 13);
        assert_eq!(contiguous(10, &[11, 13, 14]), 11);
        assert_eq!(contiguous(10, &[12, 13]), 10);
    }
}
