//! Bind parameters, and a statement travelling with its parameters.

use std::error::Error as StdError;

use bytes::BytesMut;
use serde_json::Value;
use tokio_postgres::types::{IsNull, Json, ToSql, Type};

use crate::error::{Error, Result};
use crate::time;

/// Most bind parameters one statement may have: the protocol counts them in 16 bits.
pub const MAX_PARAMS: usize = 65_535;

/// An SQL text and its bind parameters, built together by one function.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<SqlParam>,
    /// Whether the statement must be planned for its values on each call rather than once
    /// per connection (see `store::begin`).
    pub plan_per_call: bool,
}

impl Statement {
    /// The statement, if the protocol can carry it; an error before any I/O otherwise.
    /// Values travel as arrays, so only a filter's items count: each takes one or two.
    pub fn within_limits(self) -> Result<Self> {
        if self.params.len() > MAX_PARAMS {
            return Err(Error::invalid(format!(
                "the filter has too many items: its statement would need {} parameters, \
                 at most {MAX_PARAMS} are possible (merge items that differ only in their \
                 values into one item with ANY predicates)",
                self.params.len()
            )));
        }
        Ok(self)
    }

    /// The parameters as the driver takes them.
    pub fn args(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|x| x as &(dyn ToSql + Sync))
            .collect()
    }
}

/// A bind parameter. Each variant delegates to the tokio-postgres conversion of its type.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlParam {
    Text(String),
    TextArray(Vec<String>),
    Json(Value),
    JsonArray(Vec<Value>),
    /// Microseconds since the Unix epoch, sent as `timestamptz`.
    Timestamp(i64),
    TimestampArray(Vec<i64>),
    BigInt(i64),
    BigIntArray(Vec<i64>),
    BoolArray(Vec<bool>),
    UuidArray(Vec<Option<uuid::Uuid>>),
}

impl ToSql for SqlParam {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Self::Text(v) => v.to_sql_checked(ty, out),
            Self::TextArray(v) => v.to_sql_checked(ty, out),
            Self::Json(v) => Json(v).to_sql_checked(ty, out),
            Self::JsonArray(v) => v
                .iter()
                .map(Json)
                .collect::<Vec<_>>()
                .to_sql_checked(ty, out),
            Self::Timestamp(v) => time::to_system_time(*v).to_sql_checked(ty, out),
            Self::TimestampArray(v) => v
                .iter()
                .map(|m| time::to_system_time(*m))
                .collect::<Vec<_>>()
                .to_sql_checked(ty, out),
            Self::BigInt(v) => v.to_sql_checked(ty, out),
            Self::BigIntArray(v) => v.to_sql_checked(ty, out),
            Self::BoolArray(v) => v.to_sql_checked(ty, out),
            Self::UuidArray(v) => v.to_sql_checked(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Each variant checks its own type in `to_sql`.
        true
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        self.to_sql(ty, out)
    }
}
