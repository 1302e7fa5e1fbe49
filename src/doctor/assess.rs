//! The verdicts, from a timeline alone (seconds since the request): pure
//! functions, so that each judgement is tested with made-up timelines.

use super::report::{secs, Check, Verdict};

/// Up to this much delay an event counts as live.
pub const LIVE: f64 = 1.0;
/// Past this much delay it counts as held back, not merely slow.
pub const LATE: f64 = 3.0;
/// The lowest idle timeout commonly met in front of a stream: shared
/// hosts' `Timeout 30`; nginx and load balancers use 60, Cloudflare 100.
pub const IDLE_TIMEOUT: f64 = 30.0;

/// A probe event: when it was published and when it arrived.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    pub sent: f64,
    pub arrived: Option<f64>,
}

/// What was seen of the stream (seconds since the request was sent).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    pub watched: f64,
    pub head_at: Option<f64>,
    pub first_body_at: Option<f64>,
    /// When the server ended the response, if it did.
    pub ended: Option<f64>,
    /// Arrival time of every body piece.
    pub body_times: Vec<f64>,
    /// Probes published during the watch (with a token).
    pub probes: Vec<Probe>,
    /// Ticker events: (when written, by the server's clock mapped onto
    /// ours; when arrived). Clock skew cancels: only differences count.
    pub ticks: Vec<(f64, f64)>,
    /// Arrival of each heartbeat comment.
    pub heartbeats: Vec<f64>,
}

/// How the stream travelled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Events arrived as they were sent.
    Live,
    /// Events arrived, but held back by up to this many seconds.
    Late(f64),
    /// Nothing of the body until the response ended.
    ToTheEnd,
    /// The head, then no body.
    HeadOnly,
    /// Nothing at all.
    Nothing,
    /// Too little to judge (no probes, one tick or none).
    Unknown,
}

impl Pace {
    pub fn is_live(self) -> bool {
        self == Pace::Live
    }
}

/// Time to the head and to the first body byte.
pub fn first_bytes(t: &Timeline) -> [Check; 2] {
    let head = match t.head_at {
        None => Check::new(
            "head",
            Verdict::Fail,
            None,
            format!("no response head within {}", secs(t.watched)),
        ),
        Some(h) => Check::new(
            "head",
            grade(h, LIVE, LATE),
            Some(h),
            format!("response head after {}", secs(h)),
        ),
    };
    let body = match (t.head_at, t.first_body_at) {
        (Some(h), Some(b)) => Check::new(
            "first-byte",
            grade(b - h, LIVE, LATE),
            Some(b),
            format!(
                "first body byte after {} ({} after the head)",
                secs(b),
                secs(b - h)
            ),
        ),
        (Some(_), None) => {
            let detail = match t.ended {
                Some(e) => format!("the response ended after {} with no body", secs(e)),
                None => format!(
                    "no body byte within {} (the program writes its opening line at once)",
                    secs(t.watched)
                ),
            };
            Check::new("first-byte", Verdict::Fail, None, detail)
        }
        (None, _) => Check::new(
            "first-byte",
            Verdict::Fail,
            None,
            "no body (no head either)",
        ),
    };
    [head, body]
}

fn grade(x: f64, ok: f64, warn: f64) -> Verdict {
    if x <= ok {
        Verdict::Ok
    } else if x <= warn {
        Verdict::Warn
    } else {
        Verdict::Fail
    }
}

