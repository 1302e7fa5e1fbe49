//! The site-wide limit on publishes from clients (POST and WebSocket
//! messages): a token bucket every process of the site shares through a
//! small file in the spool, `<spool>/publish-rate`, under `flock(2)`; a
//! second one, `<spool>/publish-rate-open`, holds the anonymous clients of
//! an open relay to half of it, so that they cannot starve publishers with
//! credentials.
//!
//! One connection's own limit (`ws_rate`) does not bound the site: many
//! connections, or many CGI processes, each within their limit, can still
//! append faster than readers and retention are sized for. The bucket
//! holds `publish_rate` tokens and refills at `publish_rate` per second;
//! a publish that finds it empty is refused (429 with `Retry-After`, or
//! an error notice on a WebSocket) and appends nothing. Publishing from
//! the command line is the operator's and is not counted.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Who publishes: anonymous chat clients (`ws_relay` `open`) get at most
/// half the site's rate, so they cannot spend the rate that clients with
/// credentials (a token, `REMOTE_USER`) publish with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publisher {
    /// A client with the credentials a POST needs.
    Credentialed,
    /// A WebSocket client allowed only because the relay is open.
    Anonymous,
}

impl Publisher {
    /// `Anonymous` when `anonymous`.
    pub fn from_anonymous(anonymous: bool) -> Publisher {
        if anonymous {
            Publisher::Anonymous
        } else {
            Publisher::Credentialed
        }
    }

    /// File name of this kind's bucket in the spool (the site's, or the
    /// anonymous share).
    pub fn file(self) -> &'static str {
        match self {
            Publisher::Credentialed => "publish-rate",
            Publisher::Anonymous => "publish-rate-open",
        }
    }
}

/// A publish refused by the site-wide limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited;

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "too many publishes on this site right now (NPH_EVENTS_PUBLISH_RATE); try again shortly"
        )
    }
}

impl std::error::Error for RateLimited {}

/// Whether an error is [`RateLimited`].
pub fn is_rate_limited(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<RateLimited>())
}

/// The bucket's state: tokens left and when it was last refilled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Tokens left (at most the rate).
    pub tokens: f64,
    /// Wall clock of the last refill, in microseconds.
    pub at_micros: u64,
}

impl Bucket {
    /// Refills for the time since the last call and takes one token if
    /// there is one. A clock that went backwards refills nothing.
    pub fn take(&mut self, rate: u32, now_micros: u64) -> bool {
        let rate = f64::from(rate.max(1));
        let elapsed = now_micros.saturating_sub(self.at_micros) as f64 / 1e6;
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.at_micros = self.at_micros.max(now_micros);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Parses the file's text; anything unreadable is a full bucket (a
    /// damaged file must not stop publishing for good).
    fn parse(text: &str, rate: u32) -> Bucket {
        let full = Bucket {
            tokens: f64::from(rate),
            at_micros: 0,
        };
        let mut parts = text.split_whitespace();
        let (Some(t), Some(a)) = (parts.next(), parts.next()) else {
            return full;
        };
        match (t.parse::<f64>(), a.parse::<u64>()) {
            (Ok(tokens), Ok(at_micros)) if tokens.is_finite() && tokens >= 0.0 => Bucket {
                tokens: tokens.min(f64::from(rate)),
                at_micros,
            },
            _ => full,
        }
    }
}

/// Takes a token for one publish by `who` from the site's buckets in
/// `spool_root`; `Err` with [`RateLimited`] when there is none. Every
/// publish takes one from the site's bucket (`rate`); an anonymous one
/// first takes one from the anonymous share (half the rate), so anonymous
/// clients together never get more than half the site's rate, and clients
/// with credentials always keep the other half.
pub fn take(spool_root: &Path, who: Publisher, rate: u32, now_micros: u64) -> io::Result<()> {
    if who == Publisher::Anonymous {
        take_from(spool_root, who.file(), (rate / 2).max(1), now_micros)?;
    }
    take_from(spool_root, Publisher::Credentialed.file(), rate, now_micros)
}

fn take_from(spool_root: &Path, file: &str, rate: u32, now_micros: u64) -> io::Result<()> {
    let path = spool_root.join(file);
    if empty_until(&path) > now_micros {
        return Err(io::Error::other(RateLimited));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)?;
    file.lock()?;
    let (taken, bucket) = update(&file, rate, now_micros)?;
    // Closing the file releases the lock.
    drop(file);
    if taken {
        return Ok(());
    }
    // Nobody adds tokens but time: none can be there before this.
    let wait = (1.0 - bucket.tokens).max(0.0) / f64::from(rate.max(1));
    set_empty_until(path, bucket.at_micros + (wait * 1e6) as u64);
    Err(io::Error::other(RateLimited))
}

/// Buckets this process found empty, and the wall clock (microseconds)
/// before which they cannot hold a token again: a flood is refused here
/// without touching the file. Other processes only take tokens, so this
/// never refuses a publish the file would have allowed.
static EMPTY: Mutex<Vec<(PathBuf, u64)>> = Mutex::new(Vec::new());

fn empty_until(path: &Path) -> u64 {
    let empty = EMPTY.lock().unwrap_or_else(|e| e.into_inner());
    empty.iter().find(|(p, _)| p == path).map_or(0, |(_, t)| *t)
}

fn set_empty_until(path: PathBuf, until: u64) {
    let mut empty = EMPTY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(entry) = empty.iter_mut().find(|(p, _)| *p == path) {
        entry.1 = until;
    } else if empty.len() < 16 {
        // A process uses one spool, two files: the list stays tiny.
        empty.push((path, until));
    }
}

/// Bytes of the record: fixed, so that it is overwritten in place. A
/// file truncated and rewritten is flushed to disk on close by ext4
/// (`auto_da_alloc`), and its block freed and discarded: under a flood
/// of refused publishes that was a disk write per request.
const RECORD: usize = 48;

fn update(file: &File, rate: u32, now_micros: u64) -> io::Result<(bool, Bucket)> {
    let mut buf = [0u8; RECORD];
    let n = file.read_at(&mut buf, 0)?;
    let text = std::str::from_utf8(&buf[..n]).unwrap_or("");
    let mut bucket = Bucket::parse(text.lines().next().unwrap_or(""), rate);
    let taken = bucket.take(rate, now_micros);
    let text = format!("{:.6} {}", bucket.tokens, bucket.at_micros);
    let mut record = [b' '; RECORD];
    record[..text.len()].copy_from_slice(text.as_bytes());
    record[RECORD - 1] = b'\n';
    file.write_all_at(&record, 0)?;
    Ok((taken, bucket))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut b = Bucket::parse("", 3);
        let t0 = 1_000_000_000;
        assert!(b.take(3, t0) && b.take(3, t0) && b.take(3, t0));
        assert!(!b.take(3, t0), "burst spent");
        assert!(!b.take(3, t0 + 300_000), "0.9 of a token");
        assert!(b.take(3, t0 + 400_000), "a third of a second later");
        assert!(
            !b.take(3, t0 - 5_000_000),
            "a clock going back gives nothing"
        );
        assert_eq!(Bucket::parse("garbage", 5).tokens, 5.0);
        assert_eq!(Bucket::parse("NaN 5", 5).tokens, 5.0);
        assert_eq!(Bucket::parse("1e300 5", 5).tokens, 5.0);
    }

