//! `nph-events stats`: the spool's numbers for the CGI side, the same
//! ones the listener's `/metrics` shows: channels, retained events (count
//! and id range), bytes, and connected readers per channel.
//!
//! Read-only ([`crate::spool::inspect`]): nothing is created, locked or
//! changed, not even a missing spool. Run it as the site's user (the
//! spool is private to it).

use std::io::Write;
use std::path::PathBuf;

use crate::config::Config;
use crate::spool::{self, inspect};

/// What a reader is, for the output.
const READERS_NOTE: &str = "a reader is a live wake-up socket: one per CGI stream (SSE or \
WebSocket client), one per channel per stream thread of each `nph-events serve` (however many \
clients it has there; its /metrics counts those)";

/// Prints the spool's numbers (text, or JSON with `json`); returns the
/// exit status: 0, or 1 when the spool cannot be read.
pub fn main(config: &Config, json: bool, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let root: PathBuf = config.spool.clone().unwrap_or_else(spool::default_root);
    let report = match gather(&root) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "nph-events stats: {e}");
            if e.kind() == std::io::ErrorKind::NotFound {
                let _ = writeln!(
                    err,
                    "nph-events stats: nothing was published or streamed with this spool as uid {} \
                     yet; run as the web server's user, or name the spool with --spool \
                     (NPH_EVENTS_SPOOL)",
                    crate::sys::effective_uid()
                );
            }
            return 1;
        }
    };
    let written = if json {
        writeln!(out, "{}", report.json())
    } else {
        out.write_all(report.text().as_bytes())
    };
    if written.is_err() {
        return 1;
    }
    0
}

/// Everything `stats` reports.
#[derive(Debug)]
struct Report {
    root: PathBuf,
    channels: Vec<(inspect::ChannelStats, usize)>,
    elsewhere: usize,
    stale: usize,
    problems: Vec<String>,
}

fn gather(root: &std::path::Path) -> std::io::Result<Report> {
    let spool = inspect::open(root)?;
    let channels = inspect::channels(&spool)?;
    let readers = inspect::readers(&spool)?;
    let elsewhere = readers.elsewhere(channels.iter().map(|c| c.name.as_str()));
    let channels = channels
        .into_iter()
        .map(|c| {
            let n = readers.of(&c.name);
            (c, n)
        })
        .collect();
    Ok(Report {
        root: root.to_path_buf(),
        channels,
        elsewhere,
        stale: readers.stale,
        problems: inspect::problems(&spool),
    })
}

impl Report {
    fn totals(&self) -> (u64, u64, usize) {
        let events = self.channels.iter().map(|(c, _)| c.events).sum();
        let bytes = self.channels.iter().map(|(c, _)| c.bytes).sum();
        let readers = self.channels.iter().map(|(_, r)| r).sum::<usize>() + self.elsewhere;
        (events, bytes, readers)
    }

    fn text(&self) -> String {
        let mut t = format!("spool {}\n", self.root.display());
        let id = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        if !self.channels.is_empty() {
            let width = self
                .channels
                .iter()
                .map(|(c, _)| c.name.len())
                .max()
                .unwrap_or(0)
                .max("channel".len());
            t += &format!(
                "{:<width$}  {:>8}  {:>20}  {:>20}  {:>10}  {:>7}\n",
                "channel", "events", "first id", "last id", "bytes", "readers"
            );
            for (c, readers) in &self.channels {
                t += &format!(
                    "{:<width$}  {:>8}  {:>20}  {:>20}  {:>10}  {:>7}\n",
                    c.name,
                    c.events,
                    id(c.first_id),
                    id(c.last_id),
                    c.bytes,
                    readers
                );
            }
        }
        let (events, bytes, readers) = self.totals();
        t += &format!(
            "{} channel(s), {events} event(s) retained, {bytes} bytes; {readers} reader(s) connected\n",
            self.channels.len()
        );
        if self.elsewhere > 0 {
            t += &format!(
                "{} of the readers follow channels with nothing published yet\n",
                self.elsewhere
            );
        }
        if self.stale > 0 {
            t += &format!(
                "{} stale wake-up socket(s) of readers that died (the next publish on their \
                 channel removes them)\n",
                self.stale
            );
        }
        for p in &self.problems {
            t += &format!("warning: {p}\n");
        }
        t += &format!("({READERS_NOTE})\n");
        t
    }

    fn json(&self) -> serde_json::Value {
        let (events, bytes, readers) = self.totals();
        let channels: Vec<serde_json::Value> = self
            .channels
            .iter()
            .map(|(c, readers)| {
                serde_json::json!({
                    "name": c.name,
                    "events": c.events,
                    // Strings: ids are 64-bit (JSON numbers lose precision
                    // past 2^53 in many readers), as the publish answer has
                    // them.
                    "first_id": c.first_id.map(|v| v.to_string()),
                    "last_id": c.last_id.map(|v| v.to_string()),
                    "bytes": c.bytes,
                    "segments": c.segments,
                    "readers": readers,
                })
            })
            .collect();
        serde_json::json!({
            "spool": self.root.display().to_string(),
            "channels": channels,
            "totals": {
                "channels": self.channels.len(),
                "events": events,
                "bytes": bytes,
                "readers": readers,
            },
            "readers_of_empty_channels": self.elsewhere,
            "stale_sockets": self.stale,
            "problems": self.problems,
            "readers_note": READERS_NOTE,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::append::{append, NewEvent};
    use crate::spool::wake::WakeSocket;
    use crate::spool::{Retention, Spool};

    fn run(config: &Config, json: bool) -> (i32, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = main(config, json, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn numbers_in_text_and_json() {
        let root = std::env::temp_dir().join(format!("nph-stats-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let spool = Spool::open(&root).unwrap();
        let ev = || NewEvent {
            event: None,
            data: "hello",
        };
        let r = Retention::default();
        let first = append(&spool, "news", ev(), &r, 1).unwrap();
        append(&spool, "news", ev(), &r, 1).unwrap();
        append(&spool, "chat", ev(), &r, 1).unwrap();
        let _a = WakeSocket::bind(&spool, "news").unwrap();
        let _b = WakeSocket::bind(&spool, "news").unwrap();
        let _c = WakeSocket::bind(&spool, "quiet").unwrap();
        let config = Config {
            spool: Some(root.clone()),
            ..Config::default()
        };
        let (code, text, _) = run(&config, false);
        assert_eq!(code, 0);
        let news = text.lines().find(|l| l.starts_with("news ")).unwrap();
        let cols: Vec<&str> = news.split_whitespace().collect();
        assert_eq!(cols[1..3], ["2", &first.to_string()]);
        assert_eq!(cols[5], "2", "{text}");
        assert!(text.contains("2 channel(s), 3 event(s) retained"), "{text}");
        assert!(text.contains("3 reader(s) connected"), "{text}");
        assert!(text.contains("1 of the readers follow channels with nothing"));
        let (code, json, _) = run(&config, true);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["totals"]["events"], 3);
        assert_eq!(v["totals"]["readers"], 3);
        assert_eq!(v["channels"][1]["name"], "news");
        assert_eq!(v["channels"][1]["first_id"], first.to_string());
        assert_eq!(v["channels"][1]["readers"], 2);
        assert_eq!(v["channels"][0]["readers"], 0);
        std::fs::remove_dir_all(&root).unwrap();
        // Missing: an error saying why, nothing created.
        let (code, _, err) = run(&config, false);
        assert_eq!(code, 1);
        assert!(err.contains("run as the web server's user"), "{err}");
        assert!(!root.exists());
    }
}
