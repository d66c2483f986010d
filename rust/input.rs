//! Checks that every input passes before any I/O: text PostgreSQL can store, JSON objects,
//! and the canonical text of a JSON number.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Rejects text holding a NUL character (PostgreSQL's text and jsonb cannot store one).
pub fn reject_nul(what: &str, s: &str) -> Result<()> {
    if s.contains('\0') {
        return Err(Error::invalid(format!(
            "{what} contains a NUL character, which PostgreSQL cannot store"
        )));
    }
    Ok(())
}

/// Whether a JSON value holds a NUL character in any string or key (jsonb cannot store one).
pub fn contains_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(contains_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// Parses JSON text that must hold an object jsonb can store.
pub fn json_object(what: &str, text: &str) -> Result<Map<String, Value>> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Error::invalid(format!("{what} is not valid JSON: {e}")))?;
    match value {
        Value::Object(map) => {
            if map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)) {
                return Err(Error::invalid(format!(
                    "{what} contains a NUL character (\\u0000), which PostgreSQL's jsonb cannot store"
                )));
            }
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

/// The canonical decimal text of a finite number: no exponent, no trailing fractional zeros,
/// no `-0`. jsonb compares numbers by their numeric value, so `1e16`, `10000000000000000`
/// and `1.0e16` are one value, and so is their canonical text. A float is taken at its
/// shortest round-trip digits, which is the text JSON encoders (Python's included) send.
pub fn canonical_number(text: &str) -> String {
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    let digits = match digits.split_once('.') {
        Some((whole, fraction)) => {
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() {
                whole.to_owned()
            } else {
                format!("{whole}.{fraction}")
            }
        }
        None => digits.to_owned(),
    };
    if digits == "0" {
        digits
    } else {
        format!("{sign}{digits}")
    }
}
