//! The engine's one error type.

use std::time::Duration;

/// Everything the engine can fail with. The bindings map each variant to exactly one
/// Python exception class.
#[derive(Clone, Debug, thiserror::Error)]
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

    /// Every connection of the pool stayed busy for the pool's wait timeout.
    #[error(
        "no connection of the pool ({size} connections) was free within {waited:?}: the pool is saturated"
    )]
    PoolExhausted { size: usize, waited: Duration },

    /// No connection could be opened or kept (refused, unreachable, closed mid-call).
    /// `os_error` is the operating system's error number, when the cause was one.
    #[error("connection error: {message}")]
    Connection {
        message: String,
        os_error: Option<i32>,
    },

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

/// The DB-API category of a server error, by its SQLSTATE class (the first two
/// characters), never by its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlStateClass {
    /// 22: a value the server rejected.
    Data,
    /// 23: an integrity rule.
    Integrity,
    /// 42 and the other classes of SQL that cannot run as sent.
    Programming,
    /// Connections, authentication, a missing database, transactions rolled back, resources,
    /// the server's state.
    Operational,
    /// Anything else.
    Other,
}

impl SqlStateClass {
    pub fn of(sqlstate: &str) -> Self {
        match sqlstate.get(..2) {
            Some("22") => Self::Data,
            Some("23") => Self::Integrity,
            Some("42" | "2B" | "2D" | "3F" | "44") => Self::Programming,
            // 28: authentication and pg_hba rejections; 3D: no such database (as psycopg).
            Some("08" | "28" | "3D" | "40" | "53" | "54" | "55" | "57" | "58" | "XX") => {
                Self::Operational
            }
            _ => Self::Other,
        }
    }
}

impl Error {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidInput(message.into())
    }

    /// The server's SQLSTATE, for errors the server reported.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Self::Database { sqlstate, .. } => Some(sqlstate),
            _ => None,
        }
    }

    /// The connection broke, or the server was ending sessions (shutting down, crashed) or
    /// not yet accepting them: the same call on another connection may succeed.
    pub fn is_disconnect(&self) -> bool {
        match self {
            Self::Connection { .. } => true,
            Self::Database { sqlstate, .. } => {
                sqlstate.starts_with("08")
                    || matches!(sqlstate.as_str(), "57P01" | "57P02" | "57P03")
            }
            _ => false,
        }
    }
}

/// What `err` says it was caused by, nearest first.
pub(crate) fn causes<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(err.source(), |c| c.source())
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
        // tokio-postgres does not echo the configuration in its messages. Their causes
        // (refused, timed out, name not resolved, ...) follow, so the message says why.
        let mut message = err.to_string();
        let mut os_error = None;
        for c in causes(&err) {
            message.push_str(": ");
            message.push_str(&c.to_string());
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                os_error = os_error.or(io.raw_os_error());
            }
        }
        Self::Connection { message, os_error }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            deadpool_postgres::PoolError::Closed => Self::Closed,
            other => Self::Connection {
                message: other.to_string(),
                os_error: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SqlStateClass;

    #[test]
    fn sqlstates_map_to_their_db_api_category() {
        for (sqlstate, class) in [
            ("22003", SqlStateClass::Data),        // numeric value out of range
            ("22P02", SqlStateClass::Data),        // invalid text representation
            ("23505", SqlStateClass::Integrity),   // unique violation
            ("23514", SqlStateClass::Integrity),   // check violation
            ("42P01", SqlStateClass::Programming), // undefined table
            ("42601", SqlStateClass::Programming), // syntax error
            ("2BP01", SqlStateClass::Programming), // dependent objects still exist
            ("3F000", SqlStateClass::Programming), // invalid schema name
            ("08006", SqlStateClass::Operational), // connection failure
            ("40001", SqlStateClass::Operational), // serialization failure
            ("40P01", SqlStateClass::Operational), // deadlock detected
            ("53200", SqlStateClass::Operational), // out of memory
            ("53300", SqlStateClass::Operational), // too many connections
            ("55P03", SqlStateClass::Operational), // lock not available
            ("57014", SqlStateClass::Operational), // query canceled
            ("57P01", SqlStateClass::Operational), // admin shutdown
            ("XX000", SqlStateClass::Operational), // internal error
            ("28P01", SqlStateClass::Operational), // invalid password
            ("28000", SqlStateClass::Operational), // no such role, pg_hba rejection
            ("3D000", SqlStateClass::Operational), // no such database
            ("P0001", SqlStateClass::Other),       // raise exception
            ("", SqlStateClass::Other),
            ("4", SqlStateClass::Other),
        ] {
            assert_eq!(SqlStateClass::of(sqlstate), class, "{sqlstate}");
        }
    }
}