/// Live or batched, and by how much.
pub fn liveness(t: &Timeline) -> (Pace, Check) {
    let fail =
        |pace, value, detail: String| (pace, Check::new("live", Verdict::Fail, value, detail));
    let Some(head) = t.head_at else {
        let detail = match t.ended {
            Some(e) => format!("the connection ended after {} without an answer", secs(e)),
            None => format!(
                "nothing arrived within {}, not even the response head: something in between \
                 holds the whole response (until it ends, or a buffer fills)",
                secs(t.watched)
            ),
        };
        return fail(Pace::Nothing, None, detail);
    };
    let Some(first) = t.first_body_at else {
        let detail = match t.ended {
            Some(e) => format!("the response ended after {} with no body", secs(e)),
            None => format!(
                "the head arrived after {}, then no body byte within {}: the body is held back (buffered)",
                secs(head),
                secs(t.watched)
            ),
        };
        return fail(Pace::HeadOnly, None, detail);
    };
    if let Some(end) = t.ended {
        if first >= 1.0 && first >= end - 0.25 {
            let detail = format!(
                "buffered to the end: no body byte arrived until the response ended after {}, then all at once",
                secs(end)
            );
            return fail(Pace::ToTheEnd, Some(end), detail);
        }
    }
    if !t.probes.is_empty() {
        return from_probes(t);
    }
    from_ticks(t)
}

fn from_probes(t: &Timeline) -> (Pace, Check) {
    let shown: Vec<String> = t
        .probes
        .iter()
        .map(|p| match p.arrived {
            Some(a) => format!("sent {:.2} arrived {:.2} (+{:.3})", p.sent, a, a - p.sent),
            None => format!("sent {:.2} never arrived", p.sent),
        })
        .collect();
    let missing = t.probes.iter().filter(|p| p.arrived.is_none()).count();
    let worst = t
        .probes
        .iter()
        .map(|p| p.arrived.unwrap_or(t.watched) - p.sent)
        .fold(0.0, f64::max);
    let list = shown.join("; ");
    if missing == t.probes.len() {
        let detail = format!(
            "no probe arrived within {} ({list}): held back",
            secs(t.watched)
        );
        return (
            Pace::Late(worst),
            Check::new("live", Verdict::Fail, Some(worst), detail),
        );
    }
    let verdict = if missing > 0 {
        Verdict::Fail
    } else {
        grade(worst, LIVE, LATE)
    };
    let pace = if verdict == Verdict::Ok {
        Pace::Live
    } else {
        Pace::Late(worst)
    };
    let what = match verdict {
        Verdict::Ok => "live",
        Verdict::Warn => "slow",
        _ => "batched",
    };
    let detail = format!("{what}: probes {list}; worst {}", secs(worst));
    (pace, Check::new("live", verdict, Some(worst), detail))
}

fn from_ticks(t: &Timeline) -> (Pace, Check) {
    let unknown = |detail: String| {
        (
            Pace::Unknown,
            Check::new("live", Verdict::Warn, None, detail),
        )
    };
    match t.ticks.len() {
        0 => {
            return unknown(format!(
            "no tick within {} (ticker off?): cannot time the stream; give --token to send probes",
            secs(t.watched)
        ))
        }
        1 => {
            return unknown(format!(
                "one tick within {}: too few to time; watch longer (--seconds) or give --token",
                secs(t.watched)
            ))
        }
        _ => {}
    }
    let base = t
        .ticks
        .iter()
        .map(|(s, a)| a - s)
        .fold(f64::INFINITY, f64::min);
    let late = t
        .ticks
        .iter()
        .map(|(s, a)| a - s - base)
        .fold(0.0, f64::max);
    // A burst: ticks written well apart arriving together.
    let burst = t.ticks.windows(2).any(|w| {
        let written = w[1].0 - w[0].0;
        let arrived = w[1].1 - w[0].1;
        written >= 0.5 && arrived < written / 4.0
    });
    let spacing = (t.ticks[t.ticks.len() - 1].0 - t.ticks[0].0) / (t.ticks.len() - 1) as f64;
    let verdict = if burst {
        Verdict::Fail
    } else {
        grade(late, LIVE, LATE)
    };
    let pace = if verdict == Verdict::Ok {
        Pace::Live
    } else {
        Pace::Late(late)
    };
    let detail = match verdict {
        Verdict::Ok => format!(
            "live: {} ticks written {:.2} s apart arrived as written (at most {} late)",
            t.ticks.len(),
            spacing,
            secs(late)
        ),
        _ if burst => format!(
            "batched: {} ticks written {:.2} s apart arrived in bursts, up to {} late",
            t.ticks.len(),
            spacing,
            secs(late)
        ),
        _ => format!(
            "slow: {} ticks arrived up to {} late",
            t.ticks.len(),
            secs(late)
        ),
    };
    (pace, Check::new("live", verdict, Some(late), detail))
}

