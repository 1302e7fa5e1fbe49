//! A response head as the client received it: status line and headers.
//!
//! Parsed by hand rather than with `httparse` because curl prints HTTP/2
//! heads as `HTTP/2 200`, which an HTTP/1.x parser refuses, and the doctor
//! must read both the same way.

/// One response head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    /// `1.0`, `1.1` or `2` (what follows `HTTP/`).
    pub version: String,
    pub status: u16,
    /// Names lower-cased, values trimmed, in the order received.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// Parses the bytes of a head (status line, header lines, without or
    /// with the blank line). `None` when the first line is not a status line.
    pub fn parse(bytes: &[u8]) -> Option<Head> {
        let text = String::from_utf8_lossy(bytes);
        let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
        let status_line = lines.next()?;
        let rest = status_line.strip_prefix("HTTP/")?;
        let mut parts = rest.split_whitespace();
        let version = parts.next()?.to_owned();
        let status = parts.next()?.parse().ok()?;
        let mut headers = Vec::new();
        for line in lines {
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        Some(Head {
            version,
            status,
            headers,
        })
    }

    /// The first value of header `name` (lower case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether header `name` lists `token` (comma-separated, any case).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// `HTTP/1.1`, `HTTP/2`, … for reports.
    pub fn protocol(&self) -> String {
        format!("HTTP/{}", self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http1_and_curl_http2_heads() {
        let h =
            Head::parse(b"HTTP/1.1 200 OK\r\nServer: Apache\r\nVary: a, Origin\r\n\r\n").unwrap();
        assert_eq!((h.version.as_str(), h.status), ("1.1", 200));
        assert_eq!(h.get("server"), Some("Apache"));
        assert!(h.has_token("vary", "origin"));
        let h = Head::parse(b"HTTP/2 200 \r\ncontent-type: text/event-stream\r\n\r\n").unwrap();
        assert_eq!((h.protocol().as_str(), h.status), ("HTTP/2", 200));
        assert_eq!(h.get("content-type"), Some("text/event-stream"));
        assert!(Head::parse(b"garbage\r\n\r\n").is_none());
        assert!(Head::parse(b"HTTP/1.1 abc\r\n\r\n").is_none());
    }
}
