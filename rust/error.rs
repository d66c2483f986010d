//! The engine's one error type.

use std::time::Duration;

/// Everything the engine can fail with. The bindings map each variant to exactly one
/// Python exception class.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input rejected before any I/O: an empty event type, a payload that is not a JSON
    /// object, an empty filter item, an invalid table name, a bad DSN.
    #[error("{0}")]
    InvalidInput(String),

    /// The append guard failed: an event matching the filter was stored after the
    /// expected sequence number. Nothing was stored.
    #[error(
        "concurrency conflict: an event matching the filter was appended after sequence number {expected}"
    )]
    ConcurrencyConflict { expected: i64 },

    /// The call did not finish within its timeout; its work on the server was cancelled.
    #[error("operation timed out after {0:?}")]
    Timeout(Duration),

    /// No connection could be opened or kept (refused, unreachable, closed mid-call).
    #[error("connection error: {0}")]
    Connection(String),

    /// The server answered with an error.
    #[error("{message}")]
    Database {
        sqlstate: String,
        message: String,
        detail: Option<String>,
    },

    /// The store was closed and cannot be used any more.
    #[error("the event store is closed")]
    Closed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidInput(message.into())
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Self {
        if let Some(db) = err.as_db_error() {
            return Self::Database {
                sqlstate: db.code().code().to_owned(),
                message: db.message().to_owned(),
                detail: db.detail().map(str::to_owned),
            };
        }
        // Client-side errors (I/O, closed connection, protocol) never contain the password:
        // tokio-postgres does not echo the configuration in its messages.
        Self::Connection(err.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            deadpool_postgres::PoolError::Closed => Self::Closed,
            other => Self::Connection(other.to_string()),
        }
    }
}
