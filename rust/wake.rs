//! What a store's subscriptions share with the one listener that serves them
//! ([`crate::subscription`]): a counter bumped per notification, how many subscriptions are
//! waiting for one, and the queue of their looks at the log.
//!
//! The listener listens only while some subscription waits. A subscription that finds commits
//! at every look does not wait, and then every notification would cost the writers (the
//! server signals each listening session per commit) and the listener for nothing: while
//! none waits, the listener stops listening at the next notification, and listens again (and
//! wakes every subscription, for the commits in between) when one begins to wait.
//!
//! Looks are taken together: the listener answers every look asked since its last one with one
//! round trip on its own connection, so subscriptions that follow the log cost the server one
//! transaction per look, not one each. A look that finds no settled event for its
//! subscription while the log moves on stands: the listener takes it again next round
//! instead of waking the subscription for nothing, and answers it once its page holds an
//! event, or once a round settles nothing new.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_postgres::Row;

use crate::error::{Error, Result};
use crate::sql::param::Statement;

/// Where a store's subscriptions find their listener's [`Wakes`], while it runs.
pub(crate) type Wakeups = Arc<Mutex<Weak<Wakes>>>;

#[derive(Debug)]
pub(crate) struct Wakes {
    sender: watch::Sender<u64>,
    waiting: AtomicUsize,
    /// Tells the listener that a subscription began to wait.
    began: Notify,
    asks: mpsc::UnboundedSender<Ask>,
}

/// A subscription's look at the log: the statement of its next page, read from its position
/// up to any number (it keeps what the answer settles).
#[derive(Debug)]
pub(crate) struct Ask {
    pub page: Statement,
    /// A head the subscription found since its last look: a position below which every
    /// number is settled.
    pub head: Option<i64>,
    pub answer: oneshot::Sender<Result<Look>>,
}

/// What a look found.
#[derive(Debug)]
pub(crate) struct Look {
    /// The position below which every number is settled; `None` when the head must tell (a
    /// long backlog, a number missing for long, a listener that has just begun).
    pub settled: Option<i64>,
    /// Whether a number above it is missing (in flight, or drawn by an append that rolled
    /// back).
    pub gap: bool,
    /// The page's rows.
    pub rows: Vec<Row>,
}

impl Wakes {
    /// The shared part, and the queue of looks for the listener.
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<Ask>) {
        let (asks, queue) = mpsc::unbounded_channel();
        let wakes = Self {
            sender: watch::channel(0).0,
            waiting: AtomicUsize::new(0),
            began: Notify::new(),
            asks,
        };
        (wakes, queue)
    }

    /// Wakes every subscription waiting, and makes the next wait of every other return at once.
    pub(crate) fn wake(&self) {
        self.sender.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver of the wake-ups, for a new subscription.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.sender.subscribe()
    }

    /// Until the last subscription is closed or dropped (see `Subscription::release`).
    pub(crate) async fn closed(&self) {
        self.sender.closed().await;
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Counts a subscription as waiting until the returned guard is dropped.
    pub(crate) fn waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.began.notify_one();
        Waiting(self)
    }

    pub(crate) fn any_waiting(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// Until a subscription begins to wait (at once if one did since the last call).
    pub(crate) async fn one_began(&self) {
        self.began.notified().await;
    }

    /// A look at the log, answered by the listener with the others asked meanwhile.
    pub(crate) async fn look(&self, page: Statement, head: Option<i64>) -> Result<Look> {
        let (answer, answered) = oneshot::channel();
        self.asks
            .send(Ask { page, head, answer })
            .map_err(|_| Error::Closed)?;
        answered.await.map_err(|_| lost())?
    }
}

/// The answer to a look the listener could not give: its connection went.
pub(crate) fn lost() -> Error {
    Error::Connection {
        message: "the subscriptions' connection was lost".to_owned(),
        os_error: None,
    }
}

pub(crate) struct Waiting<'a>(&'a Wakes);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}
