//! One doctor run: identify the server (HEAD), watch the stream (and a
//! second one without `Accept-Encoding`, to tell compression from other
//! buffering) while publishing probes, then try resume, CORS and the
//! WebSocket handshake, and judge.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::args::Options;
use super::assess::{self, Pace, Probe, Timeline};
use super::capture::Capture;
use super::events::{self, Item};
use super::fix;
use super::probe::{self, Sent};
use super::report::{secs, Check, Report, Verdict};
use super::target::Target;
use super::transport::{exchange, exchange_from, CurlMode, Request, Transport};
use super::ws;

/// The channel probes go to when none is named: not the site's own, so
/// that its visitors do not see them.
pub const PROBE_CHANNEL: &str = "doctor";

/// What browsers send (and what makes compressors step in).
const ACCEPT_ENCODING: &str = "gzip, deflate, br";

/// Runs the doctor; `Err` is a one-line reason it could not run at all.
pub fn run(o: &Options, err: &mut dyn Write) -> Result<Report, String> {
    let curl = |mode| Transport::Curl {
        mode,
        cacert: o.cacert.clone(),
    };
    let transport = if o.http2_prior {
        curl(CurlMode::Http2Prior)
    } else if o.http2 {
        curl(CurlMode::Http2)
    } else if o.target.https {
        curl(CurlMode::Auto)
    } else {
        Transport::Raw
    };
    let channel = o
        .channel
        .clone()
        .or_else(|| o.target.param("channel").map(str::to_owned))
        .or_else(|| o.token.as_ref().map(|_| PROBE_CHANNEL.to_owned()));
    let target = match &channel {
        Some(c) => o.target.with_channel(c),
        None => o.target.clone(),
    };
    let mut plain = vec![
        (
            "User-Agent".to_owned(),
            concat!("nph-events-doctor/", env!("CARGO_PKG_VERSION")).to_owned(),
        ),
        ("Accept".to_owned(), "text/event-stream".to_owned()),
        ("Cache-Control".to_owned(), "no-cache".to_owned()),
    ];
    if let Some(origin) = &o.origin {
        plain.push(("Origin".to_owned(), origin.clone()));
    }
    let mut browser = plain.clone();
    browser.push(("Accept-Encoding".to_owned(), ACCEPT_ENCODING.to_owned()));

    let identify = exchange(
        &transport,
        &get("HEAD", &target, &browser),
        Duration::from_secs(5),
        false,
        &|c| c.head.is_some(),
    );
    if let (None, Some(e)) = (&identify.head, &identify.error) {
        return Err(format!("cannot reach {target}: {e}"));
    }
    let _ = writeln!(
        err,
        "nph-events doctor: watching {target} for {} s",
        o.seconds
    );

    let watch = Duration::from_secs_f64(o.seconds);
    let start = Instant::now();
    let wall = SystemTime::now();
    let main = watch_in_thread(start, &transport, &target, browser.clone(), watch);
    let control = watch_in_thread(start, &transport, &target, plain.clone(), watch);
    let (sent, publish) = match &o.token {
        Some(token) => send_probes(&transport, &target, token, start, o.seconds),
        None => (Vec::new(), None),
    };
    let main = main.join().unwrap_or_default();
    let control = control.join().unwrap_or_default();

    let mut checks = Vec::new();
    let main_t = timeline(&main, &sent, wall);
    let [head, first] = assess::first_bytes(&main_t);
    checks.extend([head, first]);
    let refused = refusal(&main);
    let (pace, live) = match &refused {
        Some(c) => (Pace::Nothing, c.clone()),
        None => assess::liveness(&main_t),
    };
    checks.push(live);
    checks.extend(publish);
    let encoding = main.head.as_ref().map(|h| {
        h.get("content-encoding")
            .filter(|e| !e.eq_ignore_ascii_case("identity"))
    });
    let plain_live = (!pace.is_live()).then(|| {
        assess::liveness(&timeline(&control, &sent, wall))
            .0
            .is_live()
    });
    let compression = assess::compression(encoding, pace.is_live(), plain_live);
    let compressed = compression.verdict == Verdict::Fail || matches!(encoding, Some(Some(_)));
    checks.push(compression);
    let protocol = main
        .head
        .as_ref()
        .or(identify.head.as_ref())
        .map(|h| h.protocol());
    checks.push(assess::version(protocol.as_deref()));
    if refused.is_none() {
        checks.push(assess::silence(&main_t));
    }
    checks.push(resume(&transport, &target, &plain, &sent, pace));
    checks.push(cors(o.origin.as_deref(), &main, &identify));
    let ws_transport = if target.https {
        transport.http11()
    } else {
        Transport::Raw
    };
    checks.push(ws::check(
        &ws_transport,
        &target,
        o.origin.as_deref(),
        pace.is_live(),
    ));

    let heads: Vec<_> = [&main.head, &control.head, &identify.head]
        .into_iter()
        .flatten()
        .collect();
    let front = fix::detect(&heads, &target);
    let http2 = protocol.as_deref() == Some("HTTP/2")
        || matches!(
            transport.curl_mode(),
            Some(CurlMode::Http2 | CurlMode::Http2Prior)
        );
    let symptoms = fix::Symptoms {
        live: pace.is_live(),
        compressed,
        http2,
    };
    let fixes = match &refused {
        Some(c) => vec![c.detail.clone()],
        None => fix::fixes(&front, symptoms, &target),
    };
    Ok(Report {
        url: target.to_string(),
        transport: transport.describe(),
        checks,
        server: front.describe(),
        fixes,
        live: pace.is_live() && refused.is_none(),
    })
}

