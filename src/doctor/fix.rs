//! Who answers in front of the program (from the response headers), and
//! the exact fix for what the doctor found, worded for that server.

use super::head::Head;
use super::target::Target;

/// The server software answering the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Server {
    Apache,
    Nginx,
    Lighttpd,
    /// `nph-events serve` itself.
    Listener,
    /// No `Server` header and an `nph-` name: Apache passing the
    /// program's own head through (NPH), which adds nothing.
    NphPassthrough,
    Other(String),
    Unknown,
}

/// A content delivery network, recognised by its own headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cdn {
    Cloudflare,
    Fastly,
    CloudFront,
    Akamai,
}

/// What was recognised in front of the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Front {
    pub server: Server,
    pub cdn: Option<Cdn>,
    /// `Via` as received (proxies on the way).
    pub via: Option<String>,
    /// The `Server` header as received.
    pub server_header: Option<String>,
}

/// Recognises the server and any CDN from every head seen (the first
/// one carrying a header wins).
pub fn detect(heads: &[&Head], target: &Target) -> Front {
    let first = |name: &str| heads.iter().find_map(|h| h.get(name)).map(str::to_owned);
    let has = |name: &str| heads.iter().any(|h| h.get(name).is_some());
    let server_header = first("server");
    let via = first("via");
    let lower = server_header
        .clone()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let via_lower = via.clone().unwrap_or_default().to_ascii_lowercase();
    let cdn = if has("cf-ray") || lower == "cloudflare" {
        Some(Cdn::Cloudflare)
    } else if has("x-amz-cf-id") || via_lower.contains("cloudfront") {
        Some(Cdn::CloudFront)
    } else if has("x-fastly-request-id")
        || has("fastly-debug-digest")
        || has("x-served-by") && has("x-timer")
    {
        Some(Cdn::Fastly)
    } else if has("akamai-grn") || has("x-akamai-transformed") || lower.contains("akamai") {
        Some(Cdn::Akamai)
    } else {
        None
    };
    let server = if lower.contains("apache") {
        Server::Apache
    } else if lower.contains("nginx") || lower.contains("openresty") {
        Server::Nginx
    } else if lower.contains("lighttpd") {
        Server::Lighttpd
    } else if lower.starts_with("nph-events") {
        Server::Listener
    } else if server_header.is_none() && target.nph_name() {
        Server::NphPassthrough
    } else if let Some(s) = &server_header {
        Server::Other(s.clone())
    } else {
        Server::Unknown
    };
    Front {
        server,
        cdn,
        via,
        server_header,
    }
}

impl Front {
    /// One line for the report.
    pub fn describe(&self) -> String {
        let mut s = match &self.server {
            Server::Apache => "Apache".to_owned(),
            Server::Nginx => "nginx".to_owned(),
            Server::Lighttpd => "lighttpd".to_owned(),
            Server::Listener => "nph-events serve (direct)".to_owned(),
            Server::NphPassthrough => {
                "no Server header, and an nph- name: Apache running the program in NPH mode"
                    .to_owned()
            }
            Server::Other(_) => "another server".to_owned(),
            Server::Unknown => "unknown (no Server header)".to_owned(),
        };
        if let Some(h) = &self.server_header {
            s.push_str(&format!(" (Server: {h})"));
        }
        if let Some(v) = &self.via {
            s.push_str(&format!(", Via: {v}"));
        }
        if let Some(c) = self.cdn {
            s.push_str(&format!(", behind {c:?}"));
        }
        s
    }
}

/// What went wrong, as far as fixes care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Symptoms {
    pub live: bool,
    /// The answer was compressed, or compression was shown to hold it.
    pub compressed: bool,
    pub http2: bool,
}

