//! libpq DSNs, in both forms (`postgresql://...?...` and `key=value ...`): the options this
//! library implements itself are taken out of the text, and the rest is left for
//! tokio-postgres to parse, so that one parser stays the authority on everything else.

use crate::error::{Error, Result};

/// Options the library implements itself instead of the driver: TLS ([`crate::connect`]).
pub const OWN_OPTIONS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// A DSN split into the library's own options (decoded, in order of appearance) and the
/// rest of its text.
#[derive(Debug, PartialEq, Eq)]
pub struct Split {
    pub rest: String,
    pub own: Vec<(String, String)>,
}

impl Split {
    /// The last value given for `key` (libpq: a later setting wins).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.own
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The rest of the DSN, parsed by tokio-postgres.
    pub fn config(&self) -> Result<tokio_postgres::Config> {
        self.rest.parse().map_err(|e: tokio_postgres::Error| {
            // The parser's messages may quote the DSN, and with it a password: only those
            // that name an option (never its value) are passed on.
            std::error::Error::source(&e)
                .map(ToString::to_string)
                .filter(|m| {
                    m.starts_with("unknown option") || m.starts_with("invalid value for option")
                })
                .map_or_else(invalid, |reason| {
                    Error::invalid(format!("invalid DSN: {reason}"))
                })
        })
    }
}

fn invalid() -> Error {
    // Never the DSN itself: it may hold a password.
    Error::invalid(
        "invalid DSN: expected postgresql://user:password@host:port/dbname or key=value pairs",
    )
}

/// `dsn` without [`OWN_OPTIONS`], and their values.
pub fn split(dsn: &str) -> Result<Split> {
    let trimmed = dsn.trim_start();
    if trimmed.starts_with("postgresql://") || trimmed.starts_with("postgres://") {
        split_url(dsn)
    } else {
        split_pairs(dsn)
    }
}

fn split_url(dsn: &str) -> Result<Split> {
    let Some((base, query)) = dsn.split_once('?') else {
        return Ok(Split {
            rest: dsn.to_owned(),
            own: Vec::new(),
        });
    };
    let mut own = Vec::new();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(invalid)?;
        let key = percent_decode(key)?;
        if OWN_OPTIONS.contains(&key.as_str()) {
            own.push((key, percent_decode(value)?));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(Split { rest, own })
}

fn percent_decode(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or_else(invalid)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| invalid())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid())
}

/// `key = value` pairs separated by whitespace; a value is single-quoted (`\'` and `\\`
/// inside) or runs to the next whitespace (`\` escapes the next character).
fn split_pairs(dsn: &str) -> Result<Split> {
    let mut own = Vec::new();
    let mut rest = String::new();
    let mut chars = dsn.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if chars.next().map(|(_, c)| c) != Some('=') || key.is_empty() {
            return Err(invalid());
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if(|(_, c)| *c == '\'').is_some() {
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('\'') => break,
                    Some('\\') => value.push(chars.next().ok_or_else(invalid)?.1),
                    Some(c) => value.push(c),
                    None => return Err(invalid()),
                }
            }
        } else {
            while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next().ok_or_else(invalid)?.1);
                } else {
                    value.push(c);
                }
            }
        }
        let end = chars.peek().map_or(dsn.len(), |&(i, _)| i);
        if OWN_OPTIONS.contains(&key.as_str()) {
            own.push((key, value));
        } else {
            rest.push_str(dsn[start..end].trim_end());
            rest.push(' ');
        }
    }
    Ok(Split {
        rest: rest.trim_end().to_owned(),
        own,
    })
}

#[cfg(test)]
mod tests {
    use super::split;

    fn own(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn urls_lose_only_the_own_options() {
        let s = split("postgresql://u:p%3Fw@h:1,g:2/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca%20x.pem").unwrap();
        assert_eq!(s.rest, "postgresql://u:p%3Fw@h:1,g:2/db?application_name=x");
        assert_eq!(
            s.own,
            own(&[("sslmode", "verify-full"), ("sslrootcert", "/tmp/ca x.pem")])
        );
        let s = split("postgres://h/db?sslmode=require").unwrap();
        assert_eq!(s.rest, "postgres://h/db");
        assert_eq!(s.get("sslmode"), Some("require"));
        assert_eq!(split("postgresql://h/db").unwrap().own, own(&[]));
    }

    #[test]
    fn key_value_pairs_lose_only_the_own_options() {
        let s = split(r"host=a,b  port = 1,2 sslmode= 'verify-ca' password='it\'s x' sslcert=/c\ d user=u sslkey=k").unwrap();
        assert_eq!(s.rest, r"host=a,b port = 1,2 password='it\'s x' user=u");
        assert_eq!(
            s.own,
            own(&[
                ("sslmode", "verify-ca"),
                ("sslcert", "/c d"),
                ("sslkey", "k")
            ])
        );
        assert_eq!(
            split("sslmode=a sslmode=b").unwrap().get("sslmode"),
            Some("b")
        );
    }

    #[test]
    fn malformed_dsns_are_refused_without_echoing_them() {
        for dsn in [
            "host",
            "=x",
            "password='secret",
            "postgresql://h/db?sslmode",
            "postgresql://h/db?sslrootcert=%zz",
        ] {
            let err = split(dsn).unwrap_err().to_string();
            assert!(err.starts_with("invalid DSN"), "{dsn}: {err}");
            assert!(!err.contains("secret"));
        }
    }
}