fn get<'a>(method: &'a str, target: &'a Target, headers: &[(String, String)]) -> Request<'a> {
    Request {
        method,
        target,
        headers: headers.to_vec(),
        body: Vec::new(),
    }
}

fn watch_in_thread(
    start: Instant,
    transport: &Transport,
    target: &Target,
    headers: Vec<(String, String)>,
    watch: Duration,
) -> thread::JoinHandle<Capture> {
    let target = target.clone();
    let transport = transport.clone();
    thread::spawn(move || {
        let request = get("GET", &target, &headers);
        exchange_from(start, &transport, &request, watch, false, &|_| false)
    })
}

/// Publishes three probes spread over the first part of the watch, so
/// that the last has time to arrive; stops at the first refusal.
fn send_probes(
    transport: &Transport,
    target: &Target,
    token: &str,
    start: Instant,
    seconds: f64,
) -> (Vec<Sent>, Option<Check>) {
    let nonce = probe::nonce();
    let first = (seconds / 4.0).min(1.0);
    let gap = ((seconds * 0.6 - first) / 2.0).clamp(0.2, 3.0);
    let mut sent = Vec::new();
    for k in 0..3 {
        let at = Duration::from_secs_f64(first + gap * k as f64);
        thread::sleep(at.saturating_sub(start.elapsed()));
        let data = format!("nph-events doctor probe {nonce} {}", k + 1);
        match probe::publish(transport, target, token, &data, start) {
            Ok(s) => sent.push(s),
            Err(r) => {
                let why = match r.status {
                    0 => format!("the publish POST got no answer: {}", r.detail),
                    401 | 403 => format!(
                        "the publish POST answered {}: {} (the token's SHA-256 must be \
                         NPH_EVENTS_TOKEN_SHA256; Apache must pass Authorization: CGIPassAuth On)",
                        r.status, r.detail
                    ),
                    s => format!("the publish POST answered {s}: {}", r.detail),
                };
                return (sent, Some(Check::new("publish", Verdict::Fail, None, why)));
            }
        }
    }
    let ids: Vec<&str> = sent.iter().filter_map(|s| s.id.as_deref()).collect();
    let detail = format!(
        "{} probes published (201), ids {}",
        sent.len(),
        ids.join(", ")
    );
    (sent, Some(Check::new("publish", Verdict::Ok, None, detail)))
}