    /// Two processes' worth of takers share one file: the site gets its
    /// rate, not each taker.
    #[test]
    fn the_file_is_shared() {
        let dir = std::env::temp_dir().join(format!("nph-rate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t0 = 2_000_000_000;
        let cred = Publisher::Credentialed;
        let ok = (0..10).filter(|_| take(&dir, cred, 4, t0).is_ok()).count();
        assert_eq!(ok, 4);
        let e = take(&dir, cred, 4, t0).unwrap_err();
        assert!(is_rate_limited(&e), "{e}");
        assert!(take(&dir, cred, 4, t0 + 250_000).is_ok(), "refilled");
        // Anonymous clients get half: a flood of theirs leaves the other
        // half to clients with credentials.
        let t1 = t0 + 10_000_000;
        let anon = Publisher::Anonymous;
        let ok = (0..10).filter(|_| take(&dir, anon, 4, t1).is_ok()).count();
        assert_eq!(ok, 2, "half the burst");
        let ok = (0..10).filter(|_| take(&dir, cred, 4, t1).is_ok()).count();
        assert_eq!(ok, 2, "the other half");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The record is rewritten in place (never truncated: see
    /// [`RECORD`]), and a bucket found empty is refused from memory until
    /// a token can be there again, without opening the file.
    #[test]
    fn refusals_touch_no_file_until_a_token_is_due() {
        let dir = std::env::temp_dir().join(format!("nph-rate-mem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(Publisher::Credentialed.file());
        let t0 = 3_000_000_000;
        let cred = Publisher::Credentialed;
        assert!(take(&dir, cred, 2, t0).is_ok() && take(&dir, cred, 2, t0).is_ok());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), RECORD as u64);
        assert!(take(&dir, cred, 2, t0).is_err(), "burst spent");
        std::fs::remove_file(&path).unwrap();
        let e = take(&dir, cred, 2, t0 + 499_999).unwrap_err();
        assert!(is_rate_limited(&e), "{e}");
        assert!(!path.exists(), "refused without opening the file");
        // Half a second later a token is due: the file is read again (here
        // it is gone, so the bucket starts full).
        assert!(take(&dir, cred, 2, t0 + 500_000).is_ok());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), RECORD as u64);
        // A record of an older, shorter format is read and overwritten.
        std::fs::write(&path, "0.5 4000000000\n").unwrap();
        assert!(take(&dir, cred, 2, 4_000_000_000).is_err(), "half a token");
        assert!(
            take(&dir, cred, 2, 4_000_250_000).is_ok(),
            "a quarter second on"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), RECORD);
        assert!(text.starts_with("0.000000 4000250000 "), "{text:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