/// The fixes, most specific first; empty when there is nothing to fix.
pub fn fixes(front: &Front, s: Symptoms, target: &Target) -> Vec<String> {
    let name = target.file_name();
    let mut out = Vec::new();
    if s.compressed {
        out.push(compression_fix(front, name));
    }
    if s.live {
        return out;
    }
    if s.http2 && target.nph_name() {
        out.push(format!(
            "HTTP/2 with the NPH name {name:?}: Apache's mod_http2 holds an NPH program's output \
             until it exits. Use the parsed-header name (any name without nph-: \
             `cgi-bin/install --name events.cgi DIR`, then that URL), or serve this host over \
             HTTP/1.1 only (`Protocols http/1.1` in its VirtualHost). Until then each \
             client leaves the program running after it has gone, until Apache restarts or \
             NPH_EVENTS_MAX_DURATION ends it"
        ));
    }
    if let Some(cdn) = front.cdn {
        out.push(cdn_fix(cdn));
    }
    match &front.server {
        Server::Lighttpd => out.push(
            "lighttpd holds a CGI's whole response until the program exits: set \
             `server.stream-response-body = 2` in lighttpd.conf (lighttpd-conf/nph-events.conf \
             does), then restart lighttpd"
                .to_owned(),
        ),
        Server::Nginx => out.push(
            "nginx buffers the proxied response: `proxy_buffering off;` in the location \
             (`fastcgi_buffering off;` for FastCGI), as nginx-conf/nph-events-locations.conf has. \
             nph-events sends `X-Accel-Buffering: no`, which turns buffering off unless nginx \
             ignores it: remove X-Accel-Buffering from `proxy_ignore_headers` (and from anything \
             that strips it on the way), then `nginx -s reload`"
                .to_owned(),
        ),
        Server::Apache if !(s.compressed || s.http2 && target.nph_name()) => out.push(format!(
            "Apache holds the output of {name:?}: an output filter (mod_deflate, mod_brotli, \
             mod_substitute; `SetEnv no-gzip 1`, `SetEnv no-brotli 1`, `FilterChain !` for it) or \
             mod_fcgid (`FcgidOutputBufferSize 0`); on HTTP/1.1 the nph- name \
             (`cgi-bin/install DIR`) bypasses every filter"
        )),
        Server::Listener if front.via.is_none() && front.cdn.is_none() => out.push(
            "the listener streams live itself: look for a proxy on the client's side (a corporate \
             proxy or antivirus that scans downloads)"
                .to_owned(),
        ),
        _ if out.is_empty() => out.push(match &front.via {
            Some(via) => format!(
                "a proxy is in between (Via: {via}): turn off its response buffering and compression \
                 for this URL"
            ),
            None => "something between the program and this client buffers the response: turn off \
                     response buffering and compression for this URL in each proxy on the way"
                .to_owned(),
        }),
        _ => {}
    }
    out
}

fn compression_fix(front: &Front, name: &str) -> String {
    match (&front.server, front.cdn) {
        (_, Some(Cdn::Cloudflare)) => "Cloudflare compresses the stream: a Compression Rule \
             that disables compression for this path (or for text/event-stream)"
            .to_owned(),
        (Server::Apache, _) | (Server::NphPassthrough, _) => format!(
            "Apache compresses the stream (mod_deflate/mod_brotli), which holds it until the program \
             exits: for {name:?} add `SetEnv no-gzip 1` and `SetEnv no-brotli 1`, and `FilterChain !` \
             (or drop the SetOutputFilter/AddOutputFilterByType DEFLATE that covers it), as \
             apache-conf/nph-events.conf does for nph-events.cgi and events.cgi; or, on HTTP/1.1, \
             use the nph- name (`cgi-bin/install DIR` installs nph-events.cgi), whose output no \
             filter touches"
        ),
        (Server::Nginx, _) => "nginx compresses the stream: `gzip off;` in its location (or take \
             text/event-stream out of gzip_types)"
            .to_owned(),
        (Server::Lighttpd, _) => "lighttpd compresses the stream: take text/event-stream out of \
             `deflate.mimetypes`"
            .to_owned(),
        _ => "something compresses the stream: turn compression off for text/event-stream on the way"
            .to_owned(),
    }
}

