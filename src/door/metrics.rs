//! The listener's numbers: counters and gauges an operator can watch,
//! and their Prometheus text exposition (format 0.0.4) for `/metrics`.
//!
//! One [`Metrics`] per server, shared by the accept loop, the connection
//! threads and the reactor threads. Every number is a relaxed atomic
//! updated where the thing happens, with no lock and no allocation: a
//! delivery costs one `fetch_add` per channel batch and protocol, a socket
//! write one per write. Counters only grow (`_total`); gauges are read at
//! scrape time. The spool's numbers (channels, retained events and bytes,
//! readers) are read from the spool at scrape time
//! ([`crate::spool::inspect`]), the same numbers `nph-events stats`
//! prints; channel names appear only with `metrics_channels`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::spool::{inspect, Spool};
use crate::stream::End;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A reactor thread that has not been round its loop for this long is
/// reported as stuck by `/healthz` (the loop wakes at least once a
/// second).
pub const STUCK_AFTER: Duration = Duration::from_secs(10);

/// How long a failed publish (with none succeeding after it) keeps
/// `/healthz` at 503: long enough for a check to see it, not for ever
/// after a one-off failure.
pub const PUBLISH_FAILURE_MEMORY: Duration = Duration::from_secs(300);

/// A stream's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// An event stream (`text/event-stream`).
    Sse = 0,
    /// A WebSocket session.
    Ws = 1,
}

const PROTOS: [(Proto, &str); 2] = [(Proto::Sse, "sse"), (Proto::Ws, "websocket")];

/// Why a connection was answered without a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` (503).
    MaxConnections = 0,
    /// `max_per_client` (429).
    MaxPerClient = 1,
    /// `connect_rate` (429).
    ConnectRate = 2,
}

const REFUSALS: [&str; 3] = ["max_connections", "max_per_client", "connect_rate"];

/// Where a publish came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// An HTTP `POST`.
    Post = 0,
    /// A WebSocket client's message (relay).
    Ws = 1,
}

const VIAS: [&str; 2] = ["post", "websocket"];

/// How a stream ended, as a label.
const ENDS: [&str; 6] = [
    "client_closed",
    "max_duration",
    "shutdown",
    "refused",
    "timed_out",
    "too_slow",
];

fn end_index(end: End) -> usize {
    match end {
        End::ClientClosed => 0,
        End::Finished => 1,
        End::Shutdown => 2,
        End::Refused(_) => 3,
        End::TimedOut => 4,
        End::TooSlow => 5,
    }
}

/// Every counter and gauge of one server.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    started_wall: SystemTime,
    accepted: AtomicU64,
    refused: [AtomicU64; 3],
    open: [AtomicUsize; 2],
    streams: [AtomicU64; 2],
    ended: [[AtomicU64; 6]; 2],
    delivered: [AtomicU64; 2],
    resets: [AtomicU64; 2],
    bytes: [AtomicU64; 2],
    published: [AtomicU64; 2],
    publish_rate_refused: AtomicU64,
    publish_failed: AtomicU64,
    /// When a publish last succeeded and last failed (not for the rate),
    /// in milliseconds since `started` plus one (0: never).
    publish_ok_at: AtomicU64,
    publish_failed_at: AtomicU64,
    /// Channels followed by the reactor threads (one wake-up socket each).
    followed: AtomicUsize,
    /// Bytes queued for slow clients, all reactor threads together (the
    /// `queue_budget` account).
    pub queued: AtomicUsize,
    /// Each reactor thread's last round, as `publish_ok_at`.
    beats: Box<[AtomicU64]>,
}

/// What the server tells `/metrics` besides the counters.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    /// Open connections, streams included.
    pub active: usize,
    /// `max_connections` in force.
    pub max_connections: usize,
    /// `queue_budget`.
    pub queue_budget: usize,
}

fn zeros<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

