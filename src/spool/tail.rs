//! Reading a channel as it grows: one reader per connected client.
//!
//! The reader keeps its segment open and an offset just past the last
//! complete record it delivered. Each poll reads from there to the end and
//! passes on only complete records (the bytes of a record being written, or
//! torn by a killed publisher, are read again next time; a publisher may
//! truncate them, never anything before them).
//!
//! Rotation needs no marker: a new segment is named by the id of its first
//! record, so when the segment named `last id + 1` exists, the current one
//! is finished (that id went into the new segment). One `stat` per poll
//! tells. Gaps (a reader slower than retention, a wiped channel) are found
//! by a full listing, done at heartbeats.
//!
//! A corrupt spool (ids going backwards, garbage named like a segment, a
//! segment named `u64::MAX`, a huge file) costs at most wrong or missing
//! events for the reader, never a panic or an endless loop: ids are
//! computed with checked arithmetic, a poll only ever moves on to a
//! segment with a larger name, and opening at the end reads the file's
//! last record only. Segment files are opened without following links.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{
    check_channel_dirs, complete_len, last_record, list_segments, open_file, record_id,
    record_id_at, records, segment_name, Spool,
};
use crate::sse::{self, Event};

/// Where a new reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Only events published from now on.
    Now,
    /// Resume strictly after this id (`Last-Event-ID`).
    After(u64),
}

/// Why a `reset` event was sent: the client cannot get a gap-free
/// continuation of what it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// The requested id is older than what the channel still retains.
    TooOld,
    /// The requested id was never handed out by this channel (the spool was
    /// reset, or the id comes from elsewhere).
    Unknown,
    /// Events were lost between two delivered ones (the reader fell further
    /// behind than the retention, or the channel was wiped meanwhile).
    Gap,
}

impl ResetReason {
    fn as_str(self) -> &'static str {
        match self {
            ResetReason::TooOld => "too-old",
            ResetReason::Unknown => "unknown",
            ResetReason::Gap => "gap",
        }
    }
}

pub use crate::sse::RESET_EVENT;

#[derive(Debug)]
struct Segment {
    first: u64,
    file: File,
    offset: u64,
}

/// A reader of one channel.
#[derive(Debug)]
pub struct Tailer {
    dir: PathBuf,
    current: Option<Segment>,
    last_id: Option<u64>,
    scratch: Vec<u8>,
}

impl Tailer {
    /// Opens `channel` at `start`. Anything the client must get first (a
    /// `reset` event, the backlog after its last id) is appended to `out`
    /// by the first [`Tailer::poll`]; the reset, if any, right here.
    pub fn open(
        spool: &Spool,
        channel: &str,
        start: Start,
        out: &mut Vec<u8>,
    ) -> io::Result<Tailer> {
        spool.check_channel_dir(channel)?;
        let mut t = Tailer {
            dir: spool.channel_dir(channel),
            current: None,
            last_id: None,
            scratch: Vec::new(),
        };
        let firsts = list_segments(&t.dir)?;
        // `BEFORE_FIRST`: the client was told the channel had no event yet;
        // everything retained came after that (no reset).
        let start = match (start, firsts.first()) {
            (Start::After(super::BEFORE_FIRST), None) => return Ok(t),
            (Start::After(super::BEFORE_FIRST), Some(&oldest)) => Start::After(oldest - 1),
            (other, _) => other,
        };
        let (Some(&oldest), Some(&newest)) = (firsts.first(), firsts.last()) else {
            if let Start::After(n) = start {
                reset(out, ResetReason::Unknown, n, None);
            }
            return Ok(t);
        };
        match start {
            Start::Now => t.open_at_end(newest)?,
            Start::After(n) if n.checked_add(1).is_none_or(|next| next < oldest) => {
                if n < oldest {
                    reset(out, ResetReason::TooOld, n, Some(oldest - 1));
                    t.last_id = Some(oldest - 1);
                    t.current = Some(open_segment(&t.dir, oldest)?);
                } else {
                    // n is u64::MAX: no id can follow it.
                    t.open_at_end(newest)?;
                    if t.last_id != Some(n) {
                        reset(out, ResetReason::Unknown, n, t.last_id);
                    }
                }
            }
            Start::After(n) => {
                let first = *firsts
                    .iter()
                    .rev()
                    .find(|f| **f <= n + 1)
                    .unwrap_or(&oldest);
                t.open_after(first, n, first == newest, out)?;
            }
        }
        Ok(t)
    }

