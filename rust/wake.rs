//! What a store's subscriptions share with the one listener that wakes them
//! ([`crate::subscription`]): a counter bumped per notification, and how many subscriptions
//! are waiting for one.
//!
//! The listener listens only while some subscription waits. A subscription that finds commits
//! at every look does not wait, and then every notification would cost the writers (the
//! server signals each listening session per commit) and the listener for nothing: while
//! none waits, the listener stops listening at the next notification, and listens again (and
//! wakes every subscription, for the commits in between) when one begins to wait.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{watch, Notify};

/// Where a store's subscriptions find their listener's [`Wakes`], while it runs.
pub(crate) type Wakeups = Arc<Mutex<Weak<Wakes>>>;

#[derive(Debug)]
pub(crate) struct Wakes {
    sender: watch::Sender<u64>,
    waiting: AtomicUsize,
    /// Tells the listener that a subscription began to wait.
    began: Notify,
}

impl Wakes {
    pub(crate) fn new() -> Self {
        Self {
            sender: watch::channel(0).0,
            waiting: AtomicUsize::new(0),
            began: Notify::new(),
        }
    }

    /// Wakes every subscription waiting, and makes the next wait of every other return at once.
    pub(crate) fn wake(&self) {
        self.sender.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver of the wake-ups, for a new subscription.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.sender.subscribe()
    }

    /// Until the last subscription is dropped.
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
}

pub(crate) struct Waiting<'a>(&'a Wakes);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}
