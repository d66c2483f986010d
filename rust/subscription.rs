//! Subscriptions: every event matching a filter above a position, in sequence order, exactly
//! once: the backlog first, then live.
//!
//! Gap-free by construction: a subscription delivers only events up to a position below
//! which every number is settled, so an event that commits after a higher one was drawn is
//! never skipped. Live, that position is where the numbers visible above the last settled
//! one stop being consecutive (each number up to there is committed). The store's
//! [`Listener`] finds it: one look at the log per round, on a connection of its own, which
//! also reads the next page of every subscription that asked (each keeps what is settled; see
//! `wake.rs`). A number missing for longer than `GAP_WAIT` (in flight, or drawn by an
//! append that rolled back) and a long backlog are settled by the head
//! ([`EventStore::head`]), which waits for the writers in flight. Live delivery is woken by a
//! notification each append sends after its commit, received by the listener while some
//! subscription waits for one, with a poll every `poll_interval` for notifications that never
//! came (a channel down, an appender that died between its commit and its notification). A
//! subscription holds no lock and no connection while it waits, and one page at a time in
//! memory: a slow consumer only lets notifications coalesce.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::{BoxFuture, OptionFuture};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch, Notify};
use tokio_postgres::{AsyncMessage, Client, Row};

use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::filter::Filter;
use crate::pool::{pipeline, Bound, Dialer, MAX_CACHED_STATEMENTS};
use crate::sql;
use crate::sql::param::Statement;
use crate::store::{begin, EventStore, Page, Reader, Timeout};
use crate::table::TableName;
use crate::wake::{lost, Ask, Look, Wakes, Wakeups};

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
    /// The head found since the last look, for the listener.
    head: Option<i64>,
}

/// Most sequence numbers one look at the log fetches; past them (a settled position far
/// behind), the head settles the backlog instead.
const NUMBERS: i64 = 100_000;

/// The shortest time between two looks at the log: a commit after a quiet spell is looked
/// for at once, and a busy log is looked at this often. Each look costs the writers (a
/// transaction on the server, a wake-up of each subscription it answers): with 8 writers
/// and 4 subscribers on 2 cores, a look every 3 ms rather than 2 left the writers about
/// two points more of their rate alone (medians of runs in pairs: 91.6 against 90.5%, 89.8
/// against 87.7% on a slower hour) and delayed the median delivery from 3.5 to 4.0 ms;
/// every 4 ms, about one point more again, and 4.5 ms.
const COALESCE: Duration = Duration::from_millis(3);

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

/// Serves every subscription of one store on a connection of its own, until the last is
/// closed or dropped: receives the table's notifications and answers the subscriptions' looks at the
/// log, reconnecting when the connection is lost (each reconnection wakes the subscriptions:
/// they may have missed some). Run it on a runtime that runs all the time, so notifications
/// are read as they come whatever the consumers do.
pub struct Listener {
    dialer: Dialer,
    channel: String,
    table: TableName,
    timeout: Option<Duration>,
    wakes: Arc<Wakes>,
    asks: mpsc::UnboundedReceiver<Ask>,
    /// Where the store finds this listener to share it.
    slot: Wakeups,
    /// The position below which every number is settled, once known.
    settled: Option<i64>,
    /// Since when a number above it has been missing.
    gap_since: Option<tokio::time::Instant>,
    last_look: Option<tokio::time::Instant>,
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
            let (wakes, asks) = Wakes::new();
            let wakes = Arc::new(wakes);
            *running = Arc::downgrade(&wakes);
            let listener = Listener {
                dialer: store.dialer(),
                channel: crate::keys::channel(store.table()),
                table: store.table().clone(),
                timeout: store.timeout(),
                wakes: Arc::clone(&wakes),
                asks,
                slot: Arc::clone(&slot),
                settled: None,
                gap_since: None,
                last_look: None,
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
                head: None,
            },
            listener,
        ))
    }

    /// Lets go of the listener once stopped: the listener ends when no subscription holds it,
    /// and with it its connection (a stopped subscription only ever answers None).
    pub fn release(&mut self) {
        if self.stop.is_stopped() {
            self.wakeups = watch::channel(0).1;
        }
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
                self.release();
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
        // Seen before the log is looked at: a commit after this wakes the wait below.
        self.wakeups.borrow_and_update();
        let position = self.reader.position();
        let (page, limit) = store.page_statement(&self.reader, (position, i64::MAX))?;
        // Not timed: a look may stand in the listener while the log moves on without events
        // for this subscription; the listener's rounds are timed.
        let look = tokio::select! {
            look = self.wakes.look(page, self.head.take()) => look?,
            () = until(deadline) => return Ok(None),
            () = self.stop.stopped() => return Ok(None),
        };
        let gap = match look.settled {
            Some(settled) if settled > position => {
                let page = Page::new(&look.rows, &self.reader, limit)?;
                let events = self.reader.settle(settled, page);
                return Ok((!events.is_empty()).then_some(events));
            }
            Some(_) => look.gap,
            None => {
                // The head, which waits out the writers in flight; the listener learns it
                // with the next look.
                let head = store.head(Timeout::StoreDefault).await?;
                self.head = Some(head);
                if head > position {
                    self.reader.extend_to(head);
                    return Ok(None);
                }
                false
            }
        };
        let poll = tokio::time::sleep(if gap {
            GAP_WAIT.min(self.poll_interval)
        } else {
            self.poll_interval
        });
        let _waiting = self.wakes.waiting();
        tokio::select! {
            _ = self.wakeups.changed() => {}
            () = poll => {}
            () = until(deadline) => {}
            () = self.stop.stopped() => {}
        }
        Ok(None)
    }
}

