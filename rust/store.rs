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

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, QueueMode, RecyclingMethod};
use serde_json::{Map, Value};
use tokio::runtime::RuntimeFlavor;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::{CancelToken, NoTls, Row};

use crate::error::{Error, Result};
use crate::event::{RecordedEvent, StorableEvent};
use crate::filter::Filter;
use crate::guard::{self, LockSet};
use crate::sql::{self, SqlParam, TableName};

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
    /// The default time limit for one call (connecting included); `None` waits forever.
    pub timeout: Option<Duration>,
    /// Where snapshots live; `None`: `<table>_snapshots` beside the events.
    pub snapshot_table: Option<TableName>,
    /// A read replica for reads that accept eventual consistency; `None`: the primary.
    pub replica_dsn: Option<String>,
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
        crate::filter::reject_nul(&format!("the {what}"), value)?;
        if value.trim().is_empty() {
            return Err(Error::invalid(format!("the {what} must not be empty")));
        }
    }
    Ok(())
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

/// A pooled connection that is discarded, with its running statement cancelled, unless the
/// operation using it finished.
struct Conn {
    obj: Option<Object>,
}

impl Conn {
    fn client(&self) -> Result<&Object> {
        self.obj.as_ref().ok_or(Error::Closed)
    }

    /// The operation ran to its end: the connection is idle again and goes back to the pool.
    fn release(mut self) {
        drop(self.obj.take());
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(obj) = self.obj.take() else { return };
        let client = Object::take(obj);
        cancel_in_background(client.cancel_token());
        drop(client);
    }
}

