//! The live demo page: one self-contained HTML file (no external files, no
//! CDN), compiled into the binary.

const PAGE: &str = include_str!("demo.html");

/// What the page's WebSocket panel can do where it is served. A browser
/// never learns why a handshake failed (no status, only code 1006), so
/// the server tells the page in a `nph-events-ws` meta tag, and the
/// panel explains itself instead of retrying a `501`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ws {
    /// WebSocket upgrades are taken: the panel connects.
    On,
    /// Not enabled (`NPH_EVENTS_WS`, `serve --ws`): the panel says how.
    Off,
    /// Enabled, but this is Apache running the CGI, which cannot pass
    /// frames (and no GRIP proxy is in front): the panel says what works.
    ApacheCgi,
}

impl Ws {
    /// The panel's state for a server with WebSocket `enabled`, answering
    /// as a CGI under Apache (`apache_cgi`) and with or without a GRIP
    /// proxy in front (which holds the socket itself).
    pub fn of(enabled: bool, apache_cgi: bool, grip_proxy: bool) -> Ws {
        match (enabled, apache_cgi && !grip_proxy) {
            (false, _) => Ws::Off,
            (true, true) => Ws::ApacheCgi,
            (true, false) => Ws::On,
        }
    }

    fn meta(self) -> &'static str {
        match self {
            Ws::On => "on",
            Ws::Off => "off",
            Ws::ApacheCgi => "apache-cgi",
        }
    }
}

/// The page, pointed at `stream_url` (escaped for an HTML attribute), its
/// WebSocket panel set for `ws`.
pub fn page(stream_url: &str, ws: Ws) -> String {
    let mut escaped = String::with_capacity(stream_url.len());
    for c in stream_url.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c if c.is_control() => {}
            c => escaped.push(c),
        }
    }
    PAGE.replacen("__STREAM_URL__", &escaped, 1)
        .replacen("__WS__", ws.meta(), 1)
}

/// True when a request's `Accept` asks for a page rather than a stream:
/// a browser navigating to the URL (`text/html`), not an `EventSource`.
pub fn wants_page(accept: Option<&str>) -> bool {
    let accept = accept.unwrap_or("").to_ascii_lowercase();
    accept.contains("text/html") && !accept.contains("text/event-stream")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_is_escaped_and_page_is_self_contained() {
        let p = page("/cgi-bin/x.cgi?a=1&b=\"><script>", Ws::On);
        assert!(p.contains(r#"content="/cgi-bin/x.cgi?a=1&amp;b=&quot;&gt;&lt;script&gt;""#));
        assert!(!p.contains("__STREAM_URL__"));
        assert!(
            !p.contains("http://") && !p.contains("https://"),
            "no external resources"
        );
        // Shown to readers as the way to subscribe from their own page.
        assert!(p.contains("new EventSource("));
        assert!(p.contains(r#"<meta name="nph-events-ws" content="on">"#));
    }

    #[test]
    fn websocket_panel_state() {
        assert_eq!(Ws::of(false, false, false), Ws::Off);
        assert_eq!(Ws::of(false, true, true), Ws::Off);
        assert_eq!(Ws::of(true, false, false), Ws::On);
        assert_eq!(Ws::of(true, true, false), Ws::ApacheCgi);
        assert_eq!(
            Ws::of(true, true, true),
            Ws::On,
            "a GRIP proxy holds the socket"
        );
        for (ws, meta) in [
            (Ws::On, "on"),
            (Ws::Off, "off"),
            (Ws::ApacheCgi, "apache-cgi"),
        ] {
            let p = page("events", ws);
            let tag = format!(r#"<meta name="nph-events-ws" content="{meta}">"#);
            assert!(p.contains(&tag), "{tag}");
            assert!(!p.contains("__WS__"));
        }
    }

    #[test]
    fn accept_negotiation() {
        assert!(wants_page(Some(
            "text/html,application/xhtml+xml,*/*;q=0.8"
        )));
        assert!(!wants_page(Some("text/event-stream")));
        assert!(!wants_page(Some("text/event-stream, text/html")));
        assert!(!wants_page(Some("*/*")));
        assert!(!wants_page(None));
    }
}
