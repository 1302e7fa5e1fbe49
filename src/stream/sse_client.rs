//! One SSE client of the listener, as a state machine its driver (the
//! reactor) feeds: published events, timer calls, socket readiness. The
//! same [`Schedule`] as the CGI's blocking loop decides ticks, heartbeats
//! and the end; this file only decides what to write and when the client
//! is done.
//!
//! * Output goes through one queue: the socket takes what it can, the rest
//!   waits for it to become writable, so a slow client never holds up the
//!   others. A client that stops reading is dropped once
//!   [`MAX_QUEUED`] bytes wait; it reconnects and resumes from its last id.
//! * An idle client holds no buffer: a few hundred bytes of state and its
//!   socket.
//! * Events at or below the newest id sent are not sent again (the
//!   backlog read at subscription and the live broadcast may overlap).

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use super::schedule::{render_heartbeat, render_recycle, render_tick, Action, Schedule};
use super::{queue_or_write, write_queued, End, MAX_QUEUED};
use crate::clock::Clock;
use crate::config::Config;

/// How long a stopping server waits for a client to take what is queued.
const STOP_WAIT: Duration = Duration::from_secs(2);
/// Bytes a client may send after its request before it is dropped (an
/// event-stream client sends nothing).
const MAX_IGNORED: usize = 64 * 1024;

/// One listener SSE client.
#[derive(Debug)]
pub struct SseClient {
    schedule: Schedule,
    /// The schedule's time zero.
    epoch: Instant,
    out: Vec<u8>,
    last_id: Option<u64>,
    ignored: usize,
    /// Ending: the queue is flushed until then, and the client ends as it
    /// empties.
    closing: Option<(Instant, End)>,
    ended: Option<End>,
}

impl SseClient {
    /// A client whose stream starts `now` with `opening` (head, opening
    /// lines, backlog) to send first; `last_id` is the newest event id in
    /// it (or the id the client resumes after).
    pub fn new(
        config: &Config,
        socket: &mut impl Write,
        opening: &[u8],
        last_id: Option<u64>,
        now: Instant,
    ) -> SseClient {
        let mut client = SseClient {
            schedule: Schedule::new(config, Duration::ZERO),
            epoch: now,
            out: Vec::new(),
            last_id,
            ignored: 0,
            closing: None,
            ended: None,
        };
        client.write(socket, opening);
        client
    }

    /// Why the client is done, once it is: the driver then drops it.
    pub fn ended(&self) -> Option<End> {
        self.ended
    }

    /// Output is queued: wait for the socket to become writable.
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// Memory its output queue holds (for the server's output budget):
    /// the allocation, not only the bytes in it.
    pub fn queued(&self) -> usize {
        self.out.capacity()
    }

    /// Ends the client at once, dropping its output (the server's output
    /// budget is spent and it holds part of it). It reconnects and
    /// resumes from its last id.
    pub fn abandon(&mut self, end: End) {
        self.out = Vec::new();
        self.ended = Some(end);
    }

    /// Sends new events (`(id, record)` pairs, records as the spool holds
    /// them: each a whole SSE event) in one write; returns how many.
    pub fn send_events(
        &mut self,
        socket: &mut impl Write,
        events: &[(Option<u64>, &[u8])],
        now: Instant,
    ) -> usize {
        if self.closing.is_some() || self.ended.is_some() {
            return 0;
        }
        let mut buf = Vec::new();
        let mut sent = 0;
        for (id, record) in events {
            if let Some(id) = *id {
                if self.last_id.is_some_and(|last| id <= last) {
                    continue;
                }
                self.last_id = Some(id);
            }
            buf.extend_from_slice(record);
            sent += 1;
        }
        if !buf.is_empty() {
            self.write(socket, &buf);
            self.schedule.wrote(now - self.epoch);
        }
        sent
    }

