//! Connections: a lazily filled pool per DSN (the primary's, or a replica's with its
//! back-off), a connection that is discarded (its statement cancelled) unless its call
//! finished, and one transaction sent as one pipeline, with whether a failed one may be sent
//! again.

use deadpool_postgres::{Manager, ManagerConfig, Object, QueueMode, RecyclingMethod};
use futures_util::StreamExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::RuntimeFlavor;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, CancelToken, Client, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::connect::{Connection, Connector, Pooled};
use crate::dsn;
use crate::error::{Error, Result};
use crate::sql::param::Statement;

/// Where `config` connects, for messages: hosts and ports, never credentials.
fn server(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| match host {
            tokio_postgres::config::Host::Tcp(name) => format!("{name}:{}", port(i)),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(dir) => {
                format!("{}/.s.PGSQL.{}", dir.display(), port(i))
            }
        })
        .collect();
    if hosts.is_empty() {
        "the default host".to_owned()
    } else {
        hosts.join(", ")
    }
}

/// How big a pool is and how long it waits.
#[derive(Clone, Copy, Debug)]
pub struct PoolLimits {
    /// Most connections open at once.
    pub size: usize,
    /// Longest wait for a new connection to open.
    pub connect_timeout: Option<Duration>,
    /// Longest wait for a free connection when all are busy.
    pub wait_timeout: Option<Duration>,
}

/// What a pool's server is to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Every call needs it: a new connection waits out a restart or failover
    /// ([`crate::connect::RESTART_WINDOW`]).
    Primary,
    /// Eventual reads use it while it answers, and fall back to the primary: connecting
    /// gives up after [`REPLICA_CONNECT_TIMEOUT`], and a replica found unreachable is left
    /// alone for a back-off (1 s, doubling up to 30 s) before it is tried again.
    Replica,
}

/// The longest a replica connection may take to open (hung servers included).
pub const REPLICA_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Until when a server found unreachable is left alone, and the next pause.
struct Backoff {
    until: Option<Instant>,
    pause: Duration,
}

/// A lazily filled pool of connections to one DSN's server.
pub struct Pool {
    inner: deadpool_postgres::Pool,
    /// Where it connects, for messages: hosts and ports, never credentials.
    pub server: String,
    /// What cancels a statement (over TLS when its connection used TLS).
    tls: MakeRustlsConnect,
    /// A replica's back-off; the primary has none.
    backoff: Option<Mutex<Backoff>>,
    /// What the pool opens its connections with, for connections of their own.
    dialer: Dialer,
}

/// A pool's connections at one moment (see [`Pool::status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections open, idle or in use.
    pub open: usize,
    /// Open connections no call is using.
    pub idle: usize,
    /// Calls waiting for a connection.
    pub waiting: usize,
    /// The most connections the pool opens.
    pub max_size: usize,
}

/// Opens connections outside the pool, for sessions of their own (a subscriber's `LISTEN`,
/// a vacuum), with the pool's settings, and counts those open.
#[derive(Clone)]
pub struct Dialer {
    config: tokio_postgres::Config,
    connector: Arc<Connector>,
    open: Arc<AtomicUsize>,
}

/// A connection a [`Dialer`] opened, counted as open until it is dropped.
pub struct OwnConnection {
    connection: Connection,
    open: Arc<AtomicUsize>,
}

impl OwnConnection {
    /// Polls the connection's I/O: the next message the server sent outside any statement's
    /// answer (a notice, a notification), or its end.
    pub fn poll_message(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<AsyncMessage, tokio_postgres::Error>>> {
        self.connection.poll_message(cx)
    }
}

impl Drop for OwnConnection {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the configuration: it may hold a password.
        f.debug_struct("Dialer").finish_non_exhaustive()
    }
}