impl Metrics {
    /// Numbers for a server with `reactor_threads` reactor threads.
    pub fn new(reactor_threads: usize) -> Metrics {
        Metrics {
            started: Instant::now(),
            started_wall: SystemTime::now(),
            accepted: AtomicU64::new(0),
            refused: zeros(),
            open: [AtomicUsize::new(0), AtomicUsize::new(0)],
            streams: zeros(),
            ended: [zeros(), zeros()],
            delivered: zeros(),
            resets: zeros(),
            bytes: zeros(),
            published: zeros(),
            publish_rate_refused: AtomicU64::new(0),
            publish_failed: AtomicU64::new(0),
            publish_ok_at: AtomicU64::new(0),
            publish_failed_at: AtomicU64::new(0),
            followed: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            beats: (0..reactor_threads.max(1))
                .map(|_| AtomicU64::new(1))
                .collect(),
        }
    }

    fn stamp(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 + 1
    }

    /// `accept` returned a connection.
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Relaxed);
    }

    /// A connection was answered without a thread.
    pub fn refused(&self, why: Refused) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }

    /// A stream joined a reactor thread.
    pub fn stream_started(&self, p: Proto) {
        self.streams[p as usize].fetch_add(1, Relaxed);
        self.open[p as usize].fetch_add(1, Relaxed);
    }

    /// A stream that [`Metrics::stream_started`] ended.
    pub fn stream_ended(&self, p: Proto, end: End) {
        self.open[p as usize].fetch_sub(1, Relaxed);
        self.ended[p as usize][end_index(end)].fetch_add(1, Relaxed);
    }

    /// Events written (or queued) to clients, and how many of them were
    /// `reset` events (clients told they lost events).
    pub fn delivered(&self, p: Proto, events: u64, resets: u64) {
        if events > 0 {
            self.delivered[p as usize].fetch_add(events, Relaxed);
        }
        if resets > 0 {
            self.resets[p as usize].fetch_add(resets, Relaxed);
        }
    }

    /// The counter of bytes written to clients of a protocol (one
    /// `fetch_add` per socket write).
    pub fn bytes(&self, p: Proto) -> &AtomicU64 {
        &self.bytes[p as usize]
    }

    /// A client's publish succeeded.
    pub fn published(&self, via: Via) {
        self.published[via as usize].fetch_add(1, Relaxed);
        self.publish_ok_at.store(self.stamp(), Relaxed);
    }

    /// A client's publish was refused by the site's publish rate.
    pub fn publish_rate_refused(&self) {
        self.publish_rate_refused.fetch_add(1, Relaxed);
    }

    /// A client's publish could not be written (the spool failed).
    pub fn publish_failed(&self) {
        self.publish_failed.fetch_add(1, Relaxed);
        self.publish_failed_at.store(self.stamp(), Relaxed);
    }

    /// A reactor thread began following a channel (`+1`) or stopped
    /// (`-1`).
    pub fn following(&self, more: bool) {
        if more {
            self.followed.fetch_add(1, Relaxed);
        } else {
            self.followed.fetch_sub(1, Relaxed);
        }
    }

    /// Reactor thread `index` is going round its loop.
    pub fn beat(&self, index: usize) {
        if let Some(b) = self.beats.get(index) {
            b.store(self.stamp(), Relaxed);
        }
    }

    /// Open streams of a protocol.
    pub fn open(&self, p: Proto) -> usize {
        self.open[p as usize].load(Relaxed)
    }

    /// Why the server is not healthy, if it is not: stopping, a reactor
    /// thread stuck (or gone: a panic ends it), the spool unusable, or
    /// the last publish failed (and none succeeded since) within
    /// [`PUBLISH_FAILURE_MEMORY`]. Reasons name no path: `/healthz` may be
    /// public.
    pub fn unhealthy(&self, spool: &Spool, stopping: bool) -> Option<String> {
        if stopping {
            return Some("stopping".to_owned());
        }
        let now = self.stamp();
        for (i, beat) in self.beats.iter().enumerate() {
            let idle = now.saturating_sub(beat.load(Relaxed));
            if idle > STUCK_AFTER.as_millis() as u64 {
                return Some(format!(
                    "stream thread {i} has not run for {:.1} s",
                    idle as f64 / 1000.0
                ));
            }
        }
        let problems = inspect::problems(spool);
        if !problems.is_empty() {
            return Some(format!("spool not usable: {}", problems.join("; ")));
        }
        let (ok, failed) = (
            self.publish_ok_at.load(Relaxed),
            self.publish_failed_at.load(Relaxed),
        );
        let recent = now.saturating_sub(failed) < PUBLISH_FAILURE_MEMORY.as_millis() as u64;
        if failed > ok && recent {
            return Some(format!(
                "the last publish failed ({:.1} s ago; see the error log) and none succeeded since",
                now.saturating_sub(failed) as f64 / 1000.0
            ));
        }
        None
    }

    /// The exposition: every counter and gauge, then the spool's numbers
    /// (per channel, with names, only when `channel_names`).
    pub fn render(&self, gauges: &Gauges, spool: &Spool, channel_names: bool) -> String {
        let mut x = Exposition::default();
        let load = |a: &AtomicU64| a.load(Relaxed);
        x.family(
            "nph_events_start_time_seconds",
            "gauge",
            "When the server started, seconds since the Unix epoch.",
        );
        let start = self
            .started_wall
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        x.sample_f("nph_events_start_time_seconds", &[], start);
        let (sse, ws) = (self.open(Proto::Sse), self.open(Proto::Ws));
        x.family(
            "nph_events_connections_open",
            "gauge",
            "Open connections by protocol: sse and websocket streams, and http (connections \
             reading a request or writing a reply).",
        );
        x.sample(
            "nph_events_connections_open",
            &[("protocol", "sse")],
            sse as u64,
        );
        x.sample(
            "nph_events_connections_open",
            &[("protocol", "websocket")],
            ws as u64,
        );
        let http = gauges.active.saturating_sub(sse + ws) as u64;
        x.sample("nph_events_connections_open", &[("protocol", "http")], http);
        x.family(
            "nph_events_max_connections",
            "gauge",
            "The connection cap in force (max_connections, as fitted to the open-file limit).",
        );
        x.sample(
            "nph_events_max_connections",
            &[],
            gauges.max_connections as u64,
        );
        x.family(
            "nph_events_connections_accepted_total",
            "counter",
            "Connections accepted (refused ones included).",
        );
        x.sample(
            "nph_events_connections_accepted_total",
            &[],
            load(&self.accepted),
        );
        x.family(
            "nph_events_connections_refused_total",
            "counter",
            "Connections answered at once without being served: max_connections (503), \
             max_per_client and connect_rate (429).",
        );
        for (i, reason) in REFUSALS.iter().enumerate() {
            let v = load(&self.refused[i]);
            x.sample(
                "nph_events_connections_refused_total",
                &[("reason", reason)],
                v,
            );
        }
        x.family(
            "nph_events_streams_total",
            "counter",
            "Streams started (SSE clients and WebSocket sessions).",
        );
        for (p, name) in PROTOS {
            let v = load(&self.streams[p as usize]);
            x.sample("nph_events_streams_total", &[("protocol", name)], v);
        }
        x.family(
            "nph_events_streams_ended_total",
            "counter",
            "Streams ended, by protocol and why.",
        );
        for (p, name) in PROTOS {
            for (i, reason) in ENDS.iter().enumerate() {
                let v = load(&self.ended[p as usize][i]);
                let labels = [("protocol", name), ("reason", reason)];
                x.sample("nph_events_streams_ended_total", &labels, v);
            }
        }
        x.family(
            "nph_events_slow_clients_dropped_total",
            "counter",
            "Clients dropped because they stopped reading (4 MiB queued for one, or the \
             queue_budget spent); they resume from their last id when they reconnect.",
        );
        for (p, name) in PROTOS {
            let v = load(&self.ended[p as usize][end_index(End::TooSlow)]);
            x.sample(
                "nph_events_slow_clients_dropped_total",
                &[("protocol", name)],
                v,
            );
        }
        x.family(
            "nph_events_published_total",
            "counter",
            "Events published through this server: POST requests and WebSocket messages \
             (the command line and CGIs publish into the spool directly).",
        );
        for (i, via) in VIAS.iter().enumerate() {
            let v = load(&self.published[i]);
            x.sample("nph_events_published_total", &[("via", via)], v);
        }
        x.family(
            "nph_events_publish_refused_total",
            "counter",
            "Publishes not written: refused by the site's publish_rate (429), or failed \
             (the spool could not be written; 500).",
        );
        let rate = load(&self.publish_rate_refused);
        x.sample(
            "nph_events_publish_refused_total",
            &[("reason", "rate")],
            rate,
        );
        let failed = load(&self.publish_failed);
        x.sample(
            "nph_events_publish_refused_total",
            &[("reason", "error")],
            failed,
        );
        x.family(
            "nph_events_events_delivered_total",
            "counter",
            "Events written to clients (one per client per event, backlogs and resets \
             included; ticks and heartbeats not).",
        );
        for (p, name) in PROTOS {
            let v = load(&self.delivered[p as usize]);
            x.sample(
                "nph_events_events_delivered_total",
                &[("protocol", name)],
                v,
            );
        }
        x.family(
            "nph_events_resets_sent_total",
            "counter",
            "reset events written to clients: a client told it lost events (resumed from an \
             id older than the retention, or fell behind it).",
        );
        for (p, name) in PROTOS {
            let v = load(&self.resets[p as usize]);
            x.sample("nph_events_resets_sent_total", &[("protocol", name)], v);
        }
        x.family(
            "nph_events_bytes_written_total",
            "counter",
            "Bytes written to stream clients (heads, events, ticks, heartbeats, frames).",
        );
        for (p, name) in PROTOS {
            let v = load(&self.bytes[p as usize]);
            x.sample("nph_events_bytes_written_total", &[("protocol", name)], v);
        }
        x.family(
            "nph_events_queued_bytes",
            "gauge",
            "Memory of the output queues of slow clients, all together (bounded by \
             queue_budget).",
        );
        x.sample(
            "nph_events_queued_bytes",
            &[],
            self.queued.load(Relaxed) as u64,
        );
        x.family(
            "nph_events_queue_budget_bytes",
            "gauge",
            "queue_budget: past it, a client holding queued output is dropped.",
        );
        x.sample(
            "nph_events_queue_budget_bytes",
            &[],
            gauges.queue_budget as u64,
        );
        x.family(
            "nph_events_channels_followed",
            "gauge",
            "Channels followed by the stream threads (one wake-up socket each, per thread).",
        );
        x.sample(
            "nph_events_channels_followed",
            &[],
            self.followed.load(Relaxed) as u64,
        );
        self.render_spool(&mut x, spool, channel_names);
        x.out
    }

    fn render_spool(&self, x: &mut Exposition, spool: &Spool, channel_names: bool) {
        let channels = inspect::channels(spool);
        let readers = inspect::readers(spool);
        x.family(
            "nph_events_spool_readable",
            "gauge",
            "1 when the spool's channels and readers could be read for these numbers.",
        );
        let readable = channels.is_ok() && readers.is_ok();
        x.sample("nph_events_spool_readable", &[], u64::from(readable));
        let (Ok(channels), Ok(readers)) = (channels, readers) else {
            return;
        };
        let sum = |f: fn(&inspect::ChannelStats) -> u64| channels.iter().map(f).sum::<u64>();
        x.family(
            "nph_events_spool_channels",
            "gauge",
            "Channels in the spool (with a directory: published to at least once).",
        );
        x.sample("nph_events_spool_channels", &[], channels.len() as u64);
        x.family(
            "nph_events_spool_events",
            "gauge",
            "Events retained in the spool, all channels.",
        );
        x.sample("nph_events_spool_events", &[], sum(|c| c.events));
        x.family(
            "nph_events_spool_bytes",
            "gauge",
            "Bytes of the spool's segment files, all channels.",
        );
        x.sample("nph_events_spool_bytes", &[], sum(|c| c.bytes));
        x.family(
            "nph_events_spool_readers",
            "gauge",
            "Live wake-up sockets in the spool, every process: one per CGI stream, one per \
             channel per stream thread of each listener.",
        );
        x.sample("nph_events_spool_readers", &[], readers.total() as u64);
        x.family(
            "nph_events_spool_stale_sockets",
            "gauge",
            "Wake-up sockets whose reader died without removing them (the next publish on \
             their channel removes them).",
        );
        x.sample("nph_events_spool_stale_sockets", &[], readers.stale as u64);
        if !channel_names {
            return;
        }
        x.family(
            "nph_events_channel_events",
            "gauge",
            "Events retained per channel (metrics_channels).",
        );
        for c in &channels {
            x.sample(
                "nph_events_channel_events",
                &[("channel", &c.name)],
                c.events,
            );
        }
        x.family(
            "nph_events_channel_bytes",
            "gauge",
            "Bytes of a channel's segment files (metrics_channels).",
        );
        for c in &channels {
            x.sample("nph_events_channel_bytes", &[("channel", &c.name)], c.bytes);
        }
        x.family(
            "nph_events_channel_readers",
            "gauge",
            "Live readers of a channel, every process (metrics_channels).",
        );
        for c in &channels {
            let n = readers.of(&c.name) as u64;
            x.sample("nph_events_channel_readers", &[("channel", &c.name)], n);
        }
    }
}

