//! The live demo page: one self-contained HTML file (no external files, no
//! CDN), compiled into the binary.

const PAGE: &str = include_str!("demo.html");

/// The page, pointed at `stream_url` (escaped for an HTML attribute).
pub fn page(stream_url: &str) -> String {
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
        let p = page("/cgi-bin/x.cgi?a=1&b=\"><script>");
        assert!(p.contains(r#"content="/cgi-bin/x.cgi?a=1&amp;b=&quot;&gt;&lt;script&gt;""#));
        assert!(!p.contains("__STREAM_URL__"));
        assert!(
            !p.contains("http://") && !p.contains("https://"),
            "no external resources"
        );
        assert!(p.contains("new EventSource("));
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
