//! One HTTP request as the handler sees it, whichever front door it came
//! through: the CGI builds it from the server's variables (RFC 3875), the
//! listener from the request head it parsed. Built once, read by name.
//!
//! No I/O here. Header values are kept as data and never copied into a
//! response header; the NPH status line uses one of two fixed versions.

use std::collections::HashMap;

/// The HTTP version the server speaks to the client.
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
            Some("HTTP/1.0" | "HTTP/0.9") => Protocol::Http10,
            Some(v) if v.starts_with("HTTP/2") || v.starts_with("HTTP/3") => Protocol::Http2OrLater,
            _ => Protocol::Http11,
        }
    }

    /// The version written in a status line.
    pub fn status_line_version(self) -> &'static str {
        match self {
            Protocol::Http10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        }
    }
}

/// The request method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// Stream (or the demo page, or a WebSocket upgrade).
    Get,
    /// The head of what GET would answer.
    Head,
    /// Publish.
    Post,
    /// Anything else, as sent (answered with 405).
    Other(String),
}

impl Method {
    /// Parses a method name (case-sensitive, as HTTP says).
    pub fn parse(name: &str) -> Method {
        match name.trim() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            other => Method::Other(other.to_owned()),
        }
    }

    /// The name, for the log.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Other(m) => m,
        }
    }

    /// GET or HEAD: a request without a body.
    pub fn reads_only(&self) -> bool {
        matches!(self, Method::Get | Method::Head)
    }
}

/// The request headers the program reads (values as sent, trimmed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// `Accept`: a browser navigating here gets the demo page.
    pub accept: Option<String>,
    /// `Last-Event-ID`, sent by an `EventSource` when it reconnects.
    pub last_event_id: Option<String>,
    /// `Authorization` (the CGI also takes Apache's
    /// `REDIRECT_HTTP_AUTHORIZATION`, set when a rewrite passes it on).
    pub authorization: Option<String>,
    /// `Content-Type` of a POST body.
    pub content_type: Option<String>,
    /// `Content-Length` of a POST body, as sent.
    pub content_length: Option<String>,
    /// `Host`: the same-origin check of a WebSocket handshake.
    pub host: Option<String>,
    /// `Origin` of a WebSocket handshake.
    pub origin: Option<String>,
    /// `Upgrade`.
    pub upgrade: Option<String>,
    /// `Connection`.
    pub connection: Option<String>,
    /// `Sec-WebSocket-Key`.
    pub ws_key: Option<String>,
    /// `Sec-WebSocket-Version`.
    pub ws_version: Option<String>,
    /// `Referer`: where a browser's request came from, when it sends no
    /// `Origin` (the cross-site publish check).
    pub referer: Option<String>,
    /// `Sec-Fetch-Site`: a browser's own word on whether a request is
    /// cross-site.
    pub fetch_site: Option<String>,
    /// `X-Forwarded-Proto`: the scheme a proxy in front was reached by.
    pub forwarded_proto: Option<String>,
    /// `Access-Control-Request-Method`: what a CORS preflight asks for.
    pub preflight_method: Option<String>,
    /// `Access-Control-Request-Headers`: the headers it wants to send.
    pub preflight_headers: Option<String>,
    /// `Grip-Sig`: a GRIP proxy's signature on the request.
    pub grip_sig: Option<String>,
    /// `Grip-Last`: the last id a GRIP proxy has of a stream it holds.
    pub grip_last: Option<String>,
    /// `Connection-Id`: the proxy's name for a WebSocket it holds
    /// (WebSocket-over-HTTP).
    pub connection_id: Option<String>,
    /// `Meta-Nph-Rate`: the connection's publish allowance, kept by the
    /// proxy between requests (`tokens:unix-ms`).
    pub meta_rate: Option<String>,
}

impl Headers {
    /// Sets the header `name` (any case); a repeated header's values are
    /// joined with `, `, as HTTP allows for lists. Unknown names are
    /// ignored.
    pub fn set(&mut self, name: &str, value: &str) {
        let slot = match name.to_ascii_lowercase().as_str() {
            "accept" => &mut self.accept,
            "last-event-id" => &mut self.last_event_id,
            "authorization" => &mut self.authorization,
            "content-type" => &mut self.content_type,
            "content-length" => &mut self.content_length,
            "host" => &mut self.host,
            "origin" => &mut self.origin,
            "upgrade" => &mut self.upgrade,
            "connection" => &mut self.connection,
            "sec-websocket-key" => &mut self.ws_key,
            "sec-websocket-version" => &mut self.ws_version,
            "referer" => &mut self.referer,
            "sec-fetch-site" => &mut self.fetch_site,
            "x-forwarded-proto" => &mut self.forwarded_proto,
            "access-control-request-method" => &mut self.preflight_method,
            "access-control-request-headers" => &mut self.preflight_headers,
            "grip-sig" => &mut self.grip_sig,
            "connection-id" => &mut self.connection_id,
            "grip-last" => &mut self.grip_last,
            "meta-nph-rate" => &mut self.meta_rate,
            _ => return,
        };
        let value = value.trim();
        match slot {
            Some(v) => {
                v.push_str(", ");
                v.push_str(value);
            }
            None => *slot = Some(value.to_owned()),
        }
    }
}