/// Until `deadline` (forever when there is none).
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Listener {
    /// Runs until the store's last subscription is dropped.
    pub async fn run(mut self) {
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

    /// One connection's life, until it breaks: `LISTEN`, a wake-up per notification,
    /// `UNLISTEN` at a notification while no subscription waits and `LISTEN` again when one
    /// begins to wait ([`crate::wake`]); and the looks asked, at most one round every
    /// [`COALESCE`], each answering all the looks asked since the last. Whether it got as far
    /// as listening.
    async fn listen(&mut self) -> bool {
        let Ok((client, mut connection)) = self.dialer.open().await else {
            return false;
        };
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        let listen = format!("LISTEN \"{}\"", self.channel);
        let unlisten = format!("UNLISTEN \"{}\"", self.channel);
        // The statements prepared on this connection, lent to the round in flight.
        let mut prepared = Some(HashMap::new());
        // The command in flight, if any, and whether it is a LISTEN.
        let mut switching: Option<BoxFuture<'_, Result<(), tokio_postgres::Error>>> =
            Some(Box::pin(client.batch_execute(&listen)));
        let mut to_listen = true;
        let (mut listening, mut listened) = (false, false);
        // The looks asked and not answered yet, and the round in flight with its looks.
        let mut asked: Vec<Ask> = Vec::new();
        let mut round: Option<(Round<'_>, Asked)> = None;
        loop {
            let next_round = self
                .last_look
                .map_or_else(tokio::time::Instant::now, |t| t + COALESCE);
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
                    Some(Err(_)) | None => {
                        if let Some((_, asks)) = round.take() {
                            answer_all(asks.asks, &lost());
                        }
                        return listened;
                    }
                },
                // The first look asked wakes the listener; the others are taken when the round
                // begins (each would wake it for nothing).
                Some(ask) = self.asks.recv(), if asked.is_empty() => asked.push(ask),
                () = tokio::time::sleep_until(next_round), if round.is_none() && !asked.is_empty() => {
                    while let Ok(ask) = self.asks.try_recv() {
                        asked.push(ask);
                    }
                    if let Some((statements, asks)) = self.begin_round(std::mem::take(&mut asked)) {
                        let cache = prepared.take().unwrap_or_default();
                        let read = read_together(&client, cache, statements, self.timeout);
                        round = Some((Box::pin(read), asks));
                    }
                }
                Some((cache, read)) = OptionFuture::from(round.as_mut().map(|(r, _)| r)) => {
                    let (_, asks) = round.take().expect("a round in flight");
                    prepared = Some(cache);
                    if !self.end_round(asks, read, &mut asked) {
                        return listened;
                    }
                }
                () = self.wakes.closed() => return listened,
            }
        }
    }

    /// The statements of a round for `asks` (the look at the log, then each distinct page:
    /// subscriptions that follow one filter from one position share theirs), or `None` when
    /// they are answered already (nothing is known to be settled yet: the head tells).
    fn begin_round(&mut self, asks: Vec<Ask>) -> Option<(Vec<Statement>, Asked)> {
        let asks: Vec<Ask> = asks.into_iter().filter(|a| !a.answer.is_closed()).collect();
        for head in asks.iter().filter_map(|a| a.head) {
            self.settled = Some(self.settled.map_or(head, |s| s.max(head)));
        }
        let Some(settled) = self.settled else {
            for ask in asks {
                let _ = ask.answer.send(Ok(Look {
                    settled: None,
                    gap: false,
                    rows: Vec::new(),
                }));
            }
            return None;
        };
        self.last_look = Some(tokio::time::Instant::now());
        let mut statements = vec![sql::statements::numbers_after(
            &self.table,
            settled,
            NUMBERS,
        )];
        let mut pages = Vec::with_capacity(asks.len());
        for ask in &asks {
            let shared = statements.iter().skip(1).position(|s| *s == ask.page);
            if let Some(at) = shared {
                pages.push(at + 1);
            } else {
                pages.push(statements.len());
                statements.push(ask.page.clone());
            }
        }
        Some((statements, Asked { asks, pages }))
    }

    /// Answers a round's looks with what it read, except those that stand for the next round
    /// (put in `standing`): while the log moves on, a look whose page holds no settled event
    /// is taken again next round rather than answered, so that its subscription's thread is
    /// not woken for nothing (a subscription to rare events on a busy log). Whether its
    /// connection can go on.
    fn end_round(
        &mut self,
        asked: Asked,
        read: Result<Vec<Vec<Row>>>,
        standing: &mut Vec<Ask>,
    ) -> bool {
        let before = self.settled;
        match read.and_then(|rows| self.settle(&rows).map(|settled| (settled, rows))) {
            Ok((settled, rows)) => {
                let gap = self.gap_since.is_some();
                // Only while a round settles further: when the log stops, every look is
                // answered, and its subscription waits for a notification.
                let moved_to = settled.filter(|s| before.is_some_and(|b| *s > b));
                for (mut ask, page) in asked.asks.into_iter().zip(asked.pages) {
                    let rows = &rows[page];
                    if moved_to.is_some_and(|s| matches!(Page::holds_up_to(rows, s), Ok(false))) {
                        ask.head = None;
                        standing.push(ask);
                        continue;
                    }
                    let rows = rows.clone();
                    let _ = ask.answer.send(Ok(Look { settled, gap, rows }));
                }
                true
            }
            Err(e) => {
                answer_all(asked.asks, &e);
                !(e.is_disconnect() || matches!(e, Error::Timeout(_)))
            }
        }
    }

    /// Moves the settled position on with a round's look (its first rows): the position to
    /// answer with (`None`: the head must tell).
    fn settle(&mut self, rows: &[Vec<Row>]) -> Result<Option<i64>> {
        let settled = self.settled.unwrap_or_default();
        let row = rows.first().and_then(|r| r.first()).ok_or(Error::Closed)?;
        let (last, numbers): (i64, Vec<i64>) = (row.try_get(0)?, row.try_get(1)?);
        let complete = contiguous(settled, &numbers);
        let stays = self
            .gap_since
            .is_some_and(|since| since.elapsed() >= GAP_WAIT && complete == settled);
        if last - settled > NUMBERS || stays {
            // A backlog, or a gap that stays: the head, which waits out the writers in flight.
            self.gap_since = None;
            return Ok(None);
        }
        if complete > settled {
            self.gap_since = (complete < last).then(tokio::time::Instant::now);
            self.settled = Some(complete);
        } else if complete < last {
            self.gap_since.get_or_insert_with(tokio::time::Instant::now);
        }
        Ok(self.settled)
    }
}

