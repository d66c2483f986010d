//! Connections: a lazily filled pool per DSN, a connection that is discarded (its statement
//! cancelled) unless its call finished, and one transaction sent as one pipeline.

use deadpool_postgres::{Manager, ManagerConfig, Object, QueueMode, RecyclingMethod};
use std::time::Duration;
use tokio::runtime::RuntimeFlavor;
use tokio_postgres::{CancelToken, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::connect::Connector;
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

/// A lazily filled pool of connections to one DSN's server.
pub struct Pool {
    inner: deadpool_postgres::Pool,
    /// Where it connects, for messages: hosts and ports, never credentials.
    pub server: String,
    /// What cancels a statement (over TLS when its connection used TLS).
    tls: MakeRustlsConnect,
}

impl Pool {
    pub fn new(dsn: &str, limits: PoolLimits) -> Result<Self> {
        let split = dsn::split(dsn)?;
        let mut pg: tokio_postgres::Config =
            split.rest.parse().map_err(|e: tokio_postgres::Error| {
                // The parser's messages may quote the DSN, and with it a password: only those
                // that name an option (never its value) are passed on.
                let named = std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .filter(|m| {
                        m.starts_with("unknown option") || m.starts_with("invalid value for option")
                    });
                Error::invalid(match named {
                    Some(reason) => format!("invalid DSN: {reason}"),
                    None => "invalid DSN: expected postgresql://user:password@host:port/dbname or \
                             key=value pairs"
                        .to_owned(),
                })
            })?;
        if pg.get_application_name().is_none() {
            pg.application_name("dynamic-streams");
        }
        // Every statement is a cached prepared statement whose best plan does not depend on
        // its values (key index lookups, then primary-key fetches): plan once per connection
        // instead of once per call. Measured: about a third of a query's time at 100k events.
        let options = match pg.get_options() {
            Some(given) => format!("{given} -c plan_cache_mode=force_generic_plan"),
            None => "-c plan_cache_mode=force_generic_plan".to_owned(),
        };
        pg.options(options);
        if let (Some(t), None) = (limits.connect_timeout, pg.get_connect_timeout()) {
            pg.connect_timeout(t);
        }
        let connector = Connector::new(&split, &mut pg)?;
        let tls = connector.tls();
        let server = server(&pg);
        let manager = Manager::from_connect(
            pg,
            connector,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let inner = deadpool_postgres::Pool::builder(manager)
            .max_size(limits.size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(limits.wait_timeout)
            // The most recently used connection first: its backend's caches are warm, and idle
            // connections beyond what the load needs stay idle.
            .queue_mode(QueueMode::Lifo)
            .build()
            .map_err(|e| Error::invalid(format!("cannot build the connection pool: {e}")))?;
        Ok(Self { inner, server, tls })
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
        match inner.get().await {
            Ok(obj) => Ok(Self {
                obj: Some(obj),
                tls: pool.tls.clone(),
            }),
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

    /// Runs `statement` in one transaction begun by `begin_sql`, after `lock` when given, as one
    /// pipeline: `BEGIN; [LOCK;] statement; COMMIT` are sent together and answered in order.
    pub async fn transaction(
        &self,
        begin_sql: &str,
        lock: Option<&Statement>,
        statement: &Statement,
    ) -> Result<Vec<Row>> {
        let client = self.client()?;
        let stmt = self.prepare(&statement.sql).await?;
        let lock = match lock {
            Some(lock) => Some((self.prepare(&lock.sql).await?, lock.args())),
            None => None,
        };
        let args = statement.args();
        let (began, locked, rows, committed) = tokio::join!(
            client.batch_execute(begin_sql),
            async {
                match &lock {
                    Some((lock_stmt, lock_args)) => {
                        client.execute(lock_stmt, lock_args).await.map(drop)
                    }
                    None => Ok(()),
                }
            },
            client.query(&stmt, &args),
            client.batch_execute("COMMIT"),
        );
        began?;
        locked?;
        let rows = rows?;
        committed?;
        Ok(rows)
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
