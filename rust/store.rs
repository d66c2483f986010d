//! The store: query and guarded append on PostgreSQL through a deadpool of tokio-postgres
//! connections.
//!
//! Each operation is one transaction sent as one pipeline (one network round trip once its
//! statements are prepared on the connection): `BEGIN; take the guard's locks; read or
//! guarded insert; COMMIT`. A call that is dropped mid-flight (timeout, Ctrl-C, a cancelled
//! asyncio task) cancels its statement on the server and closes its connection instead of
//! returning it to the pool, so nothing is half-written and the pool stays usable.

use std::future::Future;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use tokio_postgres::types::Json;
use tokio_postgres::Row;

use crate::error::{Error, Result};
use crate::event::{RecordedEvent, StorableEvent};
use crate::filter::Filter;
use crate::guard;
use crate::input::{contains_nul, reject_nul};
use crate::keys;
use crate::pool::{Conn, Failure, Pool, PoolLimits, Retry, Role};
use crate::sql::ddl;
use crate::sql::param::Statement;
use crate::sql::statements as sql;
use crate::table::TableName;
use crate::time;

/// The largest pool: far above PostgreSQL's default `max_connections` (100).
pub const MAX_POOL_SIZE: usize = 1000;

/// How to reach the database and where the events live.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// A libpq-style DSN: `postgresql://user:pass@host:port/db?...` or `host=... user=...`.
    pub dsn: String,
    pub table: TableName,
    /// Most connections held open at once.
    pub pool_size: usize,
    /// The default time limit of one call (connecting included); `None` waits forever.
    pub timeout: Option<Duration>,
    /// Where snapshots live; `None`: `<table>_snapshots` beside the events.
    pub snapshot_table: Option<TableName>,
    /// A read replica for reads that accept eventual consistency; `None`: the primary.
    pub replica_dsn: Option<String>,
    /// Longest a call waits for a free connection when all `pool_size` are busy; `None`: as
    /// long as the call's own timeout allows.
    pub pool_timeout: Option<Duration>,
}

/// The time limit of one call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Timeout {
    /// The store's default, [`StoreConfig::timeout`].
    #[default]
    StoreDefault,
    /// No limit, whatever the store's default.
    Unlimited,
    /// This limit.
    After(Duration),
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// From the primary, behind the guard's locks: every event committed before the read
    /// that matches the filter is seen.
    #[default]
    Strong,
    /// From the replica when one is configured and reachable (else the primary): may lag,
    /// and reads no locks. For views, not for decisions.
    Eventual,
}

/// The state of a projection over a filter's events, as of a sequence number.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub projection_type: String,
    pub filter_hash: String,
    pub sequence_number: i64,
    pub data: Value,
    /// Microseconds since the Unix epoch, UTC.
    pub created_at: i64,
}

fn snapshot_key(projection_type: &str, filter_hash: &str) -> Result<()> {
    for (what, value) in [
        ("projection type", projection_type),
        ("filter hash", filter_hash),
    ] {
        reject_nul(&format!("the {what}"), value)?;
        if value.trim().is_empty() {
            return Err(Error::invalid(format!("the {what} must not be empty")));
        }
    }
    Ok(())
}

/// Runs `attempt`, and once more (on a fresh connection) when its failure allows it: when it
/// provably never ran on the server, or, for a read (`idempotent`), when its connection broke.
async fn once_more<T, Fut>(idempotent: bool, attempt: impl Fn() -> Fut) -> Result<T>
where
    Fut: Future<Output = Result<T, Failure>>,
{
    match attempt().await {
        Err(f) if f.retry == Retry::Yes || (idempotent && f.retry == Retry::IfIdempotent) => {
            Ok(attempt().await?)
        }
        done => Ok(done?),
    }
}

/// The events matching a filter, in ascending sequence order, and the highest sequence
/// number among them (0 when none).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryResult {
    pub events: Vec<RecordedEvent>,
    pub max_sequence_number: i64,
    /// Whether the replica served the read.
    pub from_replica: bool,
}

/// A DCB event store on one PostgreSQL table.
pub struct EventStore {
    pool: Pool,
    replica: Option<Pool>,
    table: TableName,
    snapshots: TableName,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the DSN: it may hold a password.
        f.debug_struct("EventStore")
            .field("table", &self.table.qualified())
            .finish_non_exhaustive()
    }
}

