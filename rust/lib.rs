//! Dynamic Consistency Boundary event store on PostgreSQL.
//!
//! The engine: a filter model with validation and sanitising ([`filter`]), storable events
//! ([`event`]), a compiler from filters to parameterised SQL ([`sql`]), the advisory-lock
//! keys that make the append guard hold under concurrency ([`guard`]), and a store on
//! tokio-postgres ([`store`]). None of it knows Python; the `python` feature adds the
//! bindings in [`python`].

pub mod error;
pub mod event;
pub mod filter;
pub mod guard;
pub mod sql;
pub mod store;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};
pub use event::{RecordedEvent, StorableEvent};
pub use filter::{Bound, Filter, FilterItem, PredicateGroup, PredicateValue};
pub use sql::TableName;
pub use store::{Consistency, EventStore, QueryResult, Snapshot, StoreConfig};
