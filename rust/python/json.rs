//! JSON to Python objects, straight from the text the server sent (a stored event's payload
//! and metadata, a snapshot's state): one pass, no `serde_json::Value` built and dropped in
//! between, strings without escapes made from the text itself.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyList, PyString, PyType};
use std::borrow::Cow;
use std::collections::HashMap;

use super::errors::data_error;
use crate::input::canonical_number;

/// A JSON number, from its text, as Python holds it without loss. PostgreSQL keeps jsonb
/// numbers as exact decimals and writes them without exponent: an integer comes back as an
/// `int` (a `Decimal` beyond Python's limit on digits in int text), a number with a fraction
/// as a `float` when the float is exactly the number stored, else as a `Decimal`.
fn number<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    static DECIMAL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    if let Ok(i) = text.parse::<i64>() {
        return Ok(i.into_pyobject(py)?.into_any());
    }
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        if let Ok(int) = py.get_type::<pyo3::types::PyInt>().call1((text,)) {
            return Ok(int);
        }
    } else if let Ok(f) = text.parse::<f64>() {
        if f.is_finite() && canonical_number(&f.to_string()) == canonical_number(text) {
            return Ok(f.into_pyobject(py)?.into_any());
        }
    }
    let decimal = DECIMAL.get_or_try_init(py, || {
        Ok::<_, PyErr>(
            py.import("decimal")?
                .getattr("Decimal")?
                .cast_into::<PyType>()?
                .unbind(),
        )
    })?;
    decimal.bind(py).call1((text,))
}

/// The texts a batch of events repeats (payload keys, event types), each made a Python `str`
/// once and shared: no decoding per event, and each key's hash computed once. Bounded, as
/// the keys come from stored data: at most [`Self::MAX`] texts of up to [`Self::LONGEST`]
/// bytes; others are made each time. A text seen lately is found in a small table by its
/// length and ends before any hashing (measured: the map's hashing alone was a twentieth of
/// a catch-up read); a collision there only means the map is asked.
#[derive(Default)]
pub struct Texts<'py> {
    made: HashMap<String, Bound<'py, PyString>>,
    recent: Vec<Option<(String, Bound<'py, PyString>)>>,
}

impl<'py> Texts<'py> {
    const MAX: usize = 1024;
    const LONGEST: usize = 64;
    const RECENT: usize = 64;

    pub fn get(&mut self, py: Python<'py>, text: &str) -> Bound<'py, PyString> {
        let bytes = text.as_bytes();
        let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
            return PyString::new(py, text);
        };
        let slot = (bytes.len() * 31 + usize::from(*first) * 7 + usize::from(*last)) % Self::RECENT;
        if self.recent.is_empty() {
            self.recent.resize(Self::RECENT, None);
        }
        if let Some((seen, made)) = &self.recent[slot] {
            if seen == text {
                return made.clone();
            }
        }
        let made = if let Some(made) = self.made.get(text) {
            made.clone()
        } else {
            let made = PyString::new(py, text);
            if text.len() > Self::LONGEST || self.made.len() >= Self::MAX {
                return made;
            }
            self.made.insert(text.to_owned(), made.clone());
            made
        };
        self.recent[slot] = Some((text.to_owned(), made.clone()));
        made
    }
}

/// The JSON object `text` (the server's text of a `jsonb` object) as a `dict`, its keys
/// shared through `keys`.
pub fn object_text<'py>(
    py: Python<'py>,
    text: &str,
    keys: &mut Texts<'py>,
) -> PyResult<Bound<'py, PyDict>> {
    if text == "{}" {
        let dict = PyDict::new(py);
        untrack(&dict);
        return Ok(dict);
    }
    let mut parser = Parser::new(py, text, keys);
    let dict = parser.object()?;
    parser.end(dict)
}

/// The JSON value `text` (the server's text of a `jsonb` value) as Python objects.
pub fn value_text<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    let mut keys = Texts::default();
    let mut parser = Parser::new(py, text, &mut keys);
    let value = parser.value()?;
    parser.end(value)
}

/// The deepest nesting read, as `serde_json` (which checks what is appended) allows.
const MAX_DEPTH: usize = 128;

/// A recursive descent over JSON text that is valid by construction (the server's output),
/// still checked at every step: anything else is an error, never a guess.
struct Parser<'t, 'k, 'py> {
    text: &'t str,
    at: usize,
    depth: usize,
    py: Python<'py>,
    keys: &'k mut Texts<'py>,
}

impl<'t, 'k, 'py> Parser<'t, 'k, 'py> {
    /// A parser of `text`, at its first value.
    fn new(py: Python<'py>, text: &'t str, keys: &'k mut Texts<'py>) -> Self {
        let mut parser = Self {
            text,
            at: 0,
            depth: 0,
            py,
            keys,
        };
        parser.space();
        parser
    }

    /// `read`, the value read, if nothing but white space follows it.
    fn end<T>(mut self, read: T) -> PyResult<T> {
        self.space();
        if self.at == self.text.len() {
            Ok(read)
        } else {
            Err(self.malformed())
        }
    }

