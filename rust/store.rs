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

use serde_json::Value;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{FromSql, Json, Type};
use tokio_postgres::Row;

use crate::error::{Error, Result};
use crate::event::{JsonText, RecordedEvent, StorableEvent};
use crate::filter::Filter;
use crate::guard;
use crate::input::{contains_nul, reject_nul};
use crate::keys;
use crate::pool::{commit, Conn, Dialer, Failure, Pool, PoolLimits, PoolStatus, Retry, Role};
use crate::sql::ddl;
use crate::sql::param::Statement;
use crate::sql::statements as sql;
use crate::table::TableName;
use crate::time;
use crate::upkeep::{Background, Upkeep, Vacuums};
use crate::wake::Wakeups;

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
    /// Vacuum the tables in the background after every so many events written (see
    /// [`crate::upkeep`]); `None`: leave them to autovacuum.
    pub vacuum_every: Option<u64>,
    /// Where background work runs and tells its failures; `None`: no vacuum, whatever
    /// `vacuum_every` says.
    pub background: Option<Background>,
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
    pub data: JsonText,
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

fn checkpoint_name(name: &str) -> Result<()> {
    reject_nul("the checkpoint name", name)?;
    if name.trim().is_empty() {
        return Err(Error::invalid("the checkpoint name must not be empty"));
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
    /// How its writes end: `COMMIT`, then its subscribers' `NOTIFY` (made once, here).
    commit_and_notify: String,
    /// The listener its subscriptions share.
    wakeups: Wakeups,
    upkeep: Option<Upkeep>,
}

impl std::fmt::Debug for EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the DSN: it may hold a password.
        f.debug_struct("EventStore")
            .field("table", &self.table.qualified())
            .finish_non_exhaustive()
    }
}

/// What a store holds at one moment: see [`EventStore::stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// The primary's pool.
    pub pool: PoolStatus,
    /// The replica's pool, when the store has one.
    pub replica: Option<PoolStatus>,
    /// The vacuums of its upkeep (none when `vacuum_every` is `None`).
    pub vacuums: Vacuums,
    /// Connections of its own, outside the pools, open now: its subscriptions' listener and
    /// a vacuum at work (at most one of each).
    pub own_connections: usize,
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
pub(crate) fn begin(read_only: bool, statement: &Statement) -> &'static str {
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