/// The text format, version 0.0.4: `# HELP` and `# TYPE` once per family,
/// then its samples, label values escaped.
#[derive(Debug, Default)]
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn labels(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.out.push_str(name);
        if labels.is_empty() {
            return;
        }
        self.out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{k}=\"");
            for c in v.chars() {
                match c {
                    '\\' => self.out.push_str("\\\\"),
                    '"' => self.out.push_str("\\\""),
                    '\n' => self.out.push_str("\\n"),
                    c => self.out.push(c),
                }
            }
            self.out.push('"');
        }
        self.out.push('}');
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.labels(name, labels);
        let _ = writeln!(self.out, " {value}");
    }

    fn sample_f(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.labels(name, labels);
        let _ = writeln!(self.out, " {value:.3}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(tag: &str) -> (std::path::PathBuf, Spool) {
        let dir = std::env::temp_dir().join(format!("nph-metrics-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (dir.clone(), Spool::open(&dir).unwrap())
    }

    const GAUGES: Gauges = Gauges {
        active: 5,
        max_connections: 100,
        queue_budget: 1 << 20,
    };

    /// The value of the sample line that starts with `series ` (name and
    /// labels as written).
    fn value(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_owned)
    }

    #[test]
    fn families_have_help_and_type_once_and_counters_end_in_total() {
        let (dir, spool) = spool("format");
        let m = Metrics::new(2);
        let text = m.render(&GAUGES, &spool, true);
        let mut seen = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                assert!(seen.insert(name.clone()), "{name} twice");
                current = name;
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(name, current);
                assert!(kind == "counter" || kind == "gauge", "{line}");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            } else {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "sample of its family: {line}");
                let v = line.rsplit(' ').next().unwrap();
                assert!(v.parse::<f64>().is_ok(), "{line}");
            }
        }
        assert!(text.ends_with('\n'));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn counters_move_and_gauges_follow_streams() {
        let (dir, spool) = spool("move");
        let m = Metrics::new(1);
        m.accepted();
        m.accepted();
        m.refused(Refused::MaxPerClient);
        m.stream_started(Proto::Sse);
        m.stream_started(Proto::Sse);
        m.stream_started(Proto::Ws);
        m.stream_ended(Proto::Sse, End::TooSlow);
        m.delivered(Proto::Ws, 3, 1);
        m.bytes(Proto::Sse).fetch_add(100, Relaxed);
        m.published(Via::Post);
        m.publish_rate_refused();
        let t = m.render(&GAUGES, &spool, false);
        let v = |s: &str| value(&t, s).unwrap_or_else(|| panic!("{s} missing:\n{t}"));
        assert_eq!(v("nph_events_connections_accepted_total"), "2");
        assert_eq!(
            v(r#"nph_events_connections_refused_total{reason="max_per_client"}"#),
            "1"
        );
        assert_eq!(v(r#"nph_events_connections_open{protocol="sse"}"#), "1");
        assert_eq!(
            v(r#"nph_events_connections_open{protocol="websocket"}"#),
            "1"
        );
        assert_eq!(v(r#"nph_events_connections_open{protocol="http"}"#), "3");
        assert_eq!(v(r#"nph_events_streams_total{protocol="sse"}"#), "2");
        assert_eq!(
            v(r#"nph_events_streams_ended_total{protocol="sse",reason="too_slow"}"#),
            "1"
        );
        assert_eq!(
            v(r#"nph_events_slow_clients_dropped_total{protocol="sse"}"#),
            "1"
        );
        assert_eq!(
            v(r#"nph_events_events_delivered_total{protocol="websocket"}"#),
            "3"
        );
        assert_eq!(
            v(r#"nph_events_resets_sent_total{protocol="websocket"}"#),
            "1"
        );
        assert_eq!(
            v(r#"nph_events_bytes_written_total{protocol="sse"}"#),
            "100"
        );
        assert_eq!(v(r#"nph_events_published_total{via="post"}"#), "1");
        assert_eq!(v(r#"nph_events_publish_refused_total{reason="rate"}"#), "1");
        assert_eq!(v("nph_events_spool_channels"), "0");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn channel_names_only_when_enabled() {
        let (dir, spool) = spool("names");
        let retention = crate::spool::Retention::default();
        for _ in 0..2 {
            let ev = crate::spool::append::NewEvent {
                event: None,
                data: "x",
            };
            crate::spool::append::append(&spool, "secret-room", ev, &retention, 1).unwrap();
        }
        let m = Metrics::new(1);
        let t = m.render(&GAUGES, &spool, false);
        assert!(!t.contains("secret-room"), "{t}");
        assert_eq!(value(&t, "nph_events_spool_channels").unwrap(), "1");
        assert_eq!(value(&t, "nph_events_spool_events").unwrap(), "2");
        let t = m.render(&GAUGES, &spool, true);
        assert_eq!(
            value(&t, r#"nph_events_channel_events{channel="secret-room"}"#).unwrap(),
            "2"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn label_values_are_escaped() {
        let mut x = Exposition::default();
        x.sample("m", &[("a", "q\"b\\n\nl"), ("b", "")], 1);
        assert_eq!(x.out, "m{a=\"q\\\"b\\\\n\\nl\",b=\"\"} 1\n");
    }

    #[test]
    fn health_names_the_reason() {
        let (dir, spool) = spool("health");
        let m = Metrics::new(1);
        assert_eq!(m.unhealthy(&spool, false), None);
        assert_eq!(m.unhealthy(&spool, true).as_deref(), Some("stopping"));
        m.publish_failed();
        let why = m.unhealthy(&spool, false).unwrap();
        assert!(why.starts_with("the last publish failed"), "{why}");
        std::thread::sleep(Duration::from_millis(2));
        m.published(Via::Post);
        assert_eq!(m.unhealthy(&spool, false), None);
        // A failure long ago (and nothing since) is forgotten.
        let old = Metrics {
            started: Instant::now() - PUBLISH_FAILURE_MEMORY * 2,
            ..Metrics::new(1)
        };
        old.beat(0);
        old.publish_failed_at.store(1, Relaxed);
        assert_eq!(old.unhealthy(&spool, false), None);
        m.beats[0].store(0, Relaxed);
        // A beat of 0 is "never": older than STUCK_AFTER only once the
        // server has run that long; force it.
        let stuck = Metrics {
            started: Instant::now() - STUCK_AFTER * 2,
            ..Metrics::new(1)
        };
        let why = stuck.unhealthy(&spool, false).unwrap();
        assert!(why.starts_with("stream thread 0 has not run"), "{why}");
        stuck.beat(0);
        assert_eq!(stuck.unhealthy(&spool, false), None);
        std::fs::remove_dir_all(&dir).unwrap();
        let why = m.unhealthy(&spool, false).unwrap();
        assert!(
            why.starts_with("spool not usable: spool directory: "),
            "{why}"
        );
        assert!(!why.contains("/tmp"), "no path: {why}");
    }
}