/// The looks of a round, and which of its statements is each one's page.
struct Asked {
    asks: Vec<Ask>,
    pages: Vec<usize>,
}

/// The same failure for every look of `asks`.
fn answer_all(asks: impl IntoIterator<Item = Ask>, error: &Error) {
    for ask in asks {
        let _ = ask.answer.send(Err(error.clone()));
    }
}

/// Statements prepared on one connection, by their text.
type Prepared = HashMap<String, tokio_postgres::Statement>;

/// A round of looks in flight: it gives back the statements it was lent.
type Round<'a> = BoxFuture<'a, (Prepared, Result<Vec<Vec<Row>>>)>;

/// `statements` in one read-only transaction on `client`, one pipeline once each is prepared
/// (kept in `prepared`, emptied past [`MAX_CACHED_STATEMENTS`]), within `timeout`: each one's
/// rows, and `prepared` back.
async fn read_together(
    client: &Client,
    mut prepared: Prepared,
    statements: Vec<Statement>,
    timeout: Option<Duration>,
) -> (Prepared, Result<Vec<Vec<Row>>>) {
    let read = async {
        if prepared.len() + statements.len() > MAX_CACHED_STATEMENTS {
            prepared.clear();
        }
        for s in &statements {
            if !prepared.contains_key(&s.sql) {
                let statement = client.prepare(&s.sql).await?;
                prepared.insert(s.sql.clone(), statement);
            }
        }
        let planned = statements.iter().find(|s| s.plan_per_call);
        let opening = begin(true, planned.unwrap_or(&statements[0]));
        let bound: Vec<Bound<'_>> = statements
            .iter()
            .map(|s| (prepared[&s.sql].clone(), s.args()))
            .collect();
        let (began, rows, committed) = pipeline(client, opening, &bound, "COMMIT").await;
        began?;
        let rows = rows.into_iter().collect::<Result<Vec<_>, _>>()?;
        committed?;
        Ok(rows)
    };
    let rows = match timeout {
        Some(limit) => tokio::time::timeout(limit, read)
            .await
            .unwrap_or(Err(Error::Timeout(limit))),
        None => read.await,
    };
    (prepared, rows)
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