/// The capture as a timeline in seconds, with ticks and probes found.
fn timeline(c: &Capture, sent: &[Sent], wall: SystemTime) -> Timeline {
    let s = |d: Duration| d.as_secs_f64();
    let compressed = c
        .head
        .as_ref()
        .and_then(|h| h.get("content-encoding"))
        .is_some_and(|e| !e.eq_ignore_ascii_case("identity"));
    let items = if compressed {
        Vec::new()
    } else {
        events::parse(&c.body)
    };
    let wall0 = wall
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut ticks = Vec::new();
    let mut heartbeats = Vec::new();
    for (at, item) in &items {
        match item {
            Item::Event { data, .. } => {
                if let Some((_, ms)) = events::tick_fields(data) {
                    ticks.push((ms as f64 / 1000.0 - wall0, s(*at)));
                }
            }
            Item::Comment(text) if text == "heartbeat" => heartbeats.push(s(*at)),
            Item::Comment(_) => {}
        }
    }
    let probes = sent
        .iter()
        .map(|p| Probe {
            sent: s(p.sent),
            arrived: items.iter().find_map(|(at, item)| match item {
                Item::Event { data, .. } if *data == p.data => Some(s(*at)),
                _ => None,
            }),
        })
        .collect();
    Timeline {
        watched: s(c.watched),
        head_at: c.head_at.map(s),
        first_body_at: c.first_body_at().map(s),
        ended: c.ended.map(s),
        body_times: c.body.iter().map(|(t, _)| s(*t)).collect(),
        probes,
        ticks,
        heartbeats,
    }
}

/// A stream answer that is not an event stream: the program (or a proxy)
/// refused it.
fn refusal(c: &Capture) -> Option<Check> {
    let head = c.head.as_ref()?;
    let kind = head.get("content-type").unwrap_or("");
    if head.status == 200 && kind.starts_with("text/event-stream") {
        return None;
    }
    let body = probe::first_line(&String::from_utf8_lossy(&c.body_bytes()));
    let detail = match (head.status, head.get("location")) {
        (200, _) => {
            format!(
                "200 but not an event stream (Content-Type: {kind}): is this the program's URL?"
            )
        }
        (s @ 300..=399, Some(to)) => {
            format!("answered {s}, a redirect to {to}: EventSource follows it, the doctor does not: give that URL")
        }
        (s, _) => format!("answered {s} instead of the stream: {body}"),
    };
    Some(Check::new("live", Verdict::Fail, None, detail))
}

/// Reconnects with the first probe's id; the later probes must come again.
fn resume(
    transport: &Transport,
    target: &Target,
    headers: &[(String, String)],
    sent: &[Sent],
    pace: Pace,
) -> Check {
    let skip = |why: &str| Check::new("resume", Verdict::Info, None, format!("skipped: {why}"));
    if sent.len() < 2 {
        return skip("needs probes (--token): ticks carry no ids");
    }
    if !pace.is_live() {
        return skip("the stream is not live");
    }
    let Some(id) = sent[0].id.as_deref() else {
        return skip("the publish answers carried no ids");
    };
    let mut headers = headers.to_vec();
    headers.push(("Last-Event-ID".into(), id.into()));
    let later: Vec<&str> = sent[1..].iter().map(|s| s.data.as_str()).collect();
    let has =
        |body: &[u8], needle: &str| body.windows(needle.len()).any(|w| w == needle.as_bytes());
    let got = exchange(
        transport,
        &get("GET", target, &headers),
        Duration::from_secs(5),
        false,
        &|c| {
            let body = c.body_bytes();
            later.iter().all(|d| has(&body, d))
        },
    );
    let body = got.body_bytes();
    let found = later.iter().filter(|d| has(&body, d)).count();
    if found < later.len() {
        let detail = format!(
            "reconnected with Last-Event-ID: {id}: {found} of the {} later probes came again within {}",
            later.len(),
            secs(got.watched.as_secs_f64())
        );
        return Check::new("resume", Verdict::Fail, None, detail);
    }
    if has(&body, &sent[0].data) {
        let detail =
            format!("reconnected with Last-Event-ID: {id}: the event with that id was sent again");
        return Check::new("resume", Verdict::Warn, None, detail);
    }
    let at = got.first_body_at().map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let detail = format!(
        "reconnected with Last-Event-ID: {id}: the {} later probes came again (from {})",
        later.len(),
        secs(at)
    );
    Check::new("resume", Verdict::Ok, Some(at), detail)
}

