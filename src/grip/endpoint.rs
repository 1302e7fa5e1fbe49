//! A GRIP proxy's publish URL: `http://[user:password@]host[:port]/path`,
//! checked when the configuration is read.

use std::fmt;

/// A publish endpoint: `http://[user:password@]host[:port]/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// Port (80 when not given).
    pub port: u16,
    /// Path and query.
    pub path: String,
    /// `Authorization` value, from the URL's user and password (Basic).
    pub auth: Option<String>,
}

impl Endpoint {
    /// Parses a publish URL. Only `http:` (a proxy on this host or the
    /// local network); the reason is given for anything else.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("{url}: GRIP publish URLs must start with http:// (for https, publish to a local proxy)")
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{url}: bad port {p:?}"))?,
            ),
            _ => (hostport, 80),
        };
        if host.is_empty() || path.contains([' ', '\r', '\n']) {
            return Err(format!("{url}: not a URL"));
        }
        let auth =
            userinfo.map(|u| format!("Basic {}", data_encoding::BASE64.encode(u.as_bytes())));
        Ok(Endpoint {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            path: path.to_owned(),
            auth,
        })
    }
}

impl fmt::Display for Endpoint {
    /// The URL without its credentials (for the log).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}:{}{}", self.host, self.port, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("http://u:p@127.0.0.1:5561/publish/").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("127.0.0.1", 5561, "/publish/")
        );
        assert_eq!(e.auth.as_deref(), Some("Basic dTpw"));
        assert_eq!(
            e.to_string(),
            "http://127.0.0.1:5561/publish/",
            "no credentials in the log"
        );
        let e = Endpoint::parse("http://proxy").unwrap();
        assert_eq!((e.port, e.path.as_str()), (80, "/"));
        assert!(Endpoint::parse("https://api.example/publish/")
            .unwrap_err()
            .contains("http://"));
        assert!(Endpoint::parse("http://h:99999/").is_err());
        assert!(Endpoint::parse("http://:1/").is_err());
    }
}