/// The `BEGIN` of an operation's transaction.
///
/// Always READ COMMITTED, whatever the server, role or DSN sets as default: the guard
/// relies on each statement seeing what the transactions whose locks it waited for
/// committed (docs/guard.md). Under REPEATABLE READ or SERIALIZABLE the snapshot would be
/// taken when the lock statement starts, before the wait.
///
/// Most statements have one good plan whatever their values, and the connections plan them
/// once (generic plans); the others ([`Statement::plan_per_call`]) are planned for their
/// values.
fn begin(read_only: bool, statement: &Statement) -> &'static str {
    match (read_only, statement.plan_per_call) {
        (false, false) => "BEGIN ISOLATION LEVEL READ COMMITTED",
        (true, false) => "BEGIN ISOLATION LEVEL READ COMMITTED, READ ONLY",
        (false, true) => {
            "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL plan_cache_mode = force_custom_plan"
        }
        (true, true) => {
            "BEGIN ISOLATION LEVEL READ COMMITTED, READ ONLY; \
             SET LOCAL plan_cache_mode = force_custom_plan"
        }
    }
}

fn recorded(row: &Row) -> Result<RecordedEvent> {
    Ok(RecordedEvent {
        sequence_number: row.try_get(0)?,
        occurred_at: time::from_system_time(row.try_get::<_, SystemTime>(1)?),
        event_type: row.try_get(2)?,
        payload: row.try_get::<_, Json<Map<String, Value>>>(3)?.0,
        metadata: row.try_get::<_, Json<Map<String, Value>>>(4)?.0,
    })
}

impl EventStore {
    /// Creates the store and its (lazily filled) connection pools. No I/O happens here.
    pub fn new(config: StoreConfig) -> Result<Self> {
        if !(1..=MAX_POOL_SIZE).contains(&config.pool_size) {
            return Err(Error::invalid(format!(
                "pool_size must be between 1 and {MAX_POOL_SIZE}"
            )));
        }
        let limits = PoolLimits {
            size: config.pool_size,
            connect_timeout: config.timeout,
            wait_timeout: config.pool_timeout,
        };
        let replica = config
            .replica_dsn
            .as_deref()
            .map(|dsn| Pool::new(dsn, limits, Role::Replica))
            .transpose()?;
        Ok(Self {
            pool: Pool::new(&config.dsn, limits, Role::Primary)?,
            replica,
            snapshots: config
                .snapshot_table
                .unwrap_or_else(|| config.table.snapshots()),
            table: config.table,
            timeout: config.timeout,
        })
    }

    pub fn table(&self) -> &TableName {
        &self.table
    }

    pub fn snapshot_table(&self) -> &TableName {
        &self.snapshots
    }