    /// Does what is due: a tick, a heartbeat, the end.
    pub fn on_timer(
        &mut self,
        socket: &mut impl Write,
        config: &Config,
        clock: &dyn Clock,
        now: Instant,
    ) {
        if self.ended.is_some() {
            return;
        }
        if let Some((deadline, end)) = self.closing {
            if now >= deadline {
                self.ended = Some(end);
            }
            return;
        }
        let at = now - self.epoch;
        let mut buf = Vec::new();
        loop {
            match self.schedule.next(at) {
                Action::Wait(_) => break,
                Action::End => {
                    render_recycle(config, &mut buf);
                    self.write(socket, &buf);
                    return self.finish(End::Finished, now);
                }
                Action::Tick(seq) => render_tick(config, seq, clock, &mut buf),
                Action::Heartbeat if buf.is_empty() => render_heartbeat(&mut buf),
                Action::Heartbeat => {}
            }
            self.schedule.wrote(at);
        }
        if !buf.is_empty() {
            self.write(socket, &buf);
        }
    }

    /// When [`SseClient::on_timer`] is due next.
    pub fn next_timer(&self) -> Instant {
        if let Some((deadline, _)) = self.closing {
            return deadline;
        }
        self.epoch + self.schedule.due()
    }

    /// The client sent something or hung up. It has nothing to say after
    /// its request: a hang-up ends it at once, anything else is read and
    /// ignored (up to a bound).
    pub fn on_readable(&mut self, socket: &mut impl Read) {
        let mut buf = [0u8; 512];
        loop {
            match socket.read(&mut buf) {
                Ok(0) => return self.ended = Some(End::ClientClosed),
                Ok(n) => {
                    self.ignored += n;
                    if self.ignored > MAX_IGNORED {
                        return self.ended = Some(End::Refused(400));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return self.ended = Some(End::ClientClosed),
            }
        }
    }

    /// The socket became writable: send what is queued.
    pub fn on_writable(&mut self, socket: &mut impl Write) {
        if write_queued(socket, &mut self.out).is_err() {
            self.ended = Some(End::ClientClosed);
        } else if let Some((_, end)) = self.closing.filter(|_| self.out.is_empty()) {
            self.ended = Some(end);
        }
    }

    /// The server is stopping: send what is queued (whole events), then end.
    pub fn shutdown(&mut self, now: Instant) {
        if self.closing.is_none() && self.ended.is_none() {
            self.finish(End::Shutdown, now);
        }
    }

    fn finish(&mut self, end: End, now: Instant) {
        if self.out.is_empty() {
            self.ended = Some(end);
        } else {
            self.closing = Some((now + STOP_WAIT, end));
        }
    }

    fn write(&mut self, socket: &mut impl Write, bytes: &[u8]) {
        if queue_or_write(socket, &mut self.out, bytes).is_err() {
            self.out = Vec::new();
            self.ended = Some(End::ClientClosed);
        } else if self.out.len() > MAX_QUEUED {
            self.out = Vec::new();
            self.ended = Some(End::TooSlow);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::stream::testing::{config, secs, MockSocket as Sock};
    use std::time::SystemTime;

    fn sent(sock: &mut Sock) -> String {
        String::from_utf8(sock.take_output()).unwrap()
    }

    /// The same bytes as the CGI's blocking loop for the same schedule.
    #[test]
    fn ticks_heartbeats_and_the_end_match_the_blocking_loop() {
        let c = config(2.0, 1.5, Some(4.0));
        let clock = FakeClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000));
        let t0 = Instant::now();
        let mut sock = Sock::new();
        let mut client = SseClient::new(&c, &mut sock, b"head\n", None, t0);
        let mut now = t0;
        while client.ended().is_none() {
            let next = client.next_timer();
            assert!(next >= now, "timers move forward");
            clock.advance(next - now);
            now = next;
            client.on_timer(&mut sock, &c, &clock, now);
        }
        assert_eq!(client.ended(), Some(End::Finished));
        assert_eq!(now - t0, secs(4.0));
        assert_eq!(
            sent(&mut sock),
            "head\n\
             event: tick\ndata: {\"seq\":1,\"time\":1000000}\n\n\
             : heartbeat\n\n\
             event: tick\ndata: {\"seq\":2,\"time\":1002000}\n\n\
             : heartbeat\n\n\
             retry: 500\n\n"
        );
    }

    #[test]
    fn events_are_sent_once_and_postpone_the_heartbeat() {
        let c = config(0.0, 10.0, None);
        let t0 = Instant::now();
        let mut sock = Sock::new();
        let mut client = SseClient::new(&c, &mut sock, b"", Some(5), t0);
        let events: [(Option<u64>, &[u8]); 3] = [
            (Some(5), b"id: 5\ndata: old\n\n"),
            (Some(6), b"id: 6\ndata: new\n\n"),
            (None, b"id: \nevent: reset\ndata: {}\n\n"),
        ];
        client.send_events(&mut sock, &events, t0 + secs(4.0));
        client.send_events(&mut sock, &events[1..2], t0 + secs(4.0));
        assert_eq!(
            sent(&mut sock),
            "id: 6\ndata: new\n\nid: \nevent: reset\ndata: {}\n\n"
        );
        assert_eq!(client.next_timer(), t0 + secs(14.0));
    }

    #[test]
    fn a_client_that_stops_reading_is_queued_for_then_dropped() {
        let c = config(0.0, 10.0, None);
        let t0 = Instant::now();
        let mut sock = Sock::new();
        sock.room = 3;
        let mut client = SseClient::new(&c, &mut sock, b"12345", None, t0);
        assert_eq!(sent(&mut sock), "123");
        assert!(client.wants_write());
        client.send_events(&mut sock, &[(Some(1), b"67")], t0);
        sock.room = 100;
        client.on_writable(&mut sock);
        assert_eq!(sent(&mut sock), "4567", "in order");
        assert!(
            !client.wants_write() && client.out.capacity() == 0,
            "no buffer kept"
        );
        sock.room = 0;
        let big = vec![b'x'; 1 << 20];
        for id in 2..8 {
            client.send_events(&mut sock, &[(Some(id), &big)], t0);
        }
        assert_eq!(client.ended(), Some(End::TooSlow));
    }

    #[test]
    fn a_hang_up_ends_the_client_and_noise_is_bounded() {
        let c = Config::default();
        let t0 = Instant::now();
        let mut sock = Sock::new();
        let mut client = SseClient::new(&c, &mut sock, b"", None, t0);
        sock.input = vec![b'x'; 1000];
        client.on_readable(&mut sock);
        assert_eq!(client.ended(), None, "a little noise is ignored");
        sock.closed = true;
        client.on_readable(&mut sock);
        assert_eq!(client.ended(), Some(End::ClientClosed));
        let mut client = SseClient::new(&c, &mut Sock::new(), b"", None, t0);
        let mut noisy = Sock::new();
        noisy.input = vec![b'x'; MAX_IGNORED + 1];
        client.on_readable(&mut noisy);
        assert!(client.ended().is_some(), "endless noise is not");
    }

    #[test]
    fn shutdown_flushes_whole_events_then_ends() {
        let c = Config::default();
        let t0 = Instant::now();
        let mut sock = Sock::new();
        sock.room = 2;
        let mut client = SseClient::new(&c, &mut sock, b"id: 1\ndata: x\n\n", None, t0);
        client.shutdown(t0);
        assert_eq!(client.ended(), None, "waits for the queue");
        assert_eq!(client.next_timer(), t0 + STOP_WAIT);
        sock.room = 100;
        client.on_writable(&mut sock);
        assert_eq!(client.ended(), Some(End::Shutdown));
        assert_eq!(sent(&mut sock), "id: 1\ndata: x\n\n");
    }
}
