//! Dynamic Consistency Boundary event store on PostgreSQL.
//!
//! The engine, each concern in one module, none of them knowing Python:
//! - [`filter`] and [`event`]: the filter model (validated, sanitised) and storable events;
//! - [`table`]: validated table names; [`time`]: instants; [`input`]: checks on text and JSON;
//! - [`keys`]: the key index's keys, and where a filter's events are looked up;
//! - [`guard`]: the advisory locks that make the append guard hold under concurrency;
//! - [`sql`]: the DDL, the compiler from filters to parameterised SQL, the statements;
//! - [`dsn`] and [`connect`]: DSNs, TLS and opening a connection; [`pool`]: pooled connections; [`store`]: the operations; [`subscription`]: following the log (`wake`: how its listener wakes it); [`upkeep`]: vacuuming the tables as they grow; [`error`]: the one error type.
//!
//! The `python` feature adds the bindings in `python`.

pub mod connect;
pub mod dsn;
pub mod error;
pub mod event;
pub mod filter;
pub mod guard;
pub mod input;
pub mod keys;
pub mod pool;
pub mod sql;
pub mod store;
pub mod subscription;
pub mod table;
pub mod time;
pub mod upkeep;
mod wake;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};
pub use event::{JsonText, RecordedEvent, StorableEvent};
pub use filter::{Bound, Filter, FilterItem, PredicateGroup, PredicateValue};
pub use store::{Consistency, EventStore, QueryResult, Snapshot, Stats, StoreConfig, Timeout};
pub use table::TableName;