fn cdn_fix(cdn: Cdn) -> String {
    match cdn {
        Cdn::Cloudflare => "Cloudflare: a Cache Rule that bypasses the cache for this path and no \
             compression for it (Cloudflare streams text/event-stream otherwise; it closes idle \
             connections after 100 s)"
            .to_owned(),
        Cdn::Fastly => "Fastly: `return(pass)` for this URL in vcl_recv and \
             `set beresp.do_stream = true;` in vcl_fetch"
            .to_owned(),
        Cdn::CloudFront => "CloudFront: a cache behavior for this path with the CachingDisabled \
             policy and compression off"
            .to_owned(),
        Cdn::Akamai => "Akamai: no caching (no-store) and no compression for this path, so the \
             edge passes the response as it arrives"
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(lines: &str) -> Head {
        Head::parse(format!("HTTP/1.1 200 OK\r\n{lines}\r\n\r\n").as_bytes()).unwrap()
    }

    fn url(u: &str) -> Target {
        Target::parse(u).unwrap()
    }

    #[test]
    fn recognises_servers_and_cdns() {
        let t = url("http://h/cgi-bin/events.cgi");
        assert_eq!(
            detect(&[&head("Server: Apache/2.4.71 (Debian)")], &t).server,
            Server::Apache
        );
        assert_eq!(
            detect(&[&head("Server: nginx/1.22.1")], &t).server,
            Server::Nginx
        );
        assert_eq!(
            detect(&[&head("Server: lighttpd-test")], &t).server,
            Server::Lighttpd
        );
        let nph = url("http://h/cgi-bin/nph-events.cgi");
        assert_eq!(
            detect(&[&head("Date: x")], &nph).server,
            Server::NphPassthrough
        );
        assert_eq!(detect(&[&head("Date: x")], &t).server, Server::Unknown);
        let f = detect(&[&head("Server: cloudflare\r\nCF-RAY: 1")], &t);
        assert_eq!(f.cdn, Some(Cdn::Cloudflare));
        assert_eq!(
            detect(&[&head("Via: 1.1 abc.cloudfront.net (CloudFront)")], &t).cdn,
            Some(Cdn::CloudFront)
        );
    }

    #[test]
    fn names_the_fix_for_each_culprit() {
        let t = url("http://h/cgi-bin/stream.cgi");
        let apache = detect(&[&head("Server: Apache")], &t);
        let f = fixes(
            &apache,
            Symptoms {
                compressed: true,
                ..Symptoms::default()
            },
            &t,
        )
        .join("\n");
        assert!(f.contains("SetEnv no-gzip 1") && f.contains("nph-"), "{f}");
        let nph = url("http://h/cgi-bin/nph-events.cgi");
        let f = fixes(
            &apache,
            Symptoms {
                http2: true,
                ..Symptoms::default()
            },
            &nph,
        )
        .join("\n");
        assert!(
            f.contains("parsed-header name") && f.contains("Protocols http/1.1"),
            "{f}"
        );
        let light = detect(&[&head("Server: lighttpd")], &t);
        assert!(
            fixes(&light, Symptoms::default(), &t)[0].contains("server.stream-response-body = 2")
        );
        let nginx = detect(&[&head("Server: nginx")], &t);
        let f = fixes(&nginx, Symptoms::default(), &t).join("\n");
        assert!(
            f.contains("proxy_buffering off;") && f.contains("proxy_ignore_headers"),
            "{f}"
        );
        let live = Symptoms {
            live: true,
            ..Symptoms::default()
        };
        assert!(fixes(&nginx, live, &t).is_empty());
        let unknown = detect(&[&head("Via: 1.1 squid")], &t);
        assert!(fixes(&unknown, Symptoms::default(), &t)[0].contains("squid"));
    }
}