    /// Closes the pool: open connections are dropped, later calls fail with [`Error::Closed`].
    pub fn close(&self) {
        self.pool.close();
        if let Some(replica) = &self.replica {
            replica.close();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }

    async fn timed<T>(&self, timeout: Timeout, op: impl Future<Output = Result<T>>) -> Result<T> {
        let limit = match timeout {
            Timeout::StoreDefault => self.timeout,
            Timeout::Unlimited => None,
            Timeout::After(limit) => Some(limit),
        };
        let result = match limit {
            Some(limit) => tokio::time::timeout(limit, op)
                .await
                .map_err(|_| Error::Timeout(limit))?,
            None => op.await,
        };
        result.map_err(|e| self.explained(e))
    }

    /// `err` with what the store knows and the driver does not: where the server is, and
    /// that a missing table is created by `create_schema`.
    fn explained(&self, err: Error) -> Error {
        match err {
            Error::Connection { message, os_error } => Error::Connection {
                message: format!("{message} (server: {})", self.pool.server),
                os_error,
            },
            Error::Database {
                sqlstate,
                message,
                detail,
            } if sqlstate == "42P01" => Error::Database {
                message: format!(
                    "{message}: the store's tables do not exist; call create_schema() first"
                ),
                sqlstate,
                detail,
            },
            other => other,
        }
    }

    async fn conn(&self) -> Result<Conn> {
        Conn::get(&self.pool).await
    }

    /// A connection for a read, and whether it is the replica's: an eventual read goes to
    /// the replica when one is configured and can be reached right now, every other read to
    /// the primary.
    async fn read_conn(&self, consistency: Consistency) -> Result<(Conn, bool)> {
        if let Some(replica) = self
            .replica
            .as_ref()
            .filter(|r| consistency == Consistency::Eventual && r.is_up())
        {
            match Conn::get(replica).await {
                Ok(conn) => return Ok((conn, true)),
                Err(Error::Closed) => return Err(Error::Closed),
                // Unreachable (or hung): left alone for a while. Saturated: just not now.
                Err(e) if e.is_disconnect() => replica.went_down(),
                Err(_) => {}
            }
        }
        Ok((self.conn().await?, false))
    }

    /// Runs one statement outside any explicit transaction, returning how many rows it
    /// affected.
    async fn execute(&self, statement: &Statement) -> Result<u64> {
        let conn = self.conn().await?;
        let prepared = conn.prepare(&statement.sql).await?;
        let affected = conn.client()?.execute(&prepared, &statement.args()).await?;
        conn.release();
        Ok(affected)
    }

    /// Creates the table and its indexes if they do not exist, and brings a schema made by
    /// an earlier version up to date. Safe to run concurrently, and while the store is in
    /// use: when the schema is current it only reads the catalog.
    pub async fn create_schema(&self, timeout: Timeout) -> Result<()> {
        self.timed(timeout, async {
            let conn = self.conn().await?;
            let client = conn.client()?;
            let state = |statement: Statement| async move {
                let row = client.query_one(&statement.sql, &statement.args()).await?;
                Ok::<_, Error>(ddl::SchemaState {
                    events: row.try_get(0)?,
                    keys: row.try_get(1)?,
                    keys_tid: row.try_get(2)?,
                    type_index: row.try_get(3)?,
                    time_index: row.try_get(4)?,
                    snapshots: row.try_get(5)?,
                    append_only: row.try_get(6)?,
                })
            };
            let read = || ddl::SchemaState::query(&self.table, &self.snapshots);
            if !state(read()).await?.is_current() {
                let lock = sql::lock_schema(&self.table);
                client.execute(&lock.sql, &lock.args()).await?;
                // Another process may have finished the work while this one waited.
                for step in state(read()).await?.upgrade(&self.table, &self.snapshots) {
                    client.batch_execute(&step).await?;
                }
                let unlock = sql::unlock_schema(&self.table);
                client.execute(&unlock.sql, &unlock.args()).await?;
            }
            conn.release();
            Ok(())
        })
        .await
    }

    /// Saves `data` as the snapshot of `projection_type` over the filter with `filter_hash`,
    /// as of `sequence_number`, unless a snapshot with a higher sequence number is stored.
    /// Returns whether it was saved.
    pub async fn save_snapshot(
        &self,
        projection_type: &str,
        filter_hash: &str,
        sequence_number: i64,
        data: Value,
        timeout: Timeout,
    ) -> Result<bool> {
        snapshot_key(projection_type, filter_hash)?;
        if contains_nul(&data) {
            return Err(Error::invalid("the snapshot data contains a NUL character"));
        }
        if sequence_number < 0 {
            return Err(Error::invalid("the sequence number must not be negative"));
        }
        let save = sql::save_snapshot(
            &self.snapshots,
            projection_type,
            filter_hash,
            sequence_number,
            data,
        );
        self.timed(timeout, async { Ok(self.execute(&save).await? == 1) })
            .await
    }

    /// The snapshot of `projection_type` over the filter with `filter_hash`, if any.
    pub async fn load_snapshot(
        &self,
        projection_type: &str,
        filter_hash: &str,
        consistency: Consistency,
        timeout: Timeout,
    ) -> Result<Option<Snapshot>> {
        snapshot_key(projection_type, filter_hash)?;
        let load = sql::load_snapshot(&self.snapshots, projection_type, filter_hash);
        self.timed(timeout, async {
            let row = once_more(true, || async {
                let (conn, _) = self
                    .read_conn(consistency)
                    .await
                    .map_err(Failure::connecting)?;
                let prepared = conn.prepare(&load.sql).await?;
                let row = conn
                    .client()?
                    .query_opt(&prepared, &load.args())
                    .await
                    .map_err(Error::from)?;
                conn.release();
                Ok(row)
            })
            .await?;
            row.map(|r| {
                Ok(Snapshot {
                    projection_type: projection_type.to_owned(),
                    filter_hash: filter_hash.to_owned(),
                    sequence_number: r.try_get(0)?,
                    data: r.try_get::<_, Json<Value>>(1)?.0,
                    created_at: time::from_system_time(r.try_get::<_, SystemTime>(2)?),
                })
            })
            .transpose()
        })
        .await
    }

    /// Deletes the snapshot, if any (deleting twice is fine). Returns whether one was deleted.
    pub async fn delete_snapshot(
        &self,
        projection_type: &str,
        filter_hash: &str,
        timeout: Timeout,
    ) -> Result<bool> {
        snapshot_key(projection_type, filter_hash)?;
        let delete = sql::delete_snapshot(&self.snapshots, projection_type, filter_hash);
        self.timed(timeout, async { Ok(self.execute(&delete).await? == 1) })
            .await
    }

    /// Drops the table, its key index, its sequence and its snapshots. For tests and tooling.
    pub async fn drop_table(&self, timeout: Timeout) -> Result<()> {
        self.timed(timeout, async {
            let conn = self.conn().await?;
            conn.client()?
                .batch_execute(&sql::drop_tables(&self.table, &self.snapshots))
                .await?;
            conn.release();
            Ok(())
        })
        .await
    }

    /// The events matching `filter`, in sequence order, with the highest sequence number.
    pub async fn query(
        &self,
        filter: &Filter,
        consistency: Consistency,
        timeout: Timeout,
    ) -> Result<QueryResult> {
        // One derivation of the filter's keys serves the SQL, the locks and the plan choice.
        let lookup = keys::lookup(&self.table, filter);
        let select = sql::query(&self.table, filter, lookup.as_ref()).within_limits()?;
        let begin = begin(true, &select);
        // A strong read locks its filter's keys (it must read a complete prefix); an eventual
        // read takes no locks, on the replica or on the primary it falls back to.
        let lock = (consistency == Consistency::Strong)
            .then(|| sql::lock(guard::for_read(&self.table, lookup.as_ref())));
        self.timed(timeout, async {
            let (rows, from_replica) = once_more(true, || async {
                let (conn, from_replica) = self
                    .read_conn(consistency)
                    .await
                    .map_err(Failure::connecting)?;
                let rows = conn.transaction(begin, lock.as_ref(), &select).await?;
                conn.release();
                Ok((rows, from_replica))
            })
            .await?;
            let events = rows.iter().map(recorded).collect::<Result<Vec<_>>>()?;
            let max_sequence_number = events.last().map_or(0, |e| e.sequence_number);
            Ok(QueryResult {
                events,
                max_sequence_number,
                from_replica,
            })
        })
        .await
    }

    /// Appends `events` (all or none) if no event matching `filter` has a sequence number
    /// above `expected_max_sequence_number`; returns the assigned sequence numbers in order.
    pub async fn append(
        &self,
        filter: &Filter,
        expected_max_sequence_number: i64,
        events: &[StorableEvent],
        timeout: Timeout,
    ) -> Result<Vec<i64>> {
        if events.is_empty() {
            return Err(Error::invalid("append needs at least one event"));
        }
        if expected_max_sequence_number < 0 {
            return Err(Error::invalid(
                "expected_max_sequence_number must not be negative",
            ));
        }
        let lookup = keys::lookup(&self.table, filter);
        let insert = sql::guarded_insert(
            &self.table,
            filter,
            lookup.as_ref(),
            expected_max_sequence_number,
            events,
        )
        .within_limits()?;
        let lock = sql::lock(guard::for_append(&self.table, lookup.as_ref(), events));
        let begin = begin(false, &insert);
        self.timed(timeout, async {
            let rows = once_more(false, || async {
                let conn = self.conn().await.map_err(Failure::connecting)?;
                let rows = conn.transaction(begin, Some(&lock), &insert).await?;
                conn.release();
                Ok(rows)
            })
            .await?;
            if rows.is_empty() {
                return Err(Error::ConcurrencyConflict {
                    expected: expected_max_sequence_number,
                });
            }
            Ok(rows
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<Vec<i64>, _>>()?)
        })
        .await
    }
}