/// What one request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method; `GET` when the CGI variable is unset.
    pub method: Method,
    /// The HTTP version.
    pub protocol: Protocol,
    /// The path (listener); `None` under CGI, where the script is the
    /// resource and anything after its name is ignored.
    pub path: Option<String>,
    /// The query string, still percent-encoded.
    pub query: String,
    /// The headers the program reads.
    pub headers: Headers,
    /// The user the web server authenticated (`REMOTE_USER`).
    pub remote_user: Option<String>,
    /// The URL of the script itself (`SCRIPT_NAME`), for the demo page.
    pub script_name: String,
    /// `SERVER_SOFTWARE`: Apache cannot pass WebSocket frames to a CGI.
    pub server_software: Option<String>,
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
    pub fn as_str(self) -> &'static str {
        match self {
            QueryError::TooLong => "query string too long",
            QueryError::BadEscape => "malformed percent-escape in query string",
            QueryError::NotUtf8 => "query string is not UTF-8",
        }
    }
}

impl Request {
    /// A request with no headers yet (its door fills them in).
    pub fn new(method: Method, protocol: Protocol, path: Option<String>, query: String) -> Request {
        Request {
            method,
            protocol,
            path,
            query,
            headers: Headers::default(),
            remote_user: None,
            script_name: String::new(),
            server_software: None,
        }
    }

    /// Builds the request from CGI variables (names and values as given).
    pub fn from_cgi(vars: &HashMap<String, String>) -> Request {
        let var = |name: &str| vars.get(name).map(|v| v.trim().to_owned());
        let mut request = Request::new(
            var("REQUEST_METHOD").map_or(Method::Get, |m| Method::parse(&m)),
            Protocol::from_var(vars.get("SERVER_PROTOCOL").map(String::as_str)),
            None,
            vars.get("QUERY_STRING").cloned().unwrap_or_default(),
        );
        let h = &mut request.headers;
        h.accept = var("HTTP_ACCEPT");
        h.last_event_id = var("HTTP_LAST_EVENT_ID");
        h.authorization = var("HTTP_AUTHORIZATION").or_else(|| var("REDIRECT_HTTP_AUTHORIZATION"));
        h.content_type = var("CONTENT_TYPE");
        h.content_length = var("CONTENT_LENGTH");
        h.host = var("HTTP_HOST");
        h.origin = var("HTTP_ORIGIN");
        h.upgrade = var("HTTP_UPGRADE");
        h.connection = var("HTTP_CONNECTION");
        h.ws_key = var("HTTP_SEC_WEBSOCKET_KEY");
        h.ws_version = var("HTTP_SEC_WEBSOCKET_VERSION");
        h.referer = var("HTTP_REFERER");
        h.fetch_site = var("HTTP_SEC_FETCH_SITE");
        h.forwarded_proto = var("HTTP_X_FORWARDED_PROTO");
        h.preflight_method = var("HTTP_ACCESS_CONTROL_REQUEST_METHOD");
        h.preflight_headers = var("HTTP_ACCESS_CONTROL_REQUEST_HEADERS");
        h.grip_sig = var("HTTP_GRIP_SIG");
        h.connection_id = var("HTTP_CONNECTION_ID");
        h.grip_last = var("HTTP_GRIP_LAST");
        h.meta_rate = var("HTTP_META_NPH_RATE");
        if var("HTTPS").is_some_and(|v| v.eq_ignore_ascii_case("on"))
            || var("REQUEST_SCHEME").is_some_and(|v| v.eq_ignore_ascii_case("https"))
        {
            // The web server terminated TLS: say so the way a proxy would.
            h.forwarded_proto = Some("https".to_owned());
        }
        request.remote_user = var("REMOTE_USER");
        request.script_name = var("SCRIPT_NAME").unwrap_or_default();
        request.server_software = var("SERVER_SOFTWARE");
        request
    }

    /// The request a terminal run stands for: a plain HTTP/1.1 GET.
    pub fn terminal() -> Request {
        Request::new(Method::Get, Protocol::Http11, None, String::new())
    }

    /// True when the request asks to upgrade to WebSocket at all.
    pub fn wants_websocket(&self) -> bool {
        self.headers
            .upgrade
            .as_deref()
            .is_some_and(|u| has_token(u, "websocket"))
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

/// True when the comma-separated `list` holds `token` (any case).
pub fn has_token(list: &str, token: &str) -> bool {
    list.split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
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

/// The value of the first pair named `name`.
pub fn param<'p>(pairs: &'p [(String, String)], name: &str) -> Option<&'p str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
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
        Request::from_cgi(&vars)
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
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.query, "");
        assert_eq!(r.query_pairs().unwrap(), vec![]);
    }

    #[test]
    fn cgi_variables_and_headers_become_the_same_request() {
        let r = req(&[
            ("REQUEST_METHOD", "POST"),
            ("REDIRECT_HTTP_AUTHORIZATION", "Bearer t"),
            ("HTTP_UPGRADE", "WebSocket"),
        ]);
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.headers.authorization.as_deref(), Some("Bearer t"));
        assert!(r.wants_websocket());
        let mut h = Headers::default();
        h.set("AUTHORIZATION", " Bearer t ");
        h.set("Upgrade", "WebSocket");
        h.set("X-Other", "ignored");
        assert_eq!(h.authorization, r.headers.authorization);
        assert_eq!(h.upgrade, r.headers.upgrade);
        h.set("connection", "keep-alive");
        h.set("Connection", "Upgrade");
        assert_eq!(h.connection.as_deref(), Some("keep-alive, Upgrade"));
    }
}