impl Dialer {
    /// A connection, whose I/O the caller polls.
    pub async fn open(&self) -> Result<(Client, OwnConnection)> {
        let (client, connection) = self.connector.open(&self.config).await?;
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok((
            client,
            OwnConnection {
                connection,
                open: Arc::clone(&self.open),
            },
        ))
    }
}

impl Pool {
    pub fn new(dsn: &str, limits: PoolLimits, role: Role) -> Result<Self> {
        let split = dsn::split(dsn)?;
        let mut pg = split.config()?;
        if pg.get_application_name().is_none() {
            pg.application_name("dynamic-streams");
        }
        // Every statement is a cached prepared statement whose best plan does not depend on
        // its values (key index lookups, then primary-key fetches): plan once per connection
        // instead of once per call. Measured: about a third of a query's time at 100k events.
        // And no statement of the store reads a whole table: each has an index path, which a
        // plan made while the table was small would pass over for a sequential scan, and keep
        // until the table is next analyzed (a store filled from empty ran a query's events
        // through a scan of the whole table, a millisecond and a half at 10,000 events,
        // growing with it, until then).
        let ours = "-c plan_cache_mode=force_generic_plan -c enable_seqscan=off";
        let options = match pg.get_options() {
            Some(given) => format!("{given} {ours}"),
            None => ours.to_owned(),
        };
        pg.options(options);
        let connect_timeout = match role {
            Role::Primary => limits.connect_timeout,
            Role::Replica => Some(REPLICA_CONNECT_TIMEOUT),
        };
        if let (Some(t), None) = (connect_timeout, pg.get_connect_timeout()) {
            pg.connect_timeout(t);
        }
        let connector = Arc::new(Connector::new(&split, &mut pg, role == Role::Primary)?);
        let tls = connector.tls();
        let server = server(&pg);
        let manager = Manager::from_connect(
            pg.clone(),
            Pooled(Arc::clone(&connector)),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let inner = deadpool_postgres::Pool::builder(manager)
            .max_size(limits.size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(limits.wait_timeout)
            // A replica's whole connect, startup included: a server that accepts the socket
            // and then hangs must not hold an eventual read.
            .create_timeout((role == Role::Replica).then_some(REPLICA_CONNECT_TIMEOUT))
            // The most recently used connection first: its backend's caches are warm, and idle
            // connections beyond what the load needs stay idle.
            .queue_mode(QueueMode::Lifo)
            .build()
            .map_err(|e| Error::invalid(format!("cannot build the connection pool: {e}")))?;
        let backoff = (role == Role::Replica).then(|| {
            Mutex::new(Backoff {
                until: None,
                pause: Duration::from_secs(1),
            })
        });
        Ok(Self {
            inner,
            server,
            tls,
            backoff,
            dialer: Dialer {
                config: pg,
                connector,
                open: Arc::default(),
            },
        })
    }

    fn backoff(&self) -> Option<std::sync::MutexGuard<'_, Backoff>> {
        self.backoff
            .as_ref()
            .map(|b| b.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Whether the server is worth trying now: not found unreachable within its back-off.
    pub fn is_up(&self) -> bool {
        self.backoff()
            .is_none_or(|b| b.until.is_none_or(|until| Instant::now() >= until))
    }

    /// The server could not be reached: leave it alone for the next pause.
    pub fn went_down(&self) {
        if let Some(mut b) = self.backoff() {
            b.until = Some(Instant::now() + b.pause);
            b.pause = (b.pause * 2).min(MAX_BACKOFF);
        }
    }

    fn came_up(&self) {
        if let Some(mut b) = self.backoff() {
            if b.until.is_some() {
                *b = Backoff {
                    until: None,
                    pause: Duration::from_secs(1),
                };
            }
        }
    }

    pub fn dialer(&self) -> Dialer {
        self.dialer.clone()
    }

    /// How many connections opened outside the pool with its settings ([`Dialer`]) are
    /// open now.
    pub fn own_connections(&self) -> usize {
        self.dialer.open.load(Ordering::Relaxed)
    }

    /// Its connections now: open, idle, callers waiting for one, and the most it opens.
    pub fn status(&self) -> PoolStatus {
        let s = self.inner.status();
        PoolStatus {
            open: s.size,
            idle: s.available,
            waiting: s.waiting,
            max_size: s.max_size,
        }
    }

    /// Closes the pool: open connections are dropped, later calls fail with [`Error::Closed`].
    pub fn close(&self) {
        self.inner.close();
    }

    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
}

/// Most prepared statements one connection keeps. Past it the connection's cache is
/// emptied, which deallocates them on the server: each filter shape is a statement, and a
/// backend's memory must not grow with the shapes an application ever used.
pub const MAX_CACHED_STATEMENTS: usize = 256;

/// A pooled connection that is discarded, with its running statement cancelled, unless the
/// operation using it finished.
pub struct Conn {
    obj: Option<Object>,
    tls: MakeRustlsConnect,
}

impl Conn {
    /// A connection from `pool`.
    pub async fn get(pool: &Pool) -> Result<Self> {
        let inner = &pool.inner;
        if inner.is_closed() {
            return Err(Error::Closed);
        }
        // Two turns of the runtime first. The synchronous store's runtime runs only while a
        // call waits, so idle connections have not yet read what the server sent them (a
        // restart's "terminating connection"): the first turn has the I/O driver report it,
        // the second runs their tasks, which close them, and the pool's check (is the client
        // closed?) then discards them instead of failing this call. A few microseconds.
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        match inner.get().await {
            Ok(obj) => {
                pool.came_up();
                Ok(Self {
                    obj: Some(obj),
                    tls: pool.tls.clone(),
                })
            }
            Err(deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)) => {
                Err(Error::PoolExhausted {
                    size: inner.status().max_size,
                    waited: inner.timeouts().wait.unwrap_or_default(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn client(&self) -> Result<&Object> {
        self.obj.as_ref().ok_or(Error::Closed)
    }

    /// `sql` prepared on this connection, from its bounded cache.
    pub async fn prepare(&self, sql: &str) -> Result<tokio_postgres::Statement> {
        let client = self.client()?;
        if client.statement_cache.size() >= MAX_CACHED_STATEMENTS {
            client.statement_cache.clear();
        }
        Ok(client.prepare_cached(sql).await?)
    }

    /// The operation ran to its end: the connection is idle again and goes back to the pool.
    pub fn release(mut self) {
        drop(self.obj.take());
    }

    /// Runs `statements` in one transaction begun by `begin_sql` and ended by `commit_sql`
    /// (see `commit`), as one pipeline: sent together and answered in order. Returns each
    /// statement's rows.
    pub async fn transaction(
        &self,
        begin_sql: &str,
        statements: &[&Statement],
        commit_sql: &str,
    ) -> Result<Vec<Vec<Row>>, Failure> {
        // Until the pipeline is sent, nothing of the transaction can have run.
        let never_ran = |error: Error| Failure {
            retry: if error.is_disconnect() {
                Retry::Yes
            } else {
                Retry::No
            },
            error,
        };
        let client = self.client().map_err(never_ran)?;
        let mut prepared = Vec::with_capacity(statements.len());
        for s in statements {
            prepared.push((self.prepare(&s.sql).await.map_err(never_ran)?, s.args()));
        }
        let (began, rows, committed) = pipeline(client, begin_sql, &prepared, commit_sql).await;
        // The server answers in order: when its answer to BEGIN is an error (a session it was
        // ending), it ran nothing after it. A connection that just closed proves nothing: the
        // server may have committed before its answers were lost.
        began.map_err(|e| {
            if e.as_db_error().is_some() {
                never_ran(e.into())
            } else {
                Failure::from(Error::from(e))
            }
        })?;
        let ran = |e: tokio_postgres::Error| Failure::from(Error::from(e));
        let rows = rows
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(ran)?;
        committed.map_err(ran)?;
        Ok(rows)
    }
}

/// A prepared statement and its parameters.
pub(crate) type Bound<'a> = (tokio_postgres::Statement, Vec<&'a (dyn ToSql + Sync)>);

/// The server's answers to a [`pipeline`]: to `BEGIN`, to each statement, to `COMMIT`.
pub(crate) type Answers = (
    Result<(), tokio_postgres::Error>,
    Vec<Result<Vec<Row>, tokio_postgres::Error>>,
    Result<(), tokio_postgres::Error>,
);

/// `BEGIN; statements; COMMIT` on `client`, sent together and answered in order.
pub(crate) async fn pipeline(
    client: &Client,
    begin_sql: &str,
    statements: &[Bound<'_>],
    commit_sql: &str,
) -> Answers {
    // Polled in order, so sent in order: one pipeline.
    tokio::join!(
        client.batch_execute(begin_sql),
        futures_util::future::join_all(statements.iter().map(|(s, a)| client.query(s, a))),
        commit(client, commit_sql),
    )
}

/// Sends `commit_sql`, a `COMMIT` and what is to run on its own after it (`COMMIT; NOTIFY
/// ...`), as one message, and answers for the `COMMIT`: the server skips the rest when the
/// commit fails, and a failure of the rest is ignored. (A transaction a statement's error
/// rolled back commits nothing and fails by that statement; the rest then runs anyway, and
/// a notification for nothing only makes subscribers look.) One message rather than a
/// statement after it spares the server a reply and the client a wake-up.
pub(crate) async fn commit(client: &Client, commit_sql: &str) -> Result<(), tokio_postgres::Error> {
    let answers = client.simple_query_raw(commit_sql).await?;
    futures_util::pin_mut!(answers);
    answers.next().await.transpose()?;
    // The rest is read to its end (the server's answers until it is ready again), or to its
    // first failure: a broken connection fails every read after it.
    while let Some(Ok(_)) = answers.next().await {}
    Ok(())
}

/// Whether a failed call may be made again on another connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// No: it may have run, or it failed for a reason another connection would not change,
    /// or no connection could be had (the pool waited as long as it should).
    No,
    /// If it is a read: its connection broke after it was sent, and it may have run.
    IfIdempotent,
    /// Yes: its connection broke and it provably never ran on the server.
    Yes,
}

/// A failed call on a connection, and whether it may be made again.
#[derive(Debug)]
pub struct Failure {
    pub error: Error,
    pub retry: Retry,
}

impl Failure {
    /// No connection could be had.
    pub fn connecting(error: Error) -> Self {
        Self {
            error,
            retry: Retry::No,
        }
    }
}

/// A failure after the call was sent: it may have run.
impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self {
            retry: if error.is_disconnect() {
                Retry::IfIdempotent
            } else {
                Retry::No
            },
            error,
        }
    }
}

impl From<Failure> for Error {
    fn from(failure: Failure) -> Self {
        failure.error
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(obj) = self.obj.take() else { return };
        let client = Object::take(obj);
        cancel_in_background(client.cancel_token(), self.tls.clone());
        drop(client);
    }
}

/// Asks the server to cancel the connection's running statement (best effort: the connection
/// is closed right after anyway). A multi-thread runtime sends it at once; a current-thread
/// runtime runs tasks only while a caller waits on it, so the request goes from a thread of
/// its own there (a cancelled call is rare, and must not leave its statement running).
fn cancel_in_background(token: CancelToken, tls: MakeRustlsConnect) {
    let cancel = async move {
        let _ = token.cancel_query(tls).await;
    };
    match tokio::runtime::Handle::try_current() {
        Ok(rt) if rt.runtime_flavor() == RuntimeFlavor::MultiThread => {
            rt.spawn(cancel);
        }
        _ => {
            std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(cancel);
                }
            });
        }
    }
}