/// A `jsonb` column's text, as the server sent it (after the binary format's version byte).
impl<'a> FromSql<'a> for JsonText {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        match raw.split_first() {
            Some((1, text)) => Ok(Self::new(std::str::from_utf8(text)?.to_owned())),
            _ => Err("unsupported jsonb format version".into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }
}

fn recorded(row: &Row) -> Result<RecordedEvent> {
    Ok(RecordedEvent {
        sequence_number: row.try_get(0)?,
        occurred_at: time::from_system_time(row.try_get::<_, SystemTime>(1)?),
        event_type: row.try_get(2)?,
        payload: row.try_get(3)?,
        metadata: row.try_get(4)?,
        id: row.try_get(5)?,
        tags: row.try_get(6)?,
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
        if config.vacuum_every == Some(0) {
            return Err(Error::invalid("vacuum_every must be at least 1"));
        }
        let replica = config
            .replica_dsn
            .as_deref()
            .map(|dsn| Pool::new(dsn, limits, Role::Replica))
            .transpose()?;
        let pool = Pool::new(&config.dsn, limits, Role::Primary)?;
        let upkeep = config
            .vacuum_every
            .zip(config.background)
            .map(|(every, background)| {
                Upkeep::new(&config.table, every, background, pool.dialer())
            });
        Ok(Self {
            pool,
            replica,
            snapshots: config
                .snapshot_table
                .unwrap_or_else(|| config.table.snapshots()),
            commit_and_notify: sql::commit_and_notify(&config.table),
            table: config.table,
            timeout: config.timeout,
            wakeups: Wakeups::default(),
            upkeep,
        })
    }

    pub fn table(&self) -> &TableName {
        &self.table
    }

    /// How long a call may take unless it says otherwise (`None`: no limit).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
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
        if let Some(upkeep) = &self.upkeep {
            upkeep.close();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }

    /// Its pools' connections now, and the vacuums its upkeep ran (no I/O).
    pub fn stats(&self) -> Stats {
        Stats {
            pool: self.pool.status(),
            replica: self.replica.as_ref().map(Pool::status),
            vacuums: self
                .upkeep
                .as_ref()
                .map(Upkeep::vacuums)
                .unwrap_or_default(),
            own_connections: self.pool.own_connections(),
        }
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

    /// Where its subscriptions find their shared listener.
    pub(crate) fn wakeups(&self) -> Wakeups {
        std::sync::Arc::clone(&self.wakeups)
    }

    /// Opens connections of their own to the primary.
    pub(crate) fn dialer(&self) -> Dialer {
        self.pool.dialer()
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
                    event_ids: row.try_get(7)?,
                    checkpoints: row.try_get(8)?,
                    tags: row.try_get(9)?,
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
                    data: r.try_get(1)?,
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

    /// The saved position of the projection `name`, if any.
    pub async fn checkpoint(&self, name: &str, timeout: Timeout) -> Result<Option<i64>> {
        checkpoint_name(name)?;
        let load = sql::load_checkpoint(&self.table, name);
        self.timed(timeout, async {
            let rows = self.read_rows(&load).await?;
            Ok(rows.first().map(|r| r.try_get(0)).transpose()?)
        })
        .await
    }

    /// Saves `position` as the position of the projection `name`, unless a later one is
    /// saved. Returns whether it saved.
    pub async fn save_checkpoint(
        &self,
        name: &str,
        position: i64,
        timeout: Timeout,
    ) -> Result<bool> {
        checkpoint_name(name)?;
        if position < 0 {
            return Err(Error::invalid("the position must not be negative"));
        }
        let save = sql::save_checkpoint(&self.table, name, position);
        self.timed(timeout, async { Ok(self.execute(&save).await? == 1) })
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
                let statements: Vec<&Statement> = lock.iter().chain([&select]).collect();
                let mut rows = conn.transaction(begin, &statements, "COMMIT").await?;
                conn.release();
                Ok((rows.pop().unwrap_or_default(), from_replica))
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
        if expected_max_sequence_number < 0 {
            return Err(Error::invalid(
                "expected_max_sequence_number must not be negative",
            ));
        }
        let lookup = keys::lookup(&self.table, filter);
        let guard = sql::Guard {
            filter,
            lookup: lookup.as_ref(),
            expected: expected_max_sequence_number,
        };
        self.insert(Some(&guard), events, timeout).await
    }

    /// Appends `events` (all or none) whatever is stored: for events no decision guards
    /// (imports, integration events). Returns the assigned sequence numbers in order.
    pub async fn append_unconditionally(
        &self,
        events: &[StorableEvent],
        timeout: Timeout,
    ) -> Result<Vec<i64>> {
        self.insert(None, events, timeout).await
    }

    async fn insert(
        &self,
        guard: Option<&sql::Guard<'_>>,
        events: &[StorableEvent],
        timeout: Timeout,
    ) -> Result<Vec<i64>> {
        if events.is_empty() {
            return Err(Error::invalid("append needs at least one event"));
        }
        let insert = sql::insert(&self.table, guard, events).within_limits()?;
        // Without a guard the events' keys are still locked, in shared mode: a strong read or
        // a guarded append whose filter they match must not run while they are in flight.
        let lock = sql::lock(match guard {
            Some(g) => guard::for_append(&self.table, g.lookup, events),
            None => guard::for_writer(&self.table, events),
        });
        let begin = begin(false, &insert);
        // Events with ids: which are stored already, read in the same transaction.
        let stored = events
            .iter()
            .any(|e| e.id().is_some())
            .then(|| sql::stored_ids(&self.table, events));
        let statements: Vec<&Statement> = [Some(&lock), stored.as_ref(), Some(&insert)]
            .into_iter()
            .flatten()
            .collect();
        let conflict = || Error::ConcurrencyConflict {
            expected: guard.map_or(0, |g| g.expected),
        };
        self.timed(timeout, async {
            let outcome = once_more(false, || async {
                let conn = self.conn().await.map_err(Failure::connecting)?;
                let rows = conn
                    .transaction(begin, &statements, &self.commit_and_notify)
                    .await?;
                conn.release();
                Ok(rows)
            })
            .await;
            let Some(stored) = &stored else {
                let inserted = outcome?.pop().unwrap_or_default();
                if inserted.is_empty() {
                    return Err(conflict());
                }
                return numbers(&inserted);
            };
            let (inserted, found) = match outcome {
                Ok(mut rows) => (
                    rows.pop().unwrap_or_default(),
                    rows.pop().unwrap_or_default(),
                ),
                // Another append stored one of the ids first, and committed while this one
                // waited to insert it.
                Err(e) if e.sqlstate() == Some(UNIQUE_VIOLATION) => (vec![], vec![]),
                Err(e) => return Err(e),
            };
            if !found.is_empty() {
                return already_stored(&found, events.len());
            }
            if !inserted.is_empty() {
                return numbers(&inserted);
            }
            // Nothing stored: the guard failed, or another append stored one of the ids and
            // committed after this one looked. A new look tells.
            match self.read_rows(stored).await? {
                found if found.is_empty() => Err(conflict()),
                found => already_stored(&found, events.len()),
            }
        })
        .await
        .inspect(|numbers| self.wrote(numbers.len()))
    }

    /// Counts events written, for the tables' upkeep.
    fn wrote(&self, events: usize) {
        if let Some(upkeep) = &self.upkeep {
            upkeep.wrote(events);
        }
    }

    /// The rows of one read-only statement, in a transaction of its own.
    async fn read_rows(&self, statement: &Statement) -> Result<Vec<Row>> {
        let begin = begin(true, statement);
        once_more(true, || async {
            let conn = self.conn().await.map_err(Failure::connecting)?;
            let mut rows = conn.transaction(begin, &[statement], "COMMIT").await?;
            conn.release();
            Ok(rows.pop().unwrap_or_default())
        })
        .await
    }

    /// Loads `events` (all or none) whatever is stored, through `COPY`: for importing a
    /// history, a batch at a time. The same as [`Self::append_unconditionally`] but for
    /// speed: locks, key rows, ids (a batch stored before is answered with its numbers) and
    /// the subscribers' wake-up alike. Returns the assigned sequence numbers in order.
    pub async fn import(&self, events: &[StorableEvent], timeout: Timeout) -> Result<Vec<i64>> {
        if events.is_empty() {
            return Err(Error::invalid("an import batch needs at least one event"));
        }
        match self.import_once(events, timeout).await {
            // An append stored one of the ids while the batch was loaded: it may be this
            // batch, stored by a rerun; a new look tells.
            Err(e) if e.sqlstate() == Some(UNIQUE_VIOLATION) => {
                let found = self
                    .read_rows(&sql::stored_ids(&self.table, events))
                    .await?;
                if found.is_empty() {
                    Err(e)
                } else {
                    already_stored(&found, events.len())
                }
            }
            done => done,
        }
        .inspect(|numbers| self.wrote(numbers.len()))
    }

    async fn import_once(&self, events: &[StorableEvent], timeout: Timeout) -> Result<Vec<i64>> {
        let lock = sql::lock(guard::for_writer(&self.table, events));
        let stored = events
            .iter()
            .any(|e| e.id().is_some())
            .then(|| sql::stored_ids(&self.table, events));
        let draw = sql::draw_numbers(&self.table, events.len());
        self.timed(timeout, async {
            let conn = self.conn().await?;
            let client = conn.client()?;
            let statements: Vec<&Statement> = [Some(&lock), stored.as_ref(), Some(&draw)]
                .into_iter()
                .flatten()
                .collect();
            let mut prepared = Vec::with_capacity(statements.len());
            for s in &statements {
                prepared.push((conn.prepare(&s.sql).await?, s.args()));
            }
            let (began, rows) = tokio::join!(
                client.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
                futures_util::future::join_all(prepared.iter().map(|(s, a)| client.query(s, a))),
            );
            began?;
            let mut rows = rows.into_iter().collect::<Result<Vec<_>, _>>()?;
            let drawn = rows.pop().unwrap_or_default();
            if stored.is_some() {
                let found = rows.pop().unwrap_or_default();
                if !found.is_empty() {
                    client.batch_execute("ROLLBACK").await?;
                    conn.release();
                    return already_stored(&found, events.len());
                }
            }
            let mut numbers = numbers(&drawn)?;
            numbers.sort_unstable();
            let sink = client.copy_in(&sql::copy_events(&self.table)).await?;
            let writer = BinaryCopyInWriter::new(sink, &sql::COPY_TYPES);
            tokio::pin!(writer);
            for (number, e) in numbers.iter().zip(events) {
                let occurred = time::to_system_time(e.occurred_at());
                let (payload, metadata) = (Json(e.payload()), Json(e.metadata()));
                writer
                    .as_mut()
                    .write(&[
                        number,
                        &occurred,
                        &e.event_type(),
                        &payload,
                        &metadata,
                        &e.id(),
                        &e.tags(),
                    ])
                    .await?;
            }
            writer.finish().await?;
            let pairs: Vec<(i64, &StorableEvent)> = numbers.iter().copied().zip(events).collect();
            let index = sql::index_copied(&self.table, &pairs);
            let index_stmt = conn.prepare(&index.sql).await?;
            let index_args = index.args();
            let (indexed, committed) = tokio::join!(
                client.execute(&index_stmt, &index_args),
                commit(client, &self.commit_and_notify),
            );
            indexed?;
            committed?;
            conn.release();
            Ok(numbers)
        })
        .await
    }

    /// The head: the highest sequence number such that every event at or below it is
    /// committed and visible (0 when the store is empty). Writers are never blocked: the
    /// last number handed out is read, then every writer that held a lock at that moment
    /// (and so may hold a lower number, not yet committed) is waited for.
    pub async fn head(&self, timeout: Timeout) -> Result<i64> {
        self.timed(timeout, async {
            once_more(true, || async {
                let conn = self.conn().await.map_err(Failure::connecting)?;
                let head = self.head_on(&conn).await?;
                conn.release();
                Ok(head)
            })
            .await
        })
        .await
    }

    async fn head_on(&self, conn: &Conn) -> Result<i64, Failure> {
        let (mark, below) = (
            sql::head_mark(&self.table),
            sql::head_below_mark(&self.table),
        );
        // One round trip when no writer is in flight: the second statement's snapshot is
        // taken after the first statement found none.
        let rows = conn
            .transaction(READ_ONLY, &[&mark, &below], "COMMIT")
            .await?;
        let (first, second) = (&rows[0][0], &rows[1][0]);
        let mark: i64 = first.try_get(0).map_err(Error::from)?;
        let writers: Vec<String> = first.try_get(1).map_err(Error::from)?;
        if writers.is_empty() {
            return Ok(second.try_get(0).map_err(Error::from)?);
        }
        let running = sql::writers_still_running(&self.table, writers);
        let mut pause = Duration::from_micros(200);
        loop {
            let rows = conn.transaction(READ_ONLY, &[&running], "COMMIT").await?;
            if rows[0][0].try_get::<_, i64>(0).map_err(Error::from)? == 0 {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(5));
        }
        let below = sql::head_below(&self.table, mark);
        let rows = conn.transaction(READ_ONLY, &[&below], "COMMIT").await?;
        Ok(rows[0][0].try_get(0).map_err(Error::from)?)
    }

    /// The next events of `reader` (none when it is done). Reads take no locks: they stop at
    /// the head found when the read began, below which every event is committed.
    pub async fn read(&self, reader: &mut Reader, timeout: Timeout) -> Result<Vec<RecordedEvent>> {
        self.timed(timeout, async {
            loop {
                if reader.done() {
                    return Ok(Vec::new());
                }
                let Some(range) = reader.range else {
                    let head = self.head(Timeout::Unlimited).await?;
                    reader.begin_at(head);
                    continue;
                };
                let (page, limit) = self.page_statement(reader, range)?;
                let page = Page::new(&self.read_rows(&page).await?, reader, limit)?;
                let events = reader.take(page);
                if !events.is_empty() {
                    return Ok(events);
                }
            }
        })
        .await
    }

    /// The statement of `reader`'s next page over `range`, and the most events it returns.
    pub(crate) fn page_statement(
        &self,
        reader: &Reader,
        range: (i64, i64),
    ) -> Result<(Statement, i64)> {
        let limit = reader.page_limit();
        let page = sql::page(
            &self.table,
            &reader.filter,
            reader.lookup.as_ref(),
            range,
            limit,
            reader.backwards,
        )
        .within_limits()?;
        Ok((page, limit))
    }
}

/// A page of a read: its events in the read's order, and how far its scan reached.
#[derive(Debug)]
pub(crate) struct Page {
    events: Vec<RecordedEvent>,
    reached: Option<i64>,
    limit: i64,
}

impl Page {
    /// From the rows of [`sql::page`] asked for with `limit`.
    pub(crate) fn new(rows: &[Row], reader: &Reader, limit: i64) -> Result<Self> {
        let reached: Option<i64> = match rows.first() {
            Some(row) => row.try_get(crate::sql::compiler::COLUMN_COUNT)?,
            None => None,
        };
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            if row.try_get::<_, Option<i64>>(0)?.is_some() {
                events.push(recorded(row)?);
            }
        }
        // Sorted here rather than by the server: one pass over rows mostly in order.
        if reader.backwards {
            events.sort_by_key(|e| std::cmp::Reverse(e.sequence_number));
        } else {
            events.sort_by_key(|e| e.sequence_number);
        }
        Ok(Self {
            events,
            reached,
            limit,
        })
    }

    /// Whether rows of [`sql::page`] hold an event numbered `settled` or below.
    pub(crate) fn holds_up_to(rows: &[Row], settled: i64) -> Result<bool> {
        for row in rows {
            if row
                .try_get::<_, Option<i64>>(0)?
                .is_some_and(|n| n <= settled)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The SQLSTATE of a duplicate key: here, an event id stored already.
const UNIQUE_VIOLATION: &str = "23505";

fn numbers(rows: &[Row]) -> Result<Vec<i64>> {
    Ok(rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<Vec<i64>, _>>()?)
}

/// The answer to an append whose events were stored before (by ids): their sequence
/// numbers, if `found` (rows of [`sql::stored_ids`]) holds every one of the `count` events,
/// as it was stored.
fn already_stored(found: &[Row], count: usize) -> Result<Vec<i64>> {
    let integrity = |message: String| Error::Database {
        sqlstate: UNIQUE_VIOLATION.to_owned(),
        message,
        detail: None,
    };
    if found.len() != count {
        return Err(integrity(format!(
            "{} of the {count} events are stored already (by their ids), the others are not: \
             an append is stored whole or not at all, so this is not a retry of one",
            found.len()
        )));
    }
    let mut numbers = Vec::with_capacity(count);
    for row in found {
        let (position, number, same): (i64, i64, bool) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        if !same {
            return Err(integrity(format!(
                "the id of event {position} of this append is stored already, with a \
                 different type, payload or tags"
            )));
        }
        numbers.push(number);
    }
    Ok(numbers)
}

const READ_ONLY: &str = "BEGIN ISOLATION LEVEL READ COMMITTED, READ ONLY";

/// Most events one page of a read or a subscription holds.
pub const MAX_BATCH: usize = 100_000;

/// A read in progress: what it reads, in which direction, and how far it got. Each
/// [`EventStore::read`] returns its next page (a clone reads the pages after it on its own).
#[derive(Clone, Debug)]
pub struct Reader {
    filter: Filter,
    lookup: Option<keys::Lookup>,
    after: i64,
    /// The sequence numbers still to read, `(lower, upper]`; `None` before the first page.
    range: Option<(i64, i64)>,
    remaining: Option<u64>,
    backwards: bool,
    batch: i64,
}

impl Reader {
    /// A read of the events matching `filter` with sequence numbers above `after`, at most
    /// `limit` of them, ascending (or descending, from the head, when `backwards`), in pages
    /// of `batch_size`.
    pub fn new(
        table: &TableName,
        filter: Filter,
        after: i64,
        limit: Option<u64>,
        backwards: bool,
        batch_size: usize,
    ) -> Result<Self> {
        if after < 0 {
            return Err(Error::invalid("after must not be negative"));
        }
        if limit == Some(0) {
            return Err(Error::invalid("limit must be positive"));
        }
        if !(1..=MAX_BATCH).contains(&batch_size) {
            return Err(Error::invalid(format!(
                "batch_size must be between 1 and {MAX_BATCH}"
            )));
        }
        Ok(Self {
            lookup: keys::lookup(table, &filter),
            filter,
            after,
            range: None,
            remaining: limit,
            backwards,
            batch: i64::try_from(batch_size).unwrap_or(i64::MAX),
        })
    }

    /// Starts the read at `head`, below which every event is committed.
    fn begin_at(&mut self, head: i64) {
        self.range = Some((self.after, head.max(self.after)));
    }

    /// Reads on (forwards) up to `head`, below which every event is committed.
    pub(crate) fn extend_to(&mut self, head: i64) {
        let lower = self.position();
        self.range = Some((lower, head.max(lower)));
    }

    /// Forwards: the sequence number up to which every matching event was returned.
    pub(crate) fn position(&self) -> i64 {
        self.range.map_or(self.after, |(lower, _)| lower)
    }

    fn done(&self) -> bool {
        self.remaining == Some(0) || self.range.is_some_and(|(lower, upper)| lower >= upper)
    }

    fn page_limit(&self) -> i64 {
        self.remaining.map_or(self.batch, |r| {
            self.batch.min(i64::try_from(r).unwrap_or(i64::MAX))
        })
    }

    /// Past `page`: its events.
    fn take(&mut self, page: Page) -> Vec<RecordedEvent> {
        self.advance(&page.events, page.reached, page.limit);
        page.events
    }

    /// Reads on (forwards) up to `settled`, below which every event is committed, with a
    /// `page` read from the position up to any number (a subscription's look at the log,
    /// [`crate::wake`]): its events up to `settled`.
    pub(crate) fn settle(&mut self, settled: i64, mut page: Page) -> Vec<RecordedEvent> {
        debug_assert!(!self.backwards);
        self.extend_to(settled);
        page.events.retain(|e| e.sequence_number <= settled);
        page.reached = page.reached.map(|at| at.min(settled));
        self.take(page)
    }

    /// Past a page of `events`, asked for with `limit`, whose scan `reached` a sequence
    /// number (`None`: the end of its range, unless the page filled up).
    fn advance(&mut self, events: &[RecordedEvent], reached: Option<i64>, limit: i64) {
        let Some((lower, upper)) = self.range else {
            return;
        };
        let full = i64::try_from(events.len()).unwrap_or(i64::MAX) >= limit;
        let reached = reached.or_else(|| {
            full.then(|| events.last().map(|e| e.sequence_number))
                .flatten()
        });
        self.range = Some(match (reached, self.backwards) {
            (Some(at), false) => (at, upper),
            (Some(at), true) => (lower, at - 1),
            // The whole range was read.
            (None, false) => (upper, upper),
            (None, true) => (lower, lower),
        });
        if let Some(r) = &mut self.remaining {
            *r = r.saturating_sub(events.len() as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(backwards: bool, limit: Option<u64>) -> Reader {
        let table = TableName::parse("events").unwrap();
        let filter = Filter::any_event(crate::filter::Bound::None).unwrap();
        let mut r = Reader::new(&table, filter, 10, limit, backwards, 3).unwrap();
        r.begin_at(20);
        r
    }

    fn events(numbers: &[i64]) -> Vec<RecordedEvent> {
        numbers
            .iter()
            .map(|n| RecordedEvent {
                sequence_number: *n,
                occurred_at: 0,
                event_type: "T".into(),
                payload: JsonText::default(),
                metadata: JsonText::default(),
                id: None,
                tags: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn jsonb_is_read_as_its_text() {
        let text = JsonText::from_sql(&Type::JSONB, b"\x01{\"b\": 1, \"aa\": [2]}").unwrap();
        assert_eq!(text.as_str(), r#"{"b": 1, "aa": [2]}"#);
        assert_eq!(text.to_map().unwrap()["aa"][0], 2);
        assert_eq!(text.to_value().unwrap()["b"], 1);
        let scalar = JsonText::from_sql(&Type::JSONB, b"\x01\"ten\"").unwrap();
        assert_eq!(scalar.to_value().unwrap(), "ten");
        assert!(scalar.to_map().is_err(), "not an object");
        assert!(JsonText::from_sql(&Type::JSONB, b"\x02{}").is_err());
        assert!(JsonText::from_sql(&Type::JSONB, b"").is_err());
        assert!(JsonText::from_sql(&Type::JSONB, b"\x01{\"\xff\": 1}").is_err());
        assert!(!<JsonText as FromSql>::accepts(&Type::JSON));
    }

    #[test]
    fn a_read_moves_past_what_its_pages_scanned() {
        let mut r = reader(false, None);
        assert_eq!((r.range, r.page_limit()), (Some((10, 20)), 3));
        // Candidates up to 15 scanned, one of them a match.
        r.advance(&events(&[12]), Some(15), 3);
        assert_eq!(r.range, Some((15, 20)));
        // A full page tells where it stopped by itself.
        r.advance(&events(&[16, 17, 18]), None, 3);
        assert_eq!(r.range, Some((18, 20)));
        r.advance(&events(&[19]), None, 3);
        assert!(r.done());
        assert_eq!(r.position(), 20);
        r.extend_to(25);
        assert_eq!(r.range, Some((20, 25)));

        let mut r = reader(true, Some(4));
        r.advance(&events(&[20, 19, 17]), None, 3);
        assert_eq!((r.range, r.page_limit()), (Some((10, 16)), 1));
        r.advance(&events(&[]), Some(14), 1);
        assert_eq!(r.range, Some((10, 13)));
        r.advance(&events(&[12]), None, 1);
        assert!(r.done());
    }

    #[test]
    fn a_page_read_past_the_settled_position_gives_only_what_is_settled() {
        let page = |numbers: &[i64], reached| Page {
            events: events(numbers),
            reached,
            limit: 3,
        };
        let numbers = |events: Vec<RecordedEvent>| -> Vec<i64> {
            events.iter().map(|e| e.sequence_number).collect()
        };
        // 21 and 23 are visible, 22 is not yet: 23 waits for it.
        let mut r = reader(false, None);
        r.advance(&events(&[]), None, 3);
        assert_eq!(numbers(r.settle(21, page(&[21, 23], None))), [21]);
        assert_eq!((r.position(), r.done()), (21, true));
        // A full page whose scan went past the settled position: all of it below is read.
        assert_eq!(
            numbers(r.settle(24, page(&[22, 23, 25], Some(26)))),
            [22, 23]
        );
        assert_eq!((r.position(), r.done()), (24, true));
        // A full page that stops below it: the rest is read by the next pages.
        assert_eq!(
            numbers(r.settle(40, page(&[25, 26, 27], Some(30)))),
            [25, 26, 27]
        );
        assert_eq!(r.range, Some((30, 40)));
        assert_eq!(
            numbers(r.settle(40, page(&[31, 32, 33], None))),
            [31, 32, 33]
        );
        assert_eq!(r.range, Some((33, 40)));
    }

    #[test]
    fn bad_reads_are_refused() {
        let table = TableName::parse("events").unwrap();
        let any = || Filter::any_event(crate::filter::Bound::None).unwrap();
        assert!(Reader::new(&table, any(), -1, None, false, 10).is_err());
        assert!(Reader::new(&table, any(), 0, Some(0), false, 10).is_err());
        assert!(Reader::new(&table, any(), 0, None, false, 0).is_err());
        assert!(Reader::new(&table, any(), 0, None, false, MAX_BATCH + 1).is_err());
    }
}
