//! Which web pages may make a browser talk to the site: the rule both the
//! WebSocket handshake and publishing follow.
//!
//! A browser says which page a request comes from (`Origin`, else
//! `Referer`). That page may talk to the site when it is the site itself
//! or one of the allowed origins (`origins`, `*` = any). "The site
//! itself" means the `Origin` equals the request's own scheme and `Host`,
//! *and* that `Host` is one of the site's names (`hosts`, or a loopback
//! name): a page on `evil.example` whose name an attacker points at the
//! site's address (DNS rebinding) sends `Host: evil.example` and matching
//! `Origin`, and is refused because the site does not answer to that name.
//!
//! The request's scheme is `https` when the web server terminated TLS
//! (CGI `HTTPS=on`) or a proxy in front says so (`X-Forwarded-Proto`),
//! else `http`. A client can only make the check stricter with a forged
//! `X-Forwarded-Proto`, not let another origin in: a browser page cannot
//! set that header on a WebSocket handshake or a simple POST.

use crate::config::Config;
use crate::http::{Refusal, Status};
use crate::request::Request;

/// Why a browser's request is refused (403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The page's origin is neither the site nor an allowed origin.
    Foreign(String),
    /// The origin matches `Host`, but the site does not answer to that
    /// name.
    UnknownHost(String),
    /// `Origin: null` (a sandboxed frame, a `data:` page, a redirect).
    Opaque,
    /// A browser form or text POST without an `Origin` to check.
    NoOrigin,
    /// The browser itself says the request is cross-site.
    CrossSite,
    /// A preflight asks to send headers nph-events does not read.
    Headers(String),
}

impl Refusal for Refused {
    fn status(&self) -> Status {
        crate::http::FORBIDDEN
    }

    fn reason(&self) -> String {
        match self {
            Refused::Foreign(o) => {
                format!("Origin {o} may not do this here; list it in NPH_EVENTS_ORIGINS")
            }
            Refused::UnknownHost(h) => format!(
                "this site does not answer to the name {h}; list the site's names in \
                 NPH_EVENTS_HOSTS (the same-origin rule checks them)"
            ),
            Refused::Opaque => "requests from an opaque origin (Origin: null) are refused".into(),
            Refused::NoOrigin => {
                "a browser form or text POST must carry an Origin header to be accepted".into()
            }
            Refused::CrossSite => "a cross-site request from a browser is refused".into(),
            Refused::Headers(h) => format!(
                "a cross-origin request may send Authorization, Content-Type and \
                 Last-Event-ID, not {h}"
            ),
        }
    }
}

/// A browser page's origin as it came: `scheme://host[:port]`.
fn normalize(origin: &str) -> Option<(String, String)> {
    let (scheme, rest) = origin.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let host = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    if host.is_empty() || host.contains('@') {
        return None;
    }
    Some((scheme.clone(), without_default_port(&scheme, &host)))
}

/// `host:443` for https and `host:80` for http name the default port.
fn without_default_port(scheme: &str, host: &str) -> String {
    let default = match scheme {
        "https" | "wss" => ":443",
        _ => ":80",
    };
    host.strip_suffix(default).unwrap_or(host).to_owned()
}