    /// Positions at the end of the complete records of segment `first`.
    /// Reads only the last record (in constant memory), not the segment.
    fn open_at_end(&mut self, first: u64) -> io::Result<()> {
        let mut seg = open_segment(&self.dir, first)?;
        let size = seg.file.metadata()?.len();
        if let Some((start, end)) = last_record(&seg.file, size)? {
            seg.offset = end;
            self.last_id = record_id_at(&seg.file, start)?;
        }
        self.current = Some(seg);
        Ok(())
    }

    /// Positions before the first record of segment `first` whose id is
    /// greater than `n`; resets when `n` is beyond the channel's last id.
    fn open_after(
        &mut self,
        first: u64,
        n: u64,
        newest: bool,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let mut seg = open_segment(&self.dir, first)?;
        read_from(&seg.file, 0, &mut self.scratch)?;
        let mut offset = 0u64;
        let mut last = None;
        for rec in records(&self.scratch) {
            let id = record_id(rec);
            if id.is_some_and(|id| id > n) {
                self.last_id = Some(n);
                seg.offset = offset;
                self.current = Some(seg);
                return Ok(());
            }
            last = id.or(last);
            offset += rec.len() as u64;
        }
        // Every record is <= n: n is the last id, or beyond it.
        seg.offset = offset;
        self.last_id = last.or(Some(n));
        if newest && last != Some(n) {
            reset(out, ResetReason::Unknown, n, last);
            self.last_id = last;
        }
        self.current = Some(seg);
        Ok(())
    }

    /// The id of the last record read (or, before any, the one the reader
    /// starts after); `None` on a channel with no records yet.
    pub fn last_id(&self) -> Option<u64> {
        self.last_id
    }

    /// Appends every complete record published since the last poll to
    /// `out`. With `full_check`, also lists the channel to detect gaps.
    pub fn poll(&mut self, out: &mut Vec<u8>, full_check: bool) -> io::Result<()> {
        loop {
            let Some(seg) = self.current.as_mut() else {
                // The channel had no segment yet: start at its oldest.
                check_channel_dirs(&self.dir)?;
                let Some(&first) = list_segments(&self.dir)?.first() else {
                    return Ok(());
                };
                self.current = Some(open_segment(&self.dir, first)?);
                continue;
            };
            read_from(&seg.file, seg.offset, &mut self.scratch)?;
            let complete = complete_len(&self.scratch);
            out.extend_from_slice(&self.scratch[..complete]);
            seg.offset += complete as u64;
            if let Some(id) = last_record_id(&self.scratch[..complete]) {
                self.last_id = Some(id);
            }
            if complete < self.scratch.len() {
                return Ok(()); // a record is being written
            }
            let Some(last) = self.last_id else {
                return Ok(()); // an empty segment cannot have been rotated
            };
            let Some(next) = last.checked_add(1) else {
                return Ok(()); // u64::MAX: the channel can have nothing more
            };
            // Only ever forwards (a corrupt segment's ids may go backwards):
            // each turn of this loop opens a segment with a larger name.
            if next > seg.first && self.dir.join(segment_name(next)).exists() {
                self.current = Some(open_segment(&self.dir, next)?);
                continue;
            }
            if !full_check {
                return Ok(());
            }
            let seg_first = seg.first;
            let later = list_segments(&self.dir)?
                .into_iter()
                .find(|f| *f > next && *f > seg_first);
            let Some(first) = later else {
                return Ok(());
            };
            reset(out, ResetReason::Gap, last, Some(first - 1));
            self.last_id = Some(first - 1);
            self.current = Some(open_segment(&self.dir, first)?);
        }
    }
}

fn open_segment(dir: &Path, first: u64) -> io::Result<Segment> {
    let file = open_file(
        OpenOptions::new().read(true),
        &dir.join(segment_name(first)),
    )?;
    Ok(Segment {
        first,
        file,
        offset: 0,
    })
}

