//! WebSocket: handshake validation and the session (events out, client
//! messages in), shared by the CGI and the listener.

pub mod handshake;
pub mod inbound;
pub mod reactor;
pub mod session;

use std::collections::HashMap;
use std::io;

use crate::clock::Clock;
use crate::config::{Config, Relay};
use crate::http::Status;
use crate::spool::tail::Start;

/// A refusal as (status, extra headers, reason).
pub type Refused = (
    Status,
    &'static [(&'static str, &'static str)],
    &'static str,
);

/// Checks that WebSocket is enabled and the handshake valid; returns the
/// `Sec-WebSocket-Accept` value.
pub fn answer(vars: &HashMap<String, String>, config: &Config) -> Result<String, Refused> {
    if !config.ws {
        return Err((
            Status(501, "Not Implemented"),
            &[],
            "WebSocket is not enabled here (NPH_EVENTS_WS=1, or serve --ws)",
        ));
    }
    handshake::accept(vars, &config.ws_origins).map_err(|r| (r.status(), r.headers(), r.reason()))
}

/// The `channel` and `lastEventId` query parameters (browsers cannot set
/// headers on a WebSocket, so resume is a parameter here).
pub fn channel_and_start(params: &[(String, String)]) -> Option<(String, Start)> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let channel = get("channel").unwrap_or(crate::spool::DEFAULT_CHANNEL);
    crate::spool::check_channel(channel).ok()?;
    let start = match get("lastEventId").filter(|v| !v.is_empty()) {
        Some(id) => Start::After(crate::spool::parse_id(id)?),
        None => Start::Now,
    };
    Some((channel.to_owned(), start))
}

/// The 101 head: a status line (listener, NPH) or `Status:` (parsed CGI).
pub fn switching_protocols(accept: &str, status_header: bool) -> Vec<u8> {
    let first = if status_header {
        "Status: 101 Switching Protocols"
    } else {
        "HTTP/1.1 101 Switching Protocols"
    };
    format!(
        "{first}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

/// Session settings for this request.
pub fn settings(config: &Config, vars: &HashMap<String, String>) -> session::Settings {
    let var = |k: &str| vars.get(k).map(String::as_str);
    let may_publish = match config.ws_relay {
        Relay::Off => false,
        Relay::Open => true,
        Relay::Auth => {
            crate::auth::authorize(config, var("REMOTE_USER"), var("HTTP_AUTHORIZATION")).is_ok()
        }
    };
    session::Settings {
        mode: config.ws_mode,
        may_publish,
        max_message: config.max_body as usize,
        rate: config.ws_rate,
        heartbeat: config.heartbeat,
        max_duration: config.max_duration,
    }
}

/// Publishes a client's text message to `channel`.
pub fn publish(config: &Config, channel: &str, text: &str, clock: &dyn Clock) -> io::Result<u64> {
    let message = crate::publish::Message {
        event: None,
        data: text.to_owned(),
    };
    crate::app::append(config, channel, &message, clock)
}
