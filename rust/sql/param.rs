//! Bind parameters, and a statement travelling with its parameters.

use std::error::Error as StdError;

use bytes::BytesMut;
use serde_json::Value;
use tokio_postgres::types::{IsNull, Json, ToSql, Type};

use crate::time;

/// An SQL text and its bind parameters, built together by one function.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<SqlParam>,
}

impl Statement {
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
