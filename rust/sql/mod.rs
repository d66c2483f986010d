//! Every SQL text the store runs. No value is ever spliced into SQL text: values travel as
//! bind parameters ([`param`]), and the only identifiers (schema and table) are validated
//! and quoted by [`crate::table::TableName`].
//!
//! - [`ddl`]: the tables and indexes, as `initdb/` holds them;
//! - [`compiler`]: filters to conditions, and where their candidates are read from;
//! - [`statements`]: each statement the store runs, built with its parameters.

pub mod compiler;
pub mod ddl;
pub mod param;
pub mod statements;