/// Asks the server to cancel the connection's running statement (best effort: the connection
/// is closed right after anyway). A multi-thread runtime sends it at once; a current-thread
/// runtime runs tasks only while a caller waits on it, so the request goes from a thread of
/// its own there (a cancelled call is rare, and must not leave its statement running).
fn cancel_in_background(token: CancelToken) {
    let cancel = async move {
        let _ = token.cancel_query(NoTls).await;
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

fn params(p: &[SqlParam]) -> Vec<&(dyn ToSql + Sync)> {
    p.iter().map(|x| x as &(dyn ToSql + Sync)).collect()
}

fn lock_params(locks: LockSet) -> [SqlParam; 2] {
    let (keys, modes) = locks.into_arrays();
    [SqlParam::BigIntArray(keys), SqlParam::BoolArray(modes)]
}

/// Runs `statement` in one transaction, after the guard's locks when given, as one pipeline:
/// `BEGIN; [LOCK;] statement; COMMIT` are sent together and answered in order.
async fn in_transaction(
    client: &Object,
    begin_sql: &str,
    locks: Option<&[SqlParam]>,
    statement: &str,
    statement_params: &[SqlParam],
) -> Result<Vec<Row>> {
    let stmt = client.prepare_cached(statement).await?;
    let lock = match locks {
        Some(locks) => Some((client.prepare_cached(sql::LOCK).await?, params(locks))),
        None => None,
    };
    let args = params(statement_params);
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

/// The `BEGIN` of an operation's transaction. Statements found through the key index have
/// one good plan whatever their values, and the connections plan them once (generic plans);
/// the others (event types only, or every event, with a bound) are planned for their values:
/// a generic plan for `event_type = $1 AND sequence_number > $2` walks the primary key.
fn begin(read_only: bool, by_value: bool) -> &'static str {
    match (read_only, by_value) {
        (false, false) => "BEGIN",
        (true, false) => "BEGIN READ ONLY",
        (false, true) => "BEGIN; SET LOCAL plan_cache_mode = force_custom_plan",
        (true, true) => "BEGIN READ ONLY; SET LOCAL plan_cache_mode = force_custom_plan",
    }
}

fn recorded(row: &Row) -> Result<RecordedEvent> {
    Ok(RecordedEvent {
        sequence_number: row.try_get(0)?,
        occurred_at: sql::system_time_to_micros(row.try_get::<_, SystemTime>(1)?),
        event_type: row.try_get(2)?,
        payload: row.try_get::<_, Json<Map<String, Value>>>(3)?.0,
        metadata: row.try_get::<_, Json<Map<String, Value>>>(4)?.0,
    })
}

/// A lazily filled connection pool for one DSN.
fn pool(dsn: &str, size: usize, timeout: Option<Duration>) -> Result<Pool> {
    let mut pg: tokio_postgres::Config = dsn.parse().map_err(|_| {
        // The parser's message may quote the DSN, and with it a password.
        Error::invalid(
            "invalid DSN: expected postgresql://user:password@host:port/dbname or key=value pairs",
        )
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
    if let (Some(t), None) = (timeout, pg.get_connect_timeout()) {
        pg.connect_timeout(t);
    }
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        // The most recently used connection first: its backend's caches are warm, and idle
        // connections beyond what the load needs stay idle.
        .queue_mode(QueueMode::Lifo)
        .build()
        .map_err(|e| Error::invalid(format!("cannot build the connection pool: {e}")))
}

impl EventStore {
    /// Creates the store and its (lazily filled) connection pools. No I/O happens here.
    pub fn new(config: StoreConfig) -> Result<Self> {
        if !(1..=MAX_POOL_SIZE).contains(&config.pool_size) {
            return Err(Error::invalid(format!(
                "pool_size must be between 1 and {MAX_POOL_SIZE}"
            )));
        }
        let primary = pool(&config.dsn, config.pool_size, config.timeout)?;
        let replica = config
            .replica_dsn
            .as_deref()
            .map(|dsn| pool(dsn, config.pool_size, config.timeout))
            .transpose()?;
        Ok(Self {
            pool: primary,
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

    async fn timed<T>(
        &self,
        timeout: Option<Duration>,
        op: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match timeout.or(self.timeout) {
            Some(limit) => tokio::time::timeout(limit, op)
                .await
                .map_err(|_| Error::Timeout(limit))?,
            None => op.await,
        }
    }

    async fn conn(&self) -> Result<Conn> {
        if self.pool.is_closed() {
            return Err(Error::Closed);
        }
        Ok(Conn {
            obj: Some(self.pool.get().await?),
        })
    }

    /// A replica connection for an eventual read; `None` when there is no replica or it
    /// cannot be reached right now (the read falls back to the primary).
    async fn replica_conn(&self, consistency: Consistency) -> Result<Option<Conn>> {
        let Some(replica) = self
            .replica
            .as_ref()
            .filter(|_| consistency == Consistency::Eventual)
        else {
            return Ok(None);
        };
        match replica.get().await {
            Ok(obj) => Ok(Some(Conn { obj: Some(obj) })),
            Err(deadpool_postgres::PoolError::Closed) => Err(Error::Closed),
            Err(_) => Ok(None),
        }
    }

    /// Creates the table and its indexes if they do not exist. Safe to run concurrently.
    pub async fn create_schema(&self, timeout: Option<Duration>) -> Result<()> {
        self.timed(timeout, async {
            let conn = self.conn().await?;
            let client = conn.client()?;
            let lock = [SqlParam::BigInt(guard::schema_key(&self.table))];
            client.batch_execute("BEGIN").await?;
            client.execute(sql::LOCK_ONE, &params(&lock)).await?;
            client
                .batch_execute(&sql::create_schema(&self.table))
                .await?;
            client
                .batch_execute(&sql::create_snapshots(&self.snapshots))
                .await?;
            client.batch_execute("COMMIT").await?;
            conn.release();
            Ok(())
        })
        .await
    }

    pub fn snapshot_table(&self) -> &TableName {
        &self.snapshots
    }

    /// Saves `data` as the snapshot of `projection_type` over the filter with `filter_hash`,
    /// as of `sequence_number`, unless a snapshot with a higher sequence number is stored.
    /// Returns whether it was saved.
    pub async fn save_snapshot(
        &self,
        projection_type: &str,
        filter_hash: &str,
        sequence_number: i64,
        data: &Value,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        snapshot_key(projection_type, filter_hash)?;
        if crate::event::contains_nul(data) {
            return Err(Error::invalid("the snapshot data contains a NUL character"));
        }
        if sequence_number < 0 {
            return Err(Error::invalid("the sequence number must not be negative"));
        }
        let args = [
            SqlParam::Text(projection_type.to_owned()),
            SqlParam::Text(filter_hash.to_owned()),
            SqlParam::BigInt(sequence_number),
            SqlParam::Json(data.clone()),
        ];
        self.timed(timeout, async {
            let conn = self.conn().await?;
            let client = conn.client()?;
            let stmt = client
                .prepare_cached(&sql::save_snapshot(&self.snapshots))
                .await?;
            let saved = client.execute(&stmt, &params(&args)).await? == 1;
            conn.release();
            Ok(saved)
        })
        .await
    }

    /// The snapshot of `projection_type` over the filter with `filter_hash`, if any.
    pub async fn load_snapshot(
        &self,
        projection_type: &str,
        filter_hash: &str,
        consistency: Consistency,
        timeout: Option<Duration>,
    ) -> Result<Option<Snapshot>> {
        snapshot_key(projection_type, filter_hash)?;
        let args = [
            SqlParam::Text(projection_type.to_owned()),
            SqlParam::Text(filter_hash.to_owned()),
        ];
        self.timed(timeout, async {
            let conn = match self.replica_conn(consistency).await? {
                Some(conn) => conn,
                None => self.conn().await?,
            };
            let client = conn.client()?;
            let stmt = client
                .prepare_cached(&sql::load_snapshot(&self.snapshots))
                .await?;
            let row = client.query_opt(&stmt, &params(&args)).await?;
            conn.release();
            row.map(|r| {
                Ok(Snapshot {
                    projection_type: projection_type.to_owned(),
                    filter_hash: filter_hash.to_owned(),
                    sequence_number: r.try_get(0)?,
                    data: r.try_get::<_, Json<Value>>(1)?.0,
                    created_at: sql::system_time_to_micros(r.try_get::<_, SystemTime>(2)?),
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
        timeout: Option<Duration>,
    ) -> Result<bool> {
        snapshot_key(projection_type, filter_hash)?;
        let args = [
            SqlParam::Text(projection_type.to_owned()),
            SqlParam::Text(filter_hash.to_owned()),
        ];
        self.timed(timeout, async {
            let conn = self.conn().await?;
            let client = conn.client()?;
            let stmt = client
                .prepare_cached(&sql::delete_snapshot(&self.snapshots))
                .await?;
            let deleted = client.execute(&stmt, &params(&args)).await? == 1;
            conn.release();
            Ok(deleted)
        })
        .await
    }

    /// Drops the table, its key index, its sequence and its snapshots. For tests and tooling.
    pub async fn drop_table(&self, timeout: Option<Duration>) -> Result<()> {
        self.timed(timeout, async {
            let conn = self.conn().await?;
            conn.client()?
                .batch_execute(&format!(
                    "DROP TABLE IF EXISTS {}, {}, {}",
                    self.table.quoted(),
                    self.table.keys_quoted(),
                    self.snapshots.quoted()
                ))
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
        timeout: Option<Duration>,
    ) -> Result<QueryResult> {
        // One derivation of the filter's keys serves the SQL, the locks and the plan choice.
        let lookup = guard::lookup(&self.table, filter);
        let (select, select_params) = sql::query_with(&self.table, filter, lookup.as_ref());
        let by_value = !lookup.as_ref().is_some_and(guard::Lookup::uses_key_index);
        self.timed(timeout, async {
            let (rows, from_replica) = if let Some(conn) = self.replica_conn(consistency).await? {
                // Eventual: no locks (they would guard nothing on a replica).
                let rows = in_transaction(
                    conn.client()?,
                    begin(true, by_value),
                    None,
                    &select,
                    &select_params,
                )
                .await?;
                conn.release();
                (rows, true)
            } else {
                let locks = lock_params(guard::for_lookup(&self.table, lookup.as_ref()));
                let conn = self.conn().await?;
                let rows = in_transaction(
                    conn.client()?,
                    begin(true, by_value),
                    Some(&locks),
                    &select,
                    &select_params,
                )
                .await?;
                conn.release();
                (rows, false)
            };
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
        timeout: Option<Duration>,
    ) -> Result<Vec<i64>> {
        if events.is_empty() {
            return Err(Error::invalid("append needs at least one event"));
        }
        if expected_max_sequence_number < 0 {
            return Err(Error::invalid(
                "expected_max_sequence_number must not be negative",
            ));
        }
        let lookup = guard::lookup(&self.table, filter);
        let (insert, filter_params) =
            sql::guarded_insert_with(&self.table, filter, lookup.as_ref());
        let by_value = !lookup.as_ref().is_some_and(guard::Lookup::uses_key_index);
        let mut insert_params = vec![
            SqlParam::TimestampArray(events.iter().map(StorableEvent::occurred_at).collect()),
            SqlParam::TextArray(events.iter().map(|e| e.event_type().to_owned()).collect()),
            SqlParam::JsonArray(
                events
                    .iter()
                    .map(|e| serde_json::Value::Object(e.payload().clone()))
                    .collect(),
            ),
            SqlParam::JsonArray(
                events
                    .iter()
                    .map(|e| serde_json::Value::Object(e.metadata().clone()))
                    .collect(),
            ),
            SqlParam::BigInt(expected_max_sequence_number),
        ];
        let (mut keys, mut positions) = (Vec::new(), Vec::new());
        for (position, event) in (1_i64..).zip(events) {
            for key in guard::index_keys(&self.table, event.payload()) {
                keys.push(key);
                positions.push(position);
            }
        }
        insert_params.push(SqlParam::BigIntArray(keys));
        insert_params.push(SqlParam::BigIntArray(positions));
        insert_params.extend(filter_params);
        let locks = lock_params(guard::for_append_lookup(
            &self.table,
            lookup.as_ref(),
            events,
        ));
        self.timed(timeout, async {
            let conn = self.conn().await?;
            let client = conn.client()?;
            let rows = in_transaction(
                client,
                begin(false, by_value),
                Some(&locks),
                &insert,
                &insert_params,
            )
            .await?;
            conn.release();
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
