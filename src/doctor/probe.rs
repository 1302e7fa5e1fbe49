//! Probe events: published by `POST` to the stream's own URL with the
//! token, each with a text no one else sends, so its arrival can be found
//! in the stream and timed against the moment it was sent.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::capture::Capture;
use super::target::Target;
use super::transport::{exchange, Request, Transport};

/// A text unique to this run (time and process id; no secrecy needed).
pub fn nonce() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}-{:x}", nanos, std::process::id())
}

/// One published probe.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The event's data, to find it in the stream.
    pub data: String,
    /// When the POST began, since the stream's request.
    pub sent: Duration,
    /// The id the server gave it.
    pub id: Option<String>,
}

/// Why a publish failed: the status (0: no answer) and a line of detail.
#[derive(Debug, Clone)]
pub struct Refused {
    pub status: u16,
    pub detail: String,
}

/// Publishes `data` on `target` (its channel) with `token`.
pub fn publish(
    transport: &Transport,
    target: &Target,
    token: &str,
    data: &str,
    since: Instant,
) -> Result<Sent, Refused> {
    let request = Request {
        method: "POST",
        target,
        headers: vec![
            ("Authorization".into(), format!("Bearer {token}")),
            ("Content-Type".into(), "text/plain; charset=utf-8".into()),
            ("Connection".into(), "close".into()),
        ],
        body: data.as_bytes().to_vec(),
    };
    let sent = since.elapsed();
    let answer = exchange(transport, &request, Duration::from_secs(5), false, &|_| {
        false
    });
    let body = String::from_utf8_lossy(&answer.body_bytes())
        .trim()
        .to_owned();
    match answer.head.as_ref().map(|h| h.status) {
        Some(201) => Ok(Sent {
            data: data.to_owned(),
            sent,
            id: id_of(&body),
        }),
        Some(status) => Err(Refused {
            status,
            detail: first_line(&body),
        }),
        None => Err(Refused {
            status: 0,
            detail: no_answer(&answer),
        }),
    }
}

fn id_of(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get("id")?.as_str().map(str::to_owned)
}

/// The first line of an answer's body, shortened, for a report.
pub fn first_line(body: &str) -> String {
    let line = body.lines().next().unwrap_or("").trim();
    line.chars().take(160).collect()
}

/// Why there was no answer.
pub fn no_answer(c: &Capture) -> String {
    c.error
        .clone()
        .unwrap_or_else(|| "no answer within 5 s".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_id_from_a_201() {
        assert_eq!(
            id_of("{\"channel\":\"n\",\"id\":\"42\"}"),
            Some("42".into())
        );
        assert_eq!(id_of("created"), None);
        assert_ne!(nonce(), "");
    }
}
