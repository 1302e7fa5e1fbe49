//! The answer to a stream request that came through a GRIP proxy: the
//! proxy is told to hold the client on the channel (`Grip-Hold: stream`,
//! `Grip-Channel` with `prev-id`, the last id the client got, so the proxy
//! orders what follows), to send the heartbeat comment when the stream is
//! quiet (`Grip-Keep-Alive`), and is given what the client must get first:
//! the opening comment, `retry:`, and the backlog after `Last-Event-ID`
//! (a `reset` included, as a direct stream sends it). Then the origin is
//! done: no process and no connection is held for the client.

use std::io;

use crate::config::Config;
use crate::handler::Subscribe;
use crate::http::{self, Reply};
use crate::spool::tail::{Start, Tailer};
use crate::spool::Spool;
use crate::stream;

pub use super::publish::EMPTY;

/// Where to read a channel from its first event, without the `reset` a
/// resume before the oldest event gets (none was missed: there were
/// none).
fn from_the_first(spool: &Spool, channel: &str) -> io::Result<Start> {
    let segments = match crate::spool::list_segments(&spool.channel_dir(channel)) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(match segments.first() {
        Some(&first) => Start::After(first.saturating_sub(1)),
        None => Start::Now,
    })
}

/// The hold for `s`, read from `spool`.
///
/// The proxy is told the last id the client has (`prev-id`) and where to
/// ask for what it missed (`Grip-Link: rel=next`, this same URL): each
/// published item names the id before it, and when one does not follow the
/// last the proxy has, it asks that URL with `Grip-Last`, and the answer is
/// the events after that id (no opening lines then) and the same hold. So
/// an event published between this read and the proxy's subscription is
/// not lost, and none is sent twice.
pub fn answer(config: &Config, spool: &Spool, s: &Subscribe) -> io::Result<Reply> {
    let mut body = Vec::with_capacity(512);
    let continues = s.grip.as_ref().is_some_and(|g| g.continues);
    if !continues {
        stream::opening_lines(config, &mut body);
    }
    let start = match s.start {
        // The proxy asks what followed "nothing yet": all there is now.
        Start::After(EMPTY) if continues => from_the_first(spool, &s.channel)?,
        other => other,
    };
    let mut reader = Tailer::open(spool, &s.channel, start, &mut body)?;
    reader.poll(&mut body, false)?;
    let prev = reader.last_id().unwrap_or(EMPTY);
    let channel = format!("{}; prev-id={prev}", s.channel);
    // Records are UTF-8: publishing refuses anything else.
    let body = String::from_utf8(body).map_err(|e| io::Error::other(e.to_string()))?;
    let heartbeat = config.heartbeat.as_secs().max(1);
    let mut reply = Reply::body(http::OK, "text/event-stream; charset=utf-8", body)
        .header("Grip-Hold", "stream")
        .header("Grip-Channel", channel)
        .header(
            "Grip-Keep-Alive",
            format!(":\\n\\n; format=cstring; timeout={heartbeat}"),
        );
    if let Some(g) = &s.grip {
        reply = reply.header("Grip-Link", format!("<{}>; rel=next", g.link));
    }
    reply = reply.header("X-Accel-Buffering", "no");
    for (k, v) in &s.headers {
        reply = reply.header(k, v.clone());
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::append::{append_and_wake, NewEvent};
    use crate::spool::tail::Start;

    fn spool(tag: &str) -> (std::path::PathBuf, Spool) {
        let dir = std::env::temp_dir().join(format!("nph-hold-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let spool = Spool::open(&dir).unwrap();
        (dir, spool)
    }

    fn subscribe(channel: &str, start: Start) -> Subscribe {
        Subscribe {
            channel: channel.into(),
            start,
            head_only: false,
            headers: vec![("Vary", "Origin".into())],
            grip: Some(crate::handler::GripHold {
                link: "/events?channel=news".into(),
                continues: false,
            }),
        }
    }

    fn header<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn hold_with_the_backlog_and_the_last_id() {
        let (dir, spool) = spool("backlog");
        let config = Config::default();
        let empty = answer(&config, &spool, &subscribe("news", Start::Now)).unwrap();
        assert_eq!(
            header(&empty, "Grip-Channel"),
            Some("news; prev-id=0"),
            "no id yet"
        );
        assert_eq!(header(&empty, "Grip-Hold"), Some("stream"));
        assert_eq!(
            header(&empty, "Grip-Keep-Alive"),
            Some(":\\n\\n; format=cstring; timeout=15")
        );
        assert_eq!(header(&empty, "Vary"), Some("Origin"));
        assert_eq!(
            header(&empty, "Grip-Link"),
            Some("</events?channel=news>; rel=next")
        );
        assert!(empty.text().contains("retry: 3000\n"), "{}", empty.text());
        let retention = config.retention;
        let ids: Vec<u64> = (0..3)
            .map(|i| {
                let data = format!("e{i}");
                let new = NewEvent {
                    event: None,
                    data: &data,
                };
                append_and_wake(&spool, "news", new, &retention, 1_000_000).unwrap()
            })
            .collect();
        let now = answer(&config, &spool, &subscribe("news", Start::Now)).unwrap();
        assert_eq!(
            header(&now, "Grip-Channel"),
            Some(format!("news; prev-id={}", ids[2]).as_str())
        );
        assert!(!now.text().contains("data: e"), "from now: no backlog");
        let resume = answer(&config, &spool, &subscribe("news", Start::After(ids[0]))).unwrap();
        assert!(
            resume.text().contains("data: e1\n") && resume.text().contains("data: e2\n"),
            "{}",
            resume.text()
        );
        assert!(!resume.text().contains("data: e0"));
        assert_eq!(
            header(&resume, "Grip-Channel"),
            Some(format!("news; prev-id={}", ids[2]).as_str())
        );
        // "What followed nothing": every event, no reset.
        let mut first = subscribe("news", Start::After(EMPTY));
        first.grip.as_mut().unwrap().continues = true;
        let all = answer(&config, &spool, &first).unwrap();
        assert!(
            all.text()
                .starts_with(&format!("id: {}\ndata: e0\n\n", ids[0])),
            "{}",
            all.text()
        );
        assert!(!all.text().contains("reset"));
        let beyond = answer(
            &config,
            &spool,
            &subscribe("news", Start::After(ids[2] + 100)),
        )
        .unwrap();
        assert!(
            beyond.text().contains("event: reset\n"),
            "{}",
            beyond.text()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