/// Reads `file` from `offset` to its end into `buf` (emptied first). A
/// short read ends it: for a regular file that is the end, and it saves the
/// extra zero-length read on every wake-up. Capacity beyond 64 KiB left by a
/// large backlog is released, so it does not stay allocated for the life of
/// the connection.
fn read_from(file: &File, offset: u64, buf: &mut Vec<u8>) -> io::Result<()> {
    // Small: the listener keeps one buffer per connection.
    const CHUNK: usize = 4096;
    if buf.capacity() > 64 * 1024 {
        *buf = Vec::new();
    }
    buf.clear();
    let mut pos = offset;
    loop {
        let start = buf.len();
        buf.resize(start + CHUNK, 0);
        let n = file.read_at(&mut buf[start..], pos)?;
        buf.truncate(start + n);
        pos += n as u64;
        if n < CHUNK {
            return Ok(());
        }
    }
}

fn last_record_id(complete: &[u8]) -> Option<u64> {
    if complete.is_empty() {
        return None;
    }
    let body = &complete[..complete.len() - 2];
    let start = body
        .windows(2)
        .rposition(|w| w == b"\n\n")
        .map_or(0, |i| i + 2);
    record_id(&complete[start..])
}

/// Appends a `reset` event. Its `id` is where the stream continues (so a
/// reconnect resumes from there), or empty when there is nothing yet.
fn reset(out: &mut Vec<u8>, reason: ResetReason, requested: u64, resume_after: Option<u64>) {
    let data = serde_json::json!({
        "reason": reason.as_str(),
        "requested": requested.to_string(),
        "resume_after": resume_after.map(|id| id.to_string()),
    })
    .to_string();
    let id = resume_after.map(|id| id.to_string()).unwrap_or_default();
    let event = Event {
        id: Some(&id),
        event: Some(RESET_EVENT),
        data: &data,
    };
    let _ = sse::encode(&event, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::append::{append, NewEvent};
    use crate::spool::{Retention, BEFORE_FIRST};

    fn temp_spool(tag: &str) -> (PathBuf, Spool) {
        let dir =
            std::env::temp_dir().join(format!("nph-events-tail-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spool = Spool::open(&dir).unwrap();
        (dir, spool)
    }

    fn publish(spool: &Spool, data: &str, r: &Retention) -> u64 {
        append(spool, "c", NewEvent { event: None, data }, r, 100).unwrap()
    }

    fn datas(out: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(out)
            .split("\n\n")
            .filter(|s| !s.is_empty())
            .map(|rec| {
                let ev = rec.lines().find(|l| l.starts_with("event: ")).unwrap_or("");
                let data = rec.lines().find(|l| l.starts_with("data: ")).unwrap_or("");
                format!(
                    "{}{}",
                    ev.replace("event: reset", "RESET "),
                    &data[6.min(data.len())..]
                )
            })
            .collect()
    }

    #[test]
    fn live_delivery_across_rotations() {
        let (dir, spool) = temp_spool("live");
        let r = Retention {
            events: 8,
            bytes: 1 << 20,
        };
        let mut out = Vec::new();
        let mut t = Tailer::open(&spool, "c", Start::Now, &mut out).unwrap();
        t.poll(&mut out, false).unwrap();
        assert!(out.is_empty());
        let mut want = Vec::new();
        for i in 0..7 {
            publish(&spool, &format!("m{i}"), &r);
            want.push(format!("m{i}"));
            t.poll(&mut out, false).unwrap();
        }
        for i in 7..12 {
            publish(&spool, &format!("m{i}"), &r);
            want.push(format!("m{i}"));
        }
        t.poll(&mut out, false).unwrap();
        assert_eq!(datas(&out), want);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn resume_cases() {
        let (dir, spool) = temp_spool("resume");
        let r = Retention {
            events: 4,
            bytes: 1 << 20,
        };
        let ids: Vec<u64> = (0..10)
            .map(|i| publish(&spool, &format!("m{i}"), &r))
            .collect();
        // ids 100..=109, segments of 1 event; at least 4 retained.
        let oldest = list_segments(&spool.channel_dir("c")).unwrap()[0];
        let run = |start: Start| {
            let mut out = Vec::new();
            let mut t = Tailer::open(&spool, "c", start, &mut out).unwrap();
            t.poll(&mut out, true).unwrap();
            datas(&out)
        };
        assert_eq!(run(Start::After(107)), vec!["m8", "m9"]);
        assert_eq!(run(Start::After(109)), Vec::<String>::new());
        let too_old = run(Start::After(100));
        assert!(
            too_old[0].starts_with("RESET {\"reason\":\"too-old\""),
            "{too_old:?}"
        );
        assert_eq!(too_old.len() as u64, 1 + 110 - oldest);
        let unknown = run(Start::After(5000));
        assert_eq!(unknown.len(), 1);
        assert!(
            unknown[0].contains("\"unknown\"") && unknown[0].contains("\"resume_after\":\"109\"")
        );
        assert_eq!(ids[9], 109);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn empty_channel_then_first_publish() {
        let (dir, spool) = temp_spool("empty");
        let r = Retention::default();
        let mut out = Vec::new();
        let mut t = Tailer::open(&spool, "c", Start::After(7), &mut out).unwrap();
        assert!(String::from_utf8_lossy(&out).contains("id: \nevent: reset\n"));
        out.clear();
        publish(&spool, "first", &r);
        t.poll(&mut out, false).unwrap();
        assert_eq!(datas(&out), vec!["first"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn resuming_before_the_first_event_gets_everything_without_a_reset() {
        let (dir, spool) = temp_spool("before-first");
        let r = Retention::default();
        // Told "0" while the channel was empty; nothing published since.
        let mut out = Vec::new();
        let mut t = Tailer::open(&spool, "c", Start::After(BEFORE_FIRST), &mut out).unwrap();
        t.poll(&mut out, false).unwrap();
        assert!(
            out.is_empty(),
            "no reset: {}",
            String::from_utf8_lossy(&out)
        );
        publish(&spool, "a", &r);
        t.poll(&mut out, false).unwrap();
        assert_eq!(datas(&out), vec!["a"]);
        // Events published while it was away: all of them, no reset.
        publish(&spool, "b", &r);
        let mut out = Vec::new();
        let mut t = Tailer::open(&spool, "c", Start::After(BEFORE_FIRST), &mut out).unwrap();
        t.poll(&mut out, false).unwrap();
        assert_eq!(datas(&out), vec!["a", "b"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn partial_record_is_held_back() {
        let (dir, spool) = temp_spool("partial");
        let r = Retention::default();
        publish(&spool, "a", &r);
        let mut out = Vec::new();
        let mut t = Tailer::open(&spool, "c", Start::After(99), &mut out).unwrap();
        let path = spool.channel_dir("c").join(segment_name(100));
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        use std::io::Write;
        f.write_all(b"id: 101\ndata: to").unwrap();
        t.poll(&mut out, true).unwrap();
        assert_eq!(datas(&out), vec!["a"]);
        // A later publisher cuts the torn record and appends a whole one.
        publish(&spool, "b", &r);
        t.poll(&mut out, false).unwrap();
        assert_eq!(datas(&out), vec!["a", "b"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Runs `f` on its own thread; fails if it panics or takes more than
    /// 20 s (an endless loop).
    fn bounded<T: Send + 'static>(what: String, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        match rx.recv_timeout(std::time::Duration::from_secs(20)) {
            Ok(v) => v,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no return in 20 s"),
            Err(_) => panic!("{what}: panicked"),
        }
    }

    /// Readers over a corrupt spool return (an error or some bytes) without
    /// panicking or looping, from every start and across polls. Old code:
    /// `last + 1` overflowed on an id of u64::MAX (a panic in a debug
    /// build), and segments whose ids go backwards sent a poll back and
    /// forth between two segments forever.
    #[test]
    fn readers_survive_a_corrupt_spool() {
        let max = u64::MAX;
        let big = |first: u64| format!("id: {first}\ndata: x\n\n");
        // (what, [(segment name, its bytes)])
        type Case = (&'static str, Vec<(u64, Vec<u8>)>);
        let cases: Vec<Case> = vec![
            (
                "ids going backwards across segments",
                vec![
                    (5, b"id: 5\ndata: a\n\n".to_vec()),
                    (6, b"id: 4\ndata: b\n\n".to_vec()),
                ],
            ),
            (
                "ids going backwards inside a segment",
                vec![(
                    10,
                    b"id: 10\ndata: a\n\nid: 3\ndata: b\n\nid: 11\ndata: c\n\n".to_vec(),
                )],
            ),
            (
                "ids below the segment name",
                vec![(1000, big(5).into_bytes())],
            ),
            (
                "a segment named u64::MAX",
                vec![(max, big(max).into_bytes())],
            ),
            (
                "u64::MAX before the end",
                vec![(
                    max - 1,
                    format!("{}{}", big(max - 1), big(max)).into_bytes(),
                )],
            ),
            (
                "garbage named like a segment",
                vec![(1, b"\x00\xff\n\n\xfe\n\nno id\n\n\n\n\n".to_vec())],
            ),
            ("no record end at all", vec![(1, vec![b'z'; 100_000])]),
            ("empty segments", vec![(1, Vec::new()), (2, Vec::new())]),
        ];
        for (i, (what, segments)) in cases.into_iter().enumerate() {
            let (dir, spool) = temp_spool(&format!("corrupt{i}"));
            let chan = spool.create_channel_dir("c").unwrap();
            for (first, bytes) in &segments {
                std::fs::write(chan.join(segment_name(*first)), bytes).unwrap();
            }
            let starts = [
                Start::Now,
                Start::After(0),
                Start::After(4),
                Start::After(5),
                Start::After(1000),
                Start::After(max - 1),
                Start::After(max),
            ];
            for start in starts {
                let spool = spool.clone();
                bounded(format!("{what}, {start:?}"), move || {
                    let mut out = Vec::new();
                    if let Ok(mut t) = Tailer::open(&spool, "c", start, &mut out) {
                        for full in [false, true, false, true] {
                            let _ = t.poll(&mut out, full);
                        }
                    }
                    out.len()
                });
            }
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    /// A directory, a symbolic link or a huge sparse file named like a
    /// segment: the reader fails or reads, quickly, and never follows the
    /// link.
    #[test]
    fn readers_over_odd_segment_files() {
        let (dir, spool) = temp_spool("odd");
        let chan = spool.create_channel_dir("c").unwrap();
        std::fs::create_dir(chan.join(segment_name(1))).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "id: 2\ndata: secret\n\n").unwrap();
        std::os::unix::fs::symlink(&victim, chan.join(segment_name(2))).unwrap();
        let mut out = Vec::new();
        for start in [Start::Now, Start::After(0), Start::After(1)] {
            let e = Tailer::open(&spool, "c", start, &mut out).unwrap_err();
            assert!(
                e.to_string().contains("symbolic link") || e.to_string().contains("regular file"),
                "{e}"
            );
        }
        assert!(!String::from_utf8_lossy(&out).contains("secret"));
        std::fs::remove_dir_all(&chan).unwrap();

        // 256 MiB of zeros (sparse): opening at the end takes constant memory.
        let chan = spool.create_channel_dir("c").unwrap();
        let seg = chan.join(segment_name(9));
        std::fs::File::create(&seg)
            .unwrap()
            .set_len(256 << 20)
            .unwrap();
        let spool2 = spool.clone();
        let started = std::time::Instant::now();
        bounded("huge file".into(), move || {
            let mut out = Vec::new();
            let t = Tailer::open(&spool2, "c", Start::Now, &mut out).unwrap();
            assert_eq!(t.current.as_ref().map(|s| s.offset), Some(0));
        });
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
        // A channel directory planted as a link is refused, not listed.
        std::fs::remove_dir_all(&chan).unwrap();
        let elsewhere = dir.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join(segment_name(1)), "id: 1\ndata: secret\n\n").unwrap();
        std::os::unix::fs::symlink(&elsewhere, &chan).unwrap();
        let e = Tailer::open(&spool, "c", Start::After(0), &mut out).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn slow_reader_gets_a_gap_reset() {
        let (dir, spool) = temp_spool("gap");
        let r = Retention {
            events: 4,
            bytes: 1 << 20,
        };
        publish(&spool, "a", &r);
        let mut out = Vec::new();
        let mut t = Tailer::open(&spool, "c", Start::After(99), &mut out).unwrap();
        t.poll(&mut out, false).unwrap();
        for i in 0..20 {
            publish(&spool, &format!("m{i}"), &r);
        }
        t.poll(&mut out, false).unwrap();
        t.poll(&mut out, true).unwrap();
        let got = datas(&out);
        assert_eq!(got[0], "a");
        assert!(got[1].starts_with("RESET {\"reason\":\"gap\""), "{got:?}");
        assert_eq!(got.last().unwrap(), "m19");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
