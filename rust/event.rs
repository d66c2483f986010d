//! Events as they are stored and as they are read back.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::filter::check_tag;
use crate::input::{json_object, reject_nul};
use crate::time;

/// An event ready to be appended: validated at construction, before any I/O.
#[derive(Clone, Debug, PartialEq)]
pub struct StorableEvent {
    event_type: String,
    payload: Map<String, Value>,
    metadata: Map<String, Value>,
    occurred_at: i64,
    id: Option<Uuid>,
    tags: Vec<String>,
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
            occurred_at: time::check("occurred_at", occurred_at.unwrap_or_else(time::now))?,
            id: None,
            tags: Vec::new(),
        })
    }

    /// The event with `tags`: each a non-empty string; a repeated tag is kept once, at its
    /// first place, and the order is kept for reading back.
    pub fn with_tags(mut self, tags: Vec<String>) -> Result<Self> {
        let mut seen = std::collections::HashSet::with_capacity(tags.len());
        let mut kept = Vec::with_capacity(tags.len());
        for tag in tags {
            check_tag(&tag)?;
            if seen.insert(tag.clone()) {
                kept.push(tag);
            }
        }
        self.tags = kept;
        Ok(self)
    }

    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// The event with an id (a UUID in its text form): appending it again, once it is
    /// stored, stores nothing and returns the stored sequence number.
    pub fn with_id(mut self, id: &str) -> Result<Self> {
        self.id = Some(
            Uuid::parse_str(id)
                .map_err(|_| Error::invalid(format!("the event id {id:?} is not a UUID")))?,
        );
        Ok(self)
    }

    pub fn id(&self) -> Option<Uuid> {
        self.id
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
    pub payload: JsonText,
    pub metadata: JsonText,
    pub id: Option<Uuid>,
    pub tags: Vec<String>,
}

/// A JSON value as the server wrote it (an event's payload and metadata are objects): its
/// text, parsed by whoever reads it into what they need ([`Self::to_map`],
/// [`Self::to_value`], a type of their own through serde, or, in the Python bindings, Python
/// objects built straight from the text, without a `Value` in between).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JsonText(String);

impl JsonText {
    /// `text`, the server's text of a `jsonb` value.
    pub(crate) fn new(text: String) -> Self {
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The object (an error for any other value).
    pub fn to_map(&self) -> Result<Map<String, Value>> {
        json_object("a stored object", &self.0)
    }

    pub fn to_value(&self) -> Result<Value> {
        serde_json::from_str(&self.0)
            .map_err(|e| Error::invalid(format!("a stored value is not valid JSON: {e}")))
    }
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
        assert_eq!(e.id(), None);
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        assert_eq!(e.clone().with_id(id).unwrap().id().unwrap().to_string(), id);
        assert!(e.clone().with_id("67e55044").is_err());
        let tags = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let tagged = e.clone().with_tags(tags(&["b", "a", "b"])).unwrap();
        assert_eq!(
            tagged.tags(),
            tags(&["b", "a"]),
            "order kept, repeats dropped"
        );
        assert!(e.clone().with_tags(tags(&[""])).is_err());
        assert!(e.with_tags(tags(&["a\0"])).is_err());
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
