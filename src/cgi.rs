//! A typed view of the CGI/1.1 request variables (RFC 3875).
//!
//! No I/O and no `std::env`: the caller passes the variables in, so tests
//! build requests from plain arrays. Only what the program needs is read;
//! header values are kept as data and never copied into response headers.

use std::collections::HashMap;

/// The HTTP version the server speaks to the client (`SERVER_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `HTTP/1.0`: the NPH status line must say 1.0 too.
    Http10,
    /// `HTTP/1.1`, and the fallback for anything unrecognised.
    Http11,
    /// `HTTP/2` or `HTTP/3`: servers buffer NPH output until exit.
    Http2OrLater,
}

impl Protocol {
    /// Maps `SERVER_PROTOCOL` to a known version. The request's own text is
    /// never echoed: the status line uses one of two fixed strings.
    pub fn from_var(value: Option<&str>) -> Protocol {
        match value.map(str::trim) {
            Some("HTTP/1.0") => Protocol::Http10,
            Some(v) if v.starts_with("HTTP/2") || v.starts_with("HTTP/3") => Protocol::Http2OrLater,
            _ => Protocol::Http11,
        }
    }

    /// The version written in an NPH status line.
    pub fn status_line_version(self) -> &'static str {
        match self {
            Protocol::Http10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        }
    }
}

/// What one request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `REQUEST_METHOD`, upper case as sent; `GET` when unset.
    pub method: String,
    /// From `SERVER_PROTOCOL`.
    pub protocol: Protocol,
    /// `QUERY_STRING`, still percent-encoded; empty when unset.
    pub query: String,
}

/// Longest query string accepted; longer ones get 400.
pub const MAX_QUERY: usize = 4096;

/// Why the query string was refused (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryError {
    /// Longer than [`MAX_QUERY`].
    TooLong,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A name or value that is not UTF-8 once decoded.
    NotUtf8,
}

impl QueryError {
    /// Short reason for the 400 body.
    pub fn reason(self) -> &'static str {
        match self {
            QueryError::TooLong => "query string too long",
            QueryError::BadEscape => "malformed percent-escape in query string",
            QueryError::NotUtf8 => "query string is not UTF-8",
        }
    }
}

impl Request {
    /// Builds the request from CGI variables (names and values as given).
    pub fn from_vars(vars: &HashMap<String, String>) -> Request {
        Request {
            method: vars
                .get("REQUEST_METHOD")
                .map(|m| m.trim().to_owned())
                .unwrap_or_else(|| "GET".to_owned()),
            protocol: Protocol::from_var(vars.get("SERVER_PROTOCOL").map(String::as_str)),
            query: vars.get("QUERY_STRING").cloned().unwrap_or_default(),
        }
    }

    /// The request a terminal run stands for: a plain HTTP/1.1 GET.
    pub fn terminal() -> Request {
        Request {
            method: "GET".to_owned(),
            protocol: Protocol::Http11,
            query: String::new(),
        }
    }

    /// Decodes the query as `application/x-www-form-urlencoded` pairs.
    /// Unknown names are allowed (cache busters such as `_=123` are common);
    /// what is malformed is refused whole.
    pub fn query_pairs(&self) -> Result<Vec<(String, String)>, QueryError> {
        if self.query.len() > MAX_QUERY {
            return Err(QueryError::TooLong);
        }
        form_pairs(&self.query)
    }
}

/// Decodes `application/x-www-form-urlencoded` text into pairs.
pub fn form_pairs(text: &str) -> Result<Vec<(String, String)>, QueryError> {
    text.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

/// Percent-decodes one form component (`+` is a space).
fn decode(s: &str) -> Result<String, QueryError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(QueryError::BadEscape)?;
                let hi = hex_value(hex[0]).ok_or(QueryError::BadEscape)?;
                let lo = hex_value(hex[1]).ok_or(QueryError::BadEscape)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| QueryError::NotUtf8)
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pairs: &[(&str, &str)]) -> Request {
        let vars = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Request::from_vars(&vars)
    }

    #[test]
    fn protocol_mapping_never_echoes_input() {
        assert_eq!(Protocol::from_var(Some("HTTP/1.0")), Protocol::Http10);
        assert_eq!(Protocol::from_var(Some("HTTP/1.1")), Protocol::Http11);
        assert_eq!(Protocol::from_var(Some("HTTP/2.0")), Protocol::Http2OrLater);
        assert_eq!(Protocol::from_var(Some("INCLUDED")), Protocol::Http11);
        assert_eq!(Protocol::from_var(None), Protocol::Http11);
        assert_eq!(
            Protocol::from_var(Some("HTTP/1.0\r\nX: y")).status_line_version(),
            "HTTP/1.1"
        );
    }

    #[test]
    fn query_decoding() {
        let r = req(&[("QUERY_STRING", "a=1&b=two%20x+y&--ws&&c=%C3%A9")]);
        assert_eq!(
            r.query_pairs().unwrap(),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "two x y".into()),
                ("--ws".into(), "".into()),
                ("c".into(), "é".into()),
            ]
        );
    }

    #[test]
    fn malformed_queries() {
        for (q, e) in [
            ("a=%", QueryError::BadEscape),
            ("a=%4", QueryError::BadEscape),
            ("a=%zz", QueryError::BadEscape),
            ("%ff=1", QueryError::NotUtf8),
        ] {
            assert_eq!(req(&[("QUERY_STRING", q)]).query_pairs(), Err(e), "{q}");
        }
        let long = "a".repeat(MAX_QUERY + 1);
        assert_eq!(
            req(&[("QUERY_STRING", &long)]).query_pairs(),
            Err(QueryError::TooLong)
        );
    }

    #[test]
    fn defaults_when_unset() {
        let r = req(&[]);
        assert_eq!(r.method, "GET");
        assert_eq!(r.query, "");
        assert_eq!(r.query_pairs().unwrap(), vec![]);
    }
}