/// The longest silence seen, against common idle timeouts.
pub fn silence(t: &Timeline) -> Check {
    let Some(head) = t.head_at else {
        return Check::new("idle", Verdict::Info, None, "not measured: nothing arrived");
    };
    // From the request on: a head held back is silence too.
    let end = t.ended.unwrap_or(t.watched);
    let mut times = vec![0.0, head];
    times.extend(t.body_times.iter().copied().filter(|x| *x >= head));
    times.push(end);
    let gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    let note = match t.heartbeats.as_slice() {
        [first, .., last] => format!(
            "; heartbeats every {:.1} s",
            (last - first) / (t.heartbeats.len() - 1) as f64
        ),
        [_] => "; one heartbeat".to_owned(),
        [] if t.watched < 20.0 => {
            " (a heartbeat every 15 s, the default, needs --seconds 20 or more to be seen)"
                .to_owned()
        }
        [] => String::new(),
    };
    if gap >= IDLE_TIMEOUT {
        let detail = format!(
            "silent for {} at a stretch: above common proxy idle timeouts (30 s shared hosts, \
             60 s nginx/load balancers): set NPH_EVENTS_HEARTBEAT below them",
            secs(gap)
        );
        return Check::new("idle", Verdict::Warn, Some(gap), detail);
    }
    let detail = format!(
        "longest silence {} over {} watched, below common idle timeouts (30 s and up){note}",
        secs(gap),
        secs(t.watched)
    );
    Check::new("idle", Verdict::Ok, Some(gap), detail)
}

/// Compression of the stream: `encoding` is the answer's
/// `Content-Encoding` (`None` if no head arrived); `plain_live` whether a
/// second request without `Accept-Encoding` arrived live.
pub fn compression(encoding: Option<Option<&str>>, live: bool, plain_live: Option<bool>) -> Check {
    let asked = "asked with Accept-Encoding: gzip, deflate, br";
    match encoding {
        Some(Some(e)) if live => Check::new(
            "compression",
            Verdict::Warn,
            None,
            format!(
                "Content-Encoding: {e}, though arriving live: compressors hold back small writes"
            ),
        ),
        Some(Some(e)) => Check::new(
            "compression",
            Verdict::Fail,
            None,
            format!("Content-Encoding: {e}: the compressor holds the stream back"),
        ),
        _ if !live && plain_live == Some(true) => Check::new(
            "compression",
            Verdict::Fail,
            None,
            "held back when asked with Accept-Encoding: gzip, deflate, br; without it the stream \
             arrives live: compression holds it",
        ),
        Some(None) => Check::new("compression", Verdict::Ok, None, format!("none ({asked})")),
        None => Check::new(
            "compression",
            Verdict::Info,
            None,
            "unknown: no head arrived",
        ),
    }
}