/// The name part of `host[:port]` (brackets kept for IPv6).
fn name_of(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

/// A loopback name: `localhost`, `127.x.y.z`, `[::1]`.
fn is_loopback(name: &str) -> bool {
    name == "localhost"
        || name == "[::1]"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

/// Whether the site answers to `host` (`name[:port]`, lower case): a
/// configured name (with its port, if the entry gives one) or loopback.
fn known_host(host: &str, hosts: &[String]) -> bool {
    let name = name_of(host);
    is_loopback(name)
        || hosts.iter().any(|h| {
            let h = h.to_ascii_lowercase();
            h == host || (!h.contains(':') && h == name)
        })
}

/// The request's own origin: its scheme and `Host` (lower case, without
/// a default port).
fn own_origin(request: &Request) -> Option<(String, String)> {
    let host = request.headers.host.as_deref()?.trim().to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    let https = request
        .headers
        .forwarded_proto
        .as_deref()
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    let scheme = if https { "https" } else { "http" };
    Some((scheme.to_owned(), without_default_port(scheme, &host)))
}

/// Whether a page at `origin` may make this request: an allowed origin,
/// or the site itself under one of its names. `*` in the list lets any
/// page in only where `any` is true (WebSocket, reads without
/// credentials), never to publish with a visitor's credentials.
fn check_origin_with(
    origin: &str,
    request: &Request,
    config: &Config,
    any: bool,
) -> Result<(), Refused> {
    let origin = origin.trim();
    if origin.eq_ignore_ascii_case("null") {
        return Err(Refused::Opaque);
    }
    if listed(origin, config) || (any && config.origins.iter().any(|a| a == "*")) {
        return Ok(());
    }
    same_origin(origin, request, config)
}

/// Whether `origin` is named in the allowed list (not by `*`).
fn listed(origin: &str, config: &Config) -> bool {
    config
        .origins
        .iter()
        .any(|a| a != "*" && a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// Whether `origin` is the site itself, under one of its names.
fn same_origin(origin: &str, request: &Request, config: &Config) -> Result<(), Refused> {
    let foreign = || Refused::Foreign(origin.to_owned());
    let (scheme, host) = normalize(origin).ok_or_else(foreign)?;
    let own = own_origin(request).ok_or_else(foreign)?;
    // A WebSocket page may name its scheme ws/wss in some clients.
    let scheme = match scheme.as_str() {
        "ws" => "http".to_owned(),
        "wss" => "https".to_owned(),
        _ => scheme,
    };
    if (scheme, host.clone()) != own {
        return Err(foreign());
    }
    if !known_host(&host, &config.hosts) {
        return Err(Refused::UnknownHost(host));
    }
    Ok(())
}

/// What a page on another origin may do with a response (CORS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// Nothing to say: no `Origin`, or the site's own page.
    SameOrigin,
    /// A listed origin: it may read, with credentials.
    Origin(String),
    /// `*`: any page may read, without credentials.
    Any,
}

impl Cors {
    /// The response headers that say so. `Vary: Origin` whenever other
    /// origins are configured: the answer depends on who asks.
    pub fn headers(&self, config: &Config) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        match self {
            Cors::SameOrigin => {}
            Cors::Origin(origin) => {
                out.push(("Access-Control-Allow-Origin", origin.clone()));
                out.push(("Access-Control-Allow-Credentials", "true".to_owned()));
            }
            Cors::Any => out.push(("Access-Control-Allow-Origin", "*".to_owned())),
        }
        if !config.origins.is_empty() {
            out.push(("Vary", "Origin".to_owned()));
        }
        out
    }
}

/// Whether the page a request comes from may read the answer, and how:
/// a stream (`EventSource`, with or without `withCredentials`) or a
/// publish's result. A page on an origin that is neither the site nor
/// allowed is refused before anything is opened for it.
pub fn check_read(request: &Request, config: &Config) -> Result<Cors, Refused> {
    let Some(origin) = request.headers.origin.as_deref().map(str::trim) else {
        return Ok(Cors::SameOrigin);
    };
    if origin.is_empty() {
        return Ok(Cors::SameOrigin);
    }
    if origin.eq_ignore_ascii_case("null") {
        return Err(Refused::Opaque);
    }
    if listed(origin, config) {
        return Ok(Cors::Origin(origin.to_owned()));
    }
    match same_origin(origin, request, config) {
        Ok(()) => Ok(Cors::SameOrigin),
        Err(_) if config.origins.iter().any(|a| a == "*") => Ok(Cors::Any),
        Err(e) => Err(e),
    }
}

/// The request headers a preflight may ask to send.
const PREFLIGHT_HEADERS: &[&str] = &["authorization", "content-type", "last-event-id"];

/// Answers a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`):
/// a listed origin (or the site's own) may GET and POST with credentials
/// and the headers nph-events reads; `*` alone may GET. Anything else is
/// refused, and the browser does not send the request.
pub fn preflight(
    request: &Request,
    config: &Config,
) -> Result<Vec<(&'static str, String)>, Refused> {
    let cors = check_read(request, config)?;
    let methods = match cors {
        Cors::Any => "GET",
        _ => "GET, POST",
    };
    let asked = request.headers.preflight_headers.as_deref().unwrap_or("");
    let unknown: Vec<&str> = asked
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty() && !PREFLIGHT_HEADERS.contains(&h.to_ascii_lowercase().as_str()))
        .collect();
    if !unknown.is_empty() {
        return Err(Refused::Headers(unknown.join(", ")));
    }
    let mut out = cors.headers(config);
    out.push(("Access-Control-Allow-Methods", methods.to_owned()));
    out.push((
        "Access-Control-Allow-Headers",
        "Authorization, Content-Type, Last-Event-ID".to_owned(),
    ));
    out.push(("Access-Control-Max-Age", "600".to_owned()));
    Ok(out)
}

/// A WebSocket handshake: a request without `Origin` is not from a
/// browser page and is let through (credentials still apply).
pub fn check_handshake(request: &Request, config: &Config) -> Result<(), Refused> {
    match request.headers.origin.as_deref().map(str::trim) {
        None | Some("") => Ok(()),
        Some(origin) => check_origin_with(origin, request, config, true),
    }
}

/// A publishing POST: refused when a browser was made to send it from a
/// page that is neither the site nor allowed (cross-site request forgery:
/// a form or `text/plain` POST needs no preflight, and the browser adds
/// the visitor's cached credentials). Judged by `Origin`, else `Referer`,
/// else `Sec-Fetch-Site`; a browser's form or text POST must carry
/// `Origin`. A request with none of them is not from a browser page.
pub fn check_publish(request: &Request, config: &Config) -> Result<(), Refused> {
    let h = &request.headers;
    fn present(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
    if let Some(origin) = present(&h.origin) {
        return check_origin_with(origin, request, config, false);
    }
    let from_browser = present(&h.referer).is_some() || present(&h.fetch_site).is_some();
    if from_browser && simple_type(h.content_type.as_deref()) {
        return Err(Refused::NoOrigin);
    }
    if let Some(site) = present(&h.fetch_site) {
        if !site.eq_ignore_ascii_case("same-origin") && !site.eq_ignore_ascii_case("none") {
            return Err(Refused::CrossSite);
        }
    }
    if let Some(referer) = present(&h.referer) {
        let (scheme, host) = normalize(referer).ok_or(Refused::CrossSite)?;
        return check_origin_with(&format!("{scheme}://{host}"), request, config, false);
    }
    Ok(())
}

/// The content types a page can POST cross-site without a preflight.
fn simple_type(content_type: Option<&str>) -> bool {
    let essence = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "" | "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Method, Protocol};

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut r = Request::new(
            Method::Post,
            Protocol::Http11,
            Some("/events".into()),
            String::new(),
        );
        for (k, v) in headers {
            r.headers.set(k, v);
        }
        r
    }

    fn site(hosts: &[&str], origins: &[&str]) -> Config {
        Config {
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            origins: origins.iter().map(|s| s.to_string()).collect(),
            ..Config::default()
        }
    }

    #[test]
    fn same_origin_needs_a_known_host() {
        let c = site(&["example.org"], &[]);
        let same = [("Host", "example.org"), ("Origin", "http://example.org")];
        assert_eq!(check_handshake(&request(&same), &c), Ok(()));
        assert_eq!(
            check_handshake(&request(&same), &site(&[], &[])).map_err(|e| e.status().0),
            Err(403)
        );
        // DNS rebinding: Origin and Host agree, the name is not the site's.
        let rebound = [
            ("Host", "evil.example:8080"),
            ("Origin", "http://evil.example:8080"),
        ];
        assert_eq!(
            check_handshake(&request(&rebound), &c),
            Err(Refused::UnknownHost("evil.example:8080".into()))
        );
        // Loopback names always count (the demo, local tests).
        let local = [
            ("Host", "127.0.0.1:8080"),
            ("Origin", "http://127.0.0.1:8080"),
        ];
        assert_eq!(check_handshake(&request(&local), &site(&[], &[])), Ok(()));
        // Ports must agree unless the entry names none.
        let port = [
            ("Host", "example.org:8443"),
            ("Origin", "http://example.org:8443"),
        ];
        assert_eq!(check_handshake(&request(&port), &c), Ok(()));
        let c2 = site(&["example.org:443"], &[]);
        assert!(check_handshake(&request(&port), &c2).is_err());
    }

    #[test]
    fn the_scheme_counts() {
        let c = site(&["example.org"], &[]);
        let https_page = [("Host", "example.org"), ("Origin", "https://example.org")];
        assert!(
            check_handshake(&request(&https_page), &c).is_err(),
            "http request"
        );
        let mut tls = https_page.to_vec();
        tls.push(("X-Forwarded-Proto", "https"));
        assert_eq!(check_handshake(&request(&tls), &c), Ok(()));
        let default_port = [
            ("Host", "example.org:443"),
            ("Origin", "https://example.org"),
            ("X-Forwarded-Proto", "https"),
        ];
        assert_eq!(check_handshake(&request(&default_port), &c), Ok(()));
    }

    #[test]
    fn allowed_origins_and_non_browsers() {
        let c = site(&["example.org"], &["https://app.example"]);
        let app = [("Host", "example.org"), ("Origin", "https://app.example")];
        assert_eq!(check_handshake(&request(&app), &c), Ok(()));
        let same = [("Host", "example.org"), ("Origin", "http://example.org")];
        assert_eq!(
            check_handshake(&request(&same), &c),
            Ok(()),
            "the site itself too"
        );
        let any = site(&[], &["*"]);
        let evil = [("Host", "example.org"), ("Origin", "https://evil.example")];
        assert_eq!(check_handshake(&request(&evil), &any), Ok(()));
        assert!(check_handshake(&request(&evil), &c).is_err());
        assert_eq!(
            check_handshake(&request(&[("Host", "x")]), &c),
            Ok(()),
            "no Origin"
        );
        let null = [("Host", "example.org"), ("Origin", "null")];
        assert_eq!(check_handshake(&request(&null), &c), Err(Refused::Opaque));
    }

    /// A page on another site makes the visitor's browser POST a form
    /// (with cached Basic credentials): refused however it is dressed.
    #[test]
    fn cross_site_publishing_is_refused() {
        let c = site(&["example.org"], &[]);
        let host = ("Host", "example.org");
        let form = ("Content-Type", "application/x-www-form-urlencoded");
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[host, form, ("Origin", "https://evil.example")], false),
            (&[host, form, ("Origin", "null")], false),
            (&[host, form, ("Referer", "https://evil.example/x")], false),
            (&[host, form, ("Sec-Fetch-Site", "cross-site")], false),
            (
                &[
                    host,
                    ("Content-Type", "text/plain"),
                    ("Referer", "http://example.org/a"),
                ],
                false,
            ),
            (
                &[
                    host,
                    ("Content-Type", "application/json"),
                    ("Sec-Fetch-Site", "cross-site"),
                ],
                false,
            ),
            (&[host, form, ("Origin", "http://example.org")], true),
            (
                &[
                    host,
                    ("Content-Type", "application/json"),
                    ("Referer", "http://example.org/p"),
                ],
                true,
            ),
            (&[host, form], true), // curl, a script: no browser page
            (
                &[
                    host,
                    ("Content-Type", "application/json"),
                    ("Sec-Fetch-Site", "same-origin"),
                ],
                true,
            ),
        ];
        for (headers, ok) in cases {
            assert_eq!(
                check_publish(&request(headers), &c).is_ok(),
                *ok,
                "{headers:?}"
            );
        }
    }
}
