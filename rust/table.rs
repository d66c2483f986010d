//! Table names: validated once, quoted for SQL text, and the names of the objects that live
//! beside a table (key index, sequence, snapshots).

use crate::error::{Error, Result};

/// Longest table name: PostgreSQL's 63-byte identifier limit less the longest index suffix.
const MAX_TABLE_NAME: usize = 63 - "_occurred_at_idx".len();

/// A validated, optionally schema-qualified table name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableName {
    schema: Option<String>,
    name: String,
}

fn valid_identifier(s: &str, max: usize) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= max
}

impl TableName {
    /// Parses `name` or `schema.name`. Each part must be an identifier of ASCII letters,
    /// digits and underscores that does not start with a digit.
    pub fn parse(qualified: &str) -> Result<Self> {
        let (schema, name) = match qualified.split_once('.') {
            Some((s, n)) => (Some(s), n),
            None => (None, qualified),
        };
        let bad = |what: &str| {
            Error::invalid(format!(
                "invalid {what} in table name {qualified:?}: use letters, digits and underscores, \
                 not starting with a digit (table at most {MAX_TABLE_NAME} characters, schema at most 63)"
            ))
        };
        if let Some(s) = schema {
            if !valid_identifier(s, 63) {
                return Err(bad("schema"));
            }
        }
        if !valid_identifier(name, MAX_TABLE_NAME) {
            return Err(bad("table"));
        }
        Ok(Self {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        })
    }

    /// The quoted, qualified name for SQL text.
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(s) => format!("\"{s}\".\"{}\"", self.name),
            None => format!("\"{}\"", self.name),
        }
    }

    /// The quoted, qualified name of a companion object: `<table><suffix>` in its schema.
    pub fn companion(&self, suffix: &str) -> String {
        match &self.schema {
            Some(s) => format!("\"{s}\".\"{}{suffix}\"", self.name),
            None => format!("\"{}{suffix}\"", self.name),
        }
    }

    /// The key index table: one row per (payload key and value, event).
    pub fn keys_quoted(&self) -> String {
        self.companion("_keys")
    }

    /// The default snapshot table: `<table>_snapshots` in the same schema.
    #[must_use]
    pub fn snapshots(&self) -> Self {
        Self {
            schema: self.schema.clone(),
            name: format!("{}_snapshots", self.name),
        }
    }

    /// The projections' checkpoints: `<table>_checkpoints` in the same schema.
    pub fn checkpoints_quoted(&self) -> String {
        self.companion("_checkpoints")
    }

    /// The sequence that numbers the events.
    pub fn sequence_quoted(&self) -> String {
        self.companion("_seq")
    }

    /// The name as given (`schema.table` or `table`).
    pub fn qualified(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }

    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_validated() {
        for ok in ["events", "_e1", "app.events", "A_b.C9"] {
            assert!(TableName::parse(ok).is_ok(), "{ok}");
        }
        let long = "x".repeat(MAX_TABLE_NAME + 1);
        for bad in [
            "",
            "1events",
            "ev-ents",
            "ev ents",
            "a.b.c",
            ".events",
            "events.",
            "e\"; DROP TABLE x; --",
            "événements",
            long.as_str(),
        ] {
            assert!(TableName::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            TableName::parse("app.events").unwrap().quoted(),
            "\"app\".\"events\""
        );
    }
}
