//! The URL under test: scheme, host, port, path and query, and the
//! variations the doctor requests (another channel).

use std::fmt;

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    /// As written (a bracketed IPv6 literal keeps its brackets).
    pub host: String,
    pub port: u16,
    /// Path, starting with `/`.
    pub path: String,
    /// Query without `?` (may be empty).
    pub query: String,
}

impl Target {
    /// Parses `url`; the error is one line for the user.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(format!("{url:?} is not an http:// or https:// URL"));
        };
        let rest = rest.split('#').next().unwrap_or("");
        let (authority, path_query) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err("user:password@ in the URL is not supported".into());
        }
        let (host, port) = split_port(authority)?;
        if host.is_empty()
            || host
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(format!("{url:?} has no valid host"));
        }
        let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
        if path_query
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(format!(
                "{url:?}: spaces and control characters must be %-encoded"
            ));
        }
        let path = if path.is_empty() { "/" } else { path };
        Ok(Target {
            https,
            host: host.to_owned(),
            port: port.unwrap_or(if https { 443 } else { 80 }),
            path: path.to_owned(),
            query: query.to_owned(),
        })
    }

    /// Path and query, as the request line carries them.
    pub fn request_target(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }

    /// The `Host` header value.
    pub fn host_header(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The host as a socket address takes it (IPv6 without brackets).
    pub fn connect_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// The value of query parameter `name`, if present (undecoded).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|p| p.split_once('=').or(Some((p, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// The same URL with `channel=` set to `channel` (replacing any).
    pub fn with_channel(&self, channel: &str) -> Target {
        let mut parts: Vec<String> = self
            .query
            .split('&')
            .filter(|p| !p.is_empty() && p.split('=').next() != Some("channel"))
            .map(str::to_owned)
            .collect();
        parts.push(format!("channel={channel}"));
        Target {
            query: parts.join("&"),
            ..self.clone()
        }
    }

    /// Whether the program's file name starts with `nph-` (Apache then
    /// passes its output raw: NPH mode).
    pub fn nph_name(&self) -> bool {
        self.path
            .rsplit('/')
            .find(|s| !s.is_empty())
            .is_some_and(|name| name.starts_with("nph-"))
    }

    /// The last path segment, for naming the program in a fix.
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("")
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(
            f,
            "{scheme}://{}{}",
            self.host_header(),
            self.request_target()
        )
    }
}

fn split_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let bad = || format!("{authority:?}: the port is not a number from 1 to 65535");
    if authority.starts_with('[') {
        let end = authority
            .find(']')
            .ok_or_else(|| format!("{authority:?}: unclosed ["))?;
        let (host, rest) = authority.split_at(end + 1);
        return match rest.strip_prefix(':') {
            None if rest.is_empty() => Ok((host, None)),
            Some(p) => p
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .map(|p| (host, Some(p)))
                .ok_or_else(bad),
            None => Err(bad()),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, p)) => p
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .map(|p| (host, Some(p)))
            .ok_or_else(bad),
        None => Ok((authority, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_sets_the_channel() {
        let t =
            Target::parse("http://127.0.0.1:8080/cgi-bin/nph-events.cgi?channel=a&x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8080, "/cgi-bin/nph-events.cgi")
        );
        assert_eq!(t.param("channel"), Some("a"));
        assert!(t.nph_name());
        assert_eq!(
            t.with_channel("b").request_target(),
            "/cgi-bin/nph-events.cgi?x=1&channel=b"
        );
        let t = Target::parse("https://example.org").unwrap();
        assert_eq!(
            (t.port, t.request_target().as_str(), t.nph_name()),
            (443, "/", false)
        );
        assert_eq!(t.to_string(), "https://example.org/");
        let t = Target::parse("http://[::1]:81/events.cgi").unwrap();
        assert_eq!(
            (t.connect_host(), t.host_header().as_str()),
            ("::1", "[::1]:81")
        );
    }

    #[test]
    fn refuses_what_is_not_a_usable_url() {
        for bad in [
            "ftp://x/",
            "example.org",
            "http://",
            "http://host:0/",
            "http://host:99999/",
            "http://host:x/",
            "http://a b/",
            "http://u:p@host/",
            "http://[::1/",
            "http://h/a b",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