/// Whether a page on `origin` may read the stream.
fn cors(origin: Option<&str>, main: &Capture, identify: &Capture) -> Check {
    let Some(origin) = origin else {
        return Check::new(
            "cors",
            Verdict::Info,
            None,
            "not checked (give --origin https://your.page)",
        );
    };
    let Some(head) = main.head.as_ref().or(identify.head.as_ref()) else {
        return Check::new("cors", Verdict::Info, None, "not checked: no head arrived");
    };
    match head.get("access-control-allow-origin") {
        Some(a) if a == origin || a == "*" => Check::new(
            "cors",
            Verdict::Ok,
            None,
            format!("Access-Control-Allow-Origin: {a} lets pages on {origin} read the stream"),
        ),
        other => Check::new(
            "cors",
            Verdict::Fail,
            None,
            format!(
                "{} for Origin {origin} (status {}): a page there cannot read the stream; list it in \
                 NPH_EVENTS_ORIGINS",
                other.map_or("no Access-Control-Allow-Origin".to_owned(), |a| format!("Access-Control-Allow-Origin: {a}")),
                head.status
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_finds_ticks_and_probes_with_their_arrival() {
        let ms = Duration::from_millis;
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);
        let capture = Capture {
            head: super::super::head::Head::parse(b"HTTP/1.1 200 OK\r\n\r\n"),
            head_at: Some(ms(5)),
            body: vec![
                (
                    ms(6),
                    b": hi\n\nevent: tick\ndata: {\"seq\":1,\"time\":1000010}\n\n".to_vec(),
                ),
                (ms(900), b"id: 7\ndata: probe a\n\n".to_vec()),
            ],
            watched: Duration::from_secs(2),
            ..Capture::default()
        };
        let sent = [
            Sent {
                data: "probe a".into(),
                sent: ms(850),
                id: Some("7".into()),
            },
            Sent {
                data: "probe b".into(),
                sent: ms(1000),
                id: Some("8".into()),
            },
        ];
        let t = timeline(&capture, &sent, wall);
        assert_eq!(t.ticks.len(), 1);
        assert!((t.ticks[0].0 - 0.010).abs() < 1e-9 && (t.ticks[0].1 - 0.006).abs() < 1e-9);
        assert_eq!(
            t.probes[0],
            Probe {
                sent: 0.85,
                arrived: Some(0.9)
            }
        );
        assert_eq!(t.probes[1].arrived, None);
        assert_eq!((t.head_at, t.first_body_at), (Some(0.005), Some(0.006)));
        // A compressed body is not read as events.
        let mut gzip = capture.clone();
        gzip.head =
            super::super::head::Head::parse(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n");
        assert!(timeline(&gzip, &sent, wall).ticks.is_empty());
    }

    #[test]
    fn refusals_name_status_redirects_and_wrong_types() {
        let answer = |head: &[u8], body: &[u8]| Capture {
            head: super::super::head::Head::parse(head),
            body: vec![(Duration::ZERO, body.to_vec())],
            ..Capture::default()
        };
        let ok = answer(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\r\n",
            b"",
        );
        assert!(refusal(&ok).is_none());
        let c = refusal(&answer(
            b"HTTP/1.1 403 Forbidden\r\n\r\n",
            b"403 Forbidden: no\n",
        ))
        .unwrap();
        assert!(
            c.detail.contains("answered 403") && c.detail.contains("no"),
            "{}",
            c.detail
        );
        let c = refusal(&answer(
            b"HTTP/1.1 302 Found\r\nLocation: https://x/\r\n\r\n",
            b"",
        ))
        .unwrap();
        assert!(c.detail.contains("redirect to https://x/"), "{}", c.detail);
        let c = refusal(&answer(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n",
            b"",
        ))
        .unwrap();
        assert!(c.detail.contains("not an event stream"), "{}", c.detail);
    }
}