/// The protocol the answer came in.
pub fn version(protocol: Option<&str>) -> Check {
    match protocol {
        None => Check::new("http", Verdict::Info, None, "unknown: no head arrived"),
        Some(p @ "HTTP/1.0") => Check::new(
            "http",
            Verdict::Warn,
            None,
            format!("{p}: no chunking or keep-alive; something in between speaks only HTTP/1.0"),
        ),
        Some(p) => Check::new("http", Verdict::Ok, None, p.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(head: f64, body: &[f64]) -> Timeline {
        Timeline {
            watched: 10.0,
            head_at: Some(head),
            first_body_at: body.first().copied(),
            body_times: body.to_vec(),
            ..Timeline::default()
        }
    }

    #[test]
    fn probes_on_time_are_live_and_late_or_missing_ones_are_not() {
        let mut t = stream(0.01, &[0.01, 1.01, 2.01]);
        t.probes = vec![
            Probe {
                sent: 1.0,
                arrived: Some(1.01),
            },
            Probe {
                sent: 2.0,
                arrived: Some(2.01),
            },
        ];
        let (pace, c) = liveness(&t);
        assert_eq!((pace, c.verdict), (Pace::Live, Verdict::Ok), "{}", c.detail);
        t.probes[1].arrived = Some(6.5);
        let (pace, c) = liveness(&t);
        assert_eq!(
            (pace, c.verdict),
            (Pace::Late(4.5), Verdict::Fail),
            "{}",
            c.detail
        );
        t.probes[1].arrived = Some(3.5);
        assert_eq!(liveness(&t).1.verdict, Verdict::Warn);
        t.probes[1].arrived = None;
        assert_eq!(liveness(&t).1.verdict, Verdict::Fail);
        t.probes[0].arrived = None;
        let (_, c) = liveness(&t);
        assert!(c.detail.contains("no probe arrived"), "{}", c.detail);
    }

    #[test]
    fn ticks_in_bursts_are_batched_whatever_the_clock_skew() {
        // Written 1 s apart; the server's clock 100 s behind ours.
        let mut t = stream(0.01, &[0.02, 1.02, 2.02]);
        t.ticks = vec![(-100.0, 0.02), (-99.0, 1.02), (-98.0, 2.02)];
        assert_eq!(liveness(&t).0, Pace::Live);
        t.ticks = vec![(-100.0, 4.0), (-99.0, 4.01), (-98.0, 4.02)];
        let (pace, c) = liveness(&t);
        assert!(
            matches!(pace, Pace::Late(_)) && c.verdict == Verdict::Fail,
            "{}",
            c.detail
        );
        assert!(c.detail.contains("bursts"), "{}", c.detail);
        t.ticks.truncate(1);
        assert_eq!(liveness(&t).0, Pace::Unknown);
    }

    #[test]
    fn nothing_head_only_and_buffered_to_the_end() {
        let mut t = Timeline {
            watched: 5.0,
            ..Timeline::default()
        };
        assert_eq!(liveness(&t).0, Pace::Nothing);
        t.head_at = Some(0.01);
        assert_eq!(liveness(&t).0, Pace::HeadOnly);
        let mut t = stream(3.0, &[3.0]);
        t.ended = Some(3.05);
        let (pace, c) = liveness(&t);
        assert_eq!((pace, c.verdict), (Pace::ToTheEnd, Verdict::Fail));
    }

    #[test]
    fn first_bytes_silence_compression_and_version() {
        let t = stream(0.01, &[0.02, 9.0]);
        let [h, b] = first_bytes(&t);
        assert_eq!((h.verdict, b.verdict), (Verdict::Ok, Verdict::Ok));
        let c = silence(&t);
        assert_eq!((c.verdict, c.value), (Verdict::Ok, Some(9.0 - 0.02)));
        let mut long = stream(0.01, &[0.02, 40.0]);
        long.watched = 45.0;
        assert_eq!(silence(&long).verdict, Verdict::Warn);
        let mut beating = stream(0.01, &[0.02, 1.0, 2.0, 3.0]);
        beating.heartbeats = vec![1.0, 2.0, 3.0];
        assert!(
            silence(&beating).detail.ends_with("heartbeats every 1.0 s"),
            "{}",
            silence(&beating).detail
        );
        assert_eq!(
            compression(Some(Some("gzip")), false, None).verdict,
            Verdict::Fail
        );
        assert_eq!(
            compression(Some(Some("gzip")), true, None).verdict,
            Verdict::Warn
        );
        assert_eq!(compression(None, false, Some(true)).verdict, Verdict::Fail);
        assert_eq!(
            compression(Some(None), true, Some(true)).verdict,
            Verdict::Ok
        );
        assert_eq!(compression(None, false, Some(false)).verdict, Verdict::Info);
        assert_eq!(version(Some("HTTP/1.0")).verdict, Verdict::Warn);
        assert_eq!(version(Some("HTTP/2")).verdict, Verdict::Ok);
    }
}
