//! Events as they are stored and as they are read back.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::filter::reject_nul;

/// An event ready to be appended: validated at construction, before any I/O.
#[derive(Clone, Debug, PartialEq)]
pub struct StorableEvent {
    event_type: String,
    payload: Map<String, Value>,
    metadata: Map<String, Value>,
    occurred_at: i64,
}

/// The instants the store accepts: years 1 to 9999, UTC, in microseconds since the Unix
/// epoch (the range most languages' date types share).
pub const MIN_MICROS: i64 = -62_135_596_800_000_000;
pub const MAX_MICROS: i64 = 253_402_300_799_999_999;

pub(crate) fn check_time(what: &str, micros: i64) -> Result<i64> {
    if (MIN_MICROS..=MAX_MICROS).contains(&micros) {
        Ok(micros)
    } else {
        Err(Error::invalid(format!(
            "{what} must lie between the years 1 and 9999"
        )))
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

fn json_object(what: &str, text: &str) -> Result<Map<String, Value>> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Error::invalid(format!("{what} is not valid JSON: {e}")))?;
    match value {
        Value::Object(map) => {
            check_no_nul(what, &map)?;
            Ok(map)
        }
        other => Err(Error::invalid(format!(
            "{what} must be a JSON object, got {}",
            json_kind(&other)
        ))),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether a JSON value holds a NUL character in any string or key (jsonb cannot store one).
pub(crate) fn contains_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(contains_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

fn check_no_nul(what: &str, map: &Map<String, Value>) -> Result<()> {
    if map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)) {
        return Err(Error::invalid(format!(
            "{what} contains a NUL character (\\u0000), which PostgreSQL's jsonb cannot store"
        )));
    }
    Ok(())
}

impl StorableEvent {
    /// Builds an event from its type, payload JSON text, optional metadata JSON text and
    /// optional time of occurrence (microseconds since the epoch, UTC; now when absent).
    pub fn new(
        event_type: impl Into<String>,
        payload_json: &str,
        metadata_json: Option<&str>,
        occurred_at: Option<i64>,
    ) -> Result<Self> {
        let event_type = event_type.into();
        reject_nul("the event type", &event_type)?;
        if event_type.trim().is_empty() {
            return Err(Error::invalid("the event type must not be empty or blank"));
        }
        let payload = json_object("the payload", payload_json)?;
        let metadata = match metadata_json {
            Some(text) => json_object("the metadata", text)?,
            None => Map::new(),
        };
        Ok(Self {
            event_type,
            payload,
            metadata,
            occurred_at: check_time("occurred_at", occurred_at.unwrap_or_else(now_micros))?,
        })
    }

    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    pub fn payload(&self) -> &Map<String, Value> {
        &self.payload
    }

    pub fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }

    /// Microseconds since the Unix epoch, UTC.
    pub fn occurred_at(&self) -> i64 {
        self.occurred_at
    }
}

/// An event read from the store.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    pub sequence_number: i64,
    /// Microseconds since the Unix epoch, UTC.
    pub occurred_at: i64,
    pub event_type: String,
    pub payload: Map<String, Value>,
    pub metadata: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_event() {
        let e = StorableEvent::new("T", r#"{"a":1}"#, Some(r#"{"m":"x"}"#), Some(5)).unwrap();
        assert_eq!(e.event_type(), "T");
        assert_eq!(e.payload()["a"], 1);
        assert_eq!(e.metadata()["m"], "x");
        assert_eq!(e.occurred_at(), 5);
        assert!(StorableEvent::new("T", "{}", None, None)
            .unwrap()
            .metadata()
            .is_empty());
    }

    #[test]
    fn bad_events_are_rejected() {
        for (t, p, m) in [
            ("", "{}", None),
            ("  ", "{}", None),
            ("T\0", "{}", None),
            ("T", "[1]", None),
            ("T", "\"s\"", None),
            ("T", "null", None),
            ("T", "{", None),
            ("T", r#"{"a":"\u0000"}"#, None),
            ("T", r#"{"a\u0000":1}"#, None),
            ("T", r#"{"a":[{"b":"\u0000"}]}"#, None),
            ("T", "{}", Some("[]")),
            ("T", "{}", Some("nope")),
        ] {
            assert!(
                StorableEvent::new(t, p, m, None).is_err(),
                "{t:?} {p:?} {m:?}"
            );
        }
    }
}