    fn malformed(&self) -> PyErr {
        data_error(
            self.py,
            &format!("the server sent malformed JSON (at byte {})", self.at),
        )
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> PyResult<()> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.malformed())
        }
    }

    fn literal(&mut self, word: &str) -> PyResult<()> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.malformed())
        }
    }

    fn value(&mut self) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        Ok(match self.peek() {
            Some(b'{') => self.object()?.into_any(),
            Some(b'[') => self.array()?.into_any(),
            Some(b'"') => PyString::new(py, &self.string()?).into_any(),
            Some(b't') => {
                self.literal("true")?;
                PyBool::new(py, true).to_owned().into_any()
            }
            Some(b'f') => {
                self.literal("false")?;
                PyBool::new(py, false).to_owned().into_any()
            }
            Some(b'n') => {
                self.literal("null")?;
                py.None().into_bound(py)
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.at;
                while matches!(
                    self.peek(),
                    Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                ) {
                    self.at += 1;
                }
                number(py, &self.text[start..self.at])?
            }
            _ => return Err(self.malformed()),
        })
    }

    fn nested(&mut self) -> PyResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(data_error(
                self.py,
                &format!("a stored JSON value is nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn object(&mut self) -> PyResult<Bound<'py, PyDict>> {
        self.eat(b'{')?;
        self.nested()?;
        let dict = PyDict::new(self.py);
        let mut acyclic = true;
        self.space();
        if self.peek() == Some(b'}') {
            self.at += 1;
        } else {
            loop {
                self.space();
                let key = self.string()?;
                let key = self.keys.get(self.py, &key);
                self.space();
                self.eat(b':')?;
                self.space();
                let v = self.value()?;
                acyclic &= !gc_tracked(&v);
                dict.set_item(key, v)?;
                self.space();
                match self.peek() {
                    Some(b',') => self.at += 1,
                    Some(b'}') => {
                        self.at += 1;
                        break;
                    }
                    _ => return Err(self.malformed()),
                }
            }
        }
        self.depth -= 1;
        if acyclic {
            untrack(&dict);
        }
        Ok(dict)
    }

    fn array(&mut self) -> PyResult<Bound<'py, PyList>> {
        self.eat(b'[')?;
        self.nested()?;
        let list = PyList::empty(self.py);
        self.space();
        if self.peek() == Some(b']') {
            self.at += 1;
        } else {
            loop {
                self.space();
                list.append(self.value()?)?;
                self.space();
                match self.peek() {
                    Some(b',') => self.at += 1,
                    Some(b']') => {
                        self.at += 1;
                        break;
                    }
                    _ => return Err(self.malformed()),
                }
            }
        }
        self.depth -= 1;
        Ok(list)
    }

    /// A string: borrowed from the text when it has no escapes.
    fn string(&mut self) -> PyResult<Cow<'t, str>> {
        self.eat(b'"')?;
        let mut unescaped: Option<String> = None;
        loop {
            // Up to the next quote, backslash or control character: ASCII, so a character
            // boundary.
            let end = self.text.as_bytes()[self.at..]
                .iter()
                .position(|b| matches!(b, b'"' | b'\\' | 0..=0x1f))
                .map_or(self.text.len(), |n| self.at + n);
            let run = &self.text[self.at..end];
            self.at = end;
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(match unescaped {
                        None => Cow::Borrowed(run),
                        Some(mut text) => {
                            text.push_str(run);
                            Cow::Owned(text)
                        }
                    });
                }
                Some(b'\\') => {
                    self.at += 1;
                    let text = unescaped.get_or_insert_with(String::new);
                    text.push_str(run);
                    text.push(self.escape()?);
                }
                _ => return Err(self.malformed()),
            }
        }
    }

    /// The character of the escape after a backslash.
    fn escape(&mut self) -> PyResult<char> {
        let byte = self.peek().ok_or_else(|| self.malformed())?;
        self.at += 1;
        Ok(match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&unit) {
                    // A high surrogate: a low one must follow.
                    self.literal("\\u")?;
                    let low = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(self.malformed());
                    }
                    0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    unit
                };
                char::from_u32(code).ok_or_else(|| self.malformed())?
            }
            _ => return Err(self.malformed()),
        })
    }

    fn hex4(&mut self) -> PyResult<u32> {
        let digits = self
            .text
            .get(self.at..self.at + 4)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.malformed())?;
        self.at += 4;
        u32::from_str_radix(digits, 16).map_err(|_| self.malformed())
    }
}

/// Whether the cyclic garbage collector follows `obj` (a container that may be in a cycle).
pub fn gc_tracked(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: `obj` is a live object; the call only reads its header.
    unsafe { ffi::PyObject_GC_IsTracked(obj.as_ptr()) == 1 }
}

/// Stops the cyclic garbage collector following a dict or tuple that holds nothing it
/// follows: no reference cycle can pass through it. CPython applies the same rule to dicts
/// and tuples itself, but only when a collection reaches them; values built by the thousand
/// (a read's events and their payloads) were otherwise traversed collection after
/// collection, a seventh of a catch-up read's time. A dict given a container later is
/// followed again (CPython re-tracks it on insertion).
pub fn untrack(obj: &Bound<'_, PyAny>) {
    // SAFETY: `obj` is a live dict or tuple; untracking is allowed for any GC object and is a
    // no-op when it is not tracked.
    unsafe { ffi::PyObject_GC_UnTrack(obj.as_ptr().cast()) }
}
