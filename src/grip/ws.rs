//! WebSocket through a GRIP proxy (WebSocket-over-HTTP): the proxy holds
//! the client's WebSocket and sends each of its events to the origin as a
//! short POST (`application/websocket-events`). The handler decides what
//! each event gets ([`crate::handler::Batch`]); this completes the answer with what needs
//! the spool: on `OPEN`, the backlog after the client's last id (as the
//! JSON text frames a direct WebSocket gets), then the GRIP control
//! message that subscribes the connection to its channel, skipping the
//! messages it sent itself.

use std::io;

use crate::grip::wsevents::{encode, WsEvent};
use crate::handler::Batch;
use crate::http::{self, Reply};
use crate::spool::tail::Tailer;
use crate::spool::{self, Spool};
use crate::ws::record_to_json;

/// The GRIP control message that names the connection (its `user`
/// meta), which the `skip-self` filter compares with a message's sender.
pub fn set_user_control(connection: &str) -> String {
    let control = serde_json::json!({ "type": "set-meta", "name": "user", "value": connection });
    format!("c:{control}")
}

/// The GRIP control message that subscribes the connection.
pub fn subscribe_control(channel: &str) -> String {
    let control = serde_json::json!({
        "type": "subscribe",
        "channel": channel,
        "filters": ["skip-self"],
    });
    format!("c:{control}")
}

/// The answer to `batch`, the backlog read from `spool`.
pub fn answer(spool: &Spool, batch: &Batch) -> io::Result<Reply> {
    let mut body = Vec::new();
    for event in &batch.events {
        encode(event, &mut body);
        if let (WsEvent::Open, Some(s)) = (event, &batch.open) {
            let mut backlog = Vec::new();
            let mut reader = Tailer::open(spool, &s.channel, s.start, &mut backlog)?;
            reader.poll(&mut backlog, false)?;
            for record in spool::records(&backlog) {
                if let Some(json) = record_to_json(record) {
                    encode(&WsEvent::Text(json), &mut body);
                }
            }
            encode(
                &WsEvent::Text(set_user_control(&batch.connection)),
                &mut body,
            );
            encode(&WsEvent::Text(subscribe_control(&s.channel)), &mut body);
        }
    }
    let mut reply = Reply::bytes(http::OK, "application/websocket-events", body)
        // Control messages start with "c:"; every other text goes to the
        // client as it is (no "m:" prefix).
        .header("Sec-WebSocket-Extensions", "grip; message-prefix=\"\"");
    for (k, v) in &batch.headers {
        reply = reply.header(k, v.clone());
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grip::wsevents::parse;
    use crate::handler::Subscribe;
    use crate::spool::append::{append_and_wake, NewEvent};
    use crate::spool::tail::Start;

    #[test]
    fn open_gets_the_backlog_then_the_subscription() {
        let dir = std::env::temp_dir().join(format!("nph-gripws-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spool = Spool::open(&dir).unwrap();
        let retention = crate::spool::Retention::default();
        let ids: Vec<u64> = ["a", "b"]
            .iter()
            .map(|d| {
                let new = NewEvent {
                    event: None,
                    data: d,
                };
                append_and_wake(&spool, "chat", new, &retention, 5_000).unwrap()
            })
            .collect();
        let batch = Batch {
            events: vec![WsEvent::Open, WsEvent::Pong(Vec::new())],
            open: Some(Subscribe {
                channel: "chat".into(),
                start: Start::After(ids[0]),
                head_only: false,
                headers: Vec::new(),
                grip: None,
            }),
            headers: vec![("Set-Meta-Nph-Rate", "1:2".into())],
            connection: "c1".into(),
        };
        let reply = answer(&spool, &batch).unwrap();
        assert_eq!(reply.content_type, "application/websocket-events");
        let extensions = (
            "Sec-WebSocket-Extensions",
            "grip; message-prefix=\"\"".into(),
        );
        assert!(reply.headers.contains(&extensions));
        assert!(reply.headers.contains(&("Set-Meta-Nph-Rate", "1:2".into())));
        let events = parse(&reply.body).unwrap();
        assert_eq!(events[0], WsEvent::Open);
        let WsEvent::Text(missed) = &events[1] else {
            panic!("{events:?}")
        };
        assert!(missed.contains(r#""data":"b""#), "{missed}");
        // Named, then subscribed: skip-self compares the two.
        assert_eq!(events[2], WsEvent::Text(set_user_control("c1")));
        assert_eq!(events[3], WsEvent::Text(subscribe_control("chat")));
        let set = set_user_control("c1");
        assert!(
            set.starts_with("c:{") && set.contains(r#""name":"user""#),
            "{set}"
        );
        let sub = subscribe_control("chat");
        assert!(sub.starts_with("c:{") && sub.contains("skip-self"), "{sub}");
        assert_eq!(events[4], WsEvent::Pong(Vec::new()));
        assert_eq!(events.len(), 5);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Close codes are two raw bytes, not text: the answer carries them as
    /// they are (found through Pushpin: a 1003, 1009 or echoed 1000 became
    /// a 500).
    #[test]
    fn close_codes_and_binary_payloads_are_sent_as_bytes() {
        let dir = std::env::temp_dir().join(format!("nph-gripws-close-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spool = Spool::open(&dir).unwrap();
        let events = vec![WsEvent::Pong(vec![0xff, 0x00]), WsEvent::Close(Some(1003))];
        let batch = Batch {
            events: events.clone(),
            open: None,
            headers: Vec::new(),
            connection: "c".into(),
        };
        let reply = answer(&spool, &batch).unwrap();
        assert!(reply.body.windows(2).any(|w| w == [0x03, 0xeb]));
        assert_eq!(parse(&reply.body).unwrap(), events);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
