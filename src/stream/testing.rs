//! Test helpers shared by the stream drivers' tests: a configuration with
//! the timing under test, and a socket in memory.

use std::io::{self, Read, Write};
use std::time::Duration;

use crate::config::Config;

/// The default configuration with this ticker interval, heartbeat and
/// maximum duration (seconds).
pub fn config(interval: f64, heartbeat: f64, max: Option<f64>) -> Config {
    Config {
        interval: secs(interval),
        heartbeat: secs(heartbeat),
        max_duration: max.map(secs),
        max_duration_auto: false,
        max_duration_jitter: 0.0,
        ..Config::default()
    }
}

/// Fractional seconds.
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A non-blocking socket in memory: what the client sent, what it takes.
#[derive(Debug)]
pub struct MockSocket {
    /// Bytes the client sent, not read yet.
    pub input: Vec<u8>,
    /// Bytes written to the client.
    pub output: Vec<u8>,
    /// Bytes it takes before `WouldBlock`.
    pub room: usize,
    /// The client hung up: reads end once `input` is empty.
    pub closed: bool,
}

impl MockSocket {
    /// An open socket with room for everything.
    pub fn new() -> MockSocket {
        MockSocket {
            input: Vec::new(),
            output: Vec::new(),
            room: usize::MAX,
            closed: false,
        }
    }

    /// What was written since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }
}

impl Read for MockSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            if self.closed {
                return Ok(0);
            }
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input.drain(..n);
        Ok(n)
    }
}

impl Write for MockSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        self.output.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Splits unmasked server WebSocket frames (each whole, header included);
/// a cut frame at the end is left out.
pub fn frames(mut out: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    while out.len() >= 2 {
        let (len, head) = match out[1] & 0x7f {
            126 if out.len() >= 4 => (usize::from(u16::from_be_bytes([out[2], out[3]])), 4),
            127 if out.len() >= 10 => (
                u64::from_be_bytes(out[2..10].try_into().unwrap_or([0; 8])) as usize,
                10,
            ),
            126 | 127 => break,
            n => (usize::from(n), 2),
        };
        if out.len() < head + len {
            break;
        }
        frames.push(&out[..head + len]);
        out = &out[head + len..];
    }
    frames
}
