//! The listener's WebSocket sessions, all in one thread.
//!
//! After the handshake a connection thread hands its socket here and ends.
//! One `epoll` watches every session's socket and one wake-up socket; the
//! hub pokes that socket when a channel has news, and the reactor encodes
//! each new event's frame once and writes the same bytes to every session
//! of the channel. A session costs one descriptor and a few hundred bytes
//! while idle (no thread, no stack, no wake-up socket of its own, no
//! tungstenite buffers: see [`super::session`]), so 10,000 of them fit in
//! the usual descriptor limits and a broadcast is one loop of writes, not
//! thousands of thread wake-ups.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::session::{event_frame, End, Session, Settings};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::hub::{lock, Channel, Hub, Waker};
use crate::spool::tail::{Start, Tailer};
use crate::sys::{Epoll, Event};

/// Token of the wake-up socket; sessions are 1 and up.
const POKE: u64 = 0;
/// Stack of the reactor thread.
const STACK: usize = 256 * 1024;

/// A session on its way from a connection thread to the reactor.
#[derive(Debug)]
pub struct Joined {
    /// The upgraded connection (the 101 is sent).
    pub stream: TcpStream,
    /// For the log.
    pub peer: SocketAddr,
    /// The session's settings.
    pub settings: Settings,
    /// The channel it follows.
    pub channel: String,
    /// Where it started: the backlog read so far, and the reader that read
    /// it (polled once more after the reactor takes its place in the
    /// broadcast, so nothing published in between is missed).
    pub backlog: Vec<u8>,
    /// See `backlog`.
    pub reader: Tailer,
    /// The start it asked for (its last id, if it resumes).
    pub start: Start,
    /// Bytes the client sent right after its request head.
    pub early: Vec<u8>,
}

/// The handle connection threads use.
#[derive(Debug)]
pub struct Reactor {
    joins: Mutex<Sender<Joined>>,
    poke: UnixDatagram,
}

impl Reactor {
    /// Starts the reactor thread. `active` counts the server's open
    /// connections: a session counts until it ends here.
    pub fn start(
        hub: Arc<Hub>,
        config: Config,
        active: Arc<AtomicUsize>,
    ) -> io::Result<Arc<Reactor>> {
        let (poke, poked) = UnixDatagram::pair()?;
        poke.set_nonblocking(true)?;
        poked.set_nonblocking(true)?;
        let epoll = Epoll::new()?;
        epoll.add(&poked, POKE, false)?;
        let (tx, rx) = mpsc::channel();
        let waker = poke.try_clone()?;
        let mut state = State {
            hub,
            config,
            active,
            clock: SystemClock::new(),
            epoll,
            poked,
            waker,
            joins: rx,
            entries: Vec::new(),
            free: Vec::new(),
            channels: HashMap::new(),
            stopping: false,
        };
        thread::Builder::new()
            .name("websocket".into())
            .stack_size(STACK)
            .spawn(move || state.run())?;
        Ok(Arc::new(Reactor {
            joins: Mutex::new(tx),
            poke,
        }))
    }

    /// Hands a session over.
    pub fn join(&self, joined: Joined) {
        let _ = lock(&self.joins).send(joined);
        let _ = self.poke.send(b"+");
    }
}

/// One session and its connection.
struct Entry {
    stream: TcpStream,
    peer: SocketAddr,
    session: Session,
    channel: Arc<str>,
    /// Bytes read with the request head, fed before the socket's.
    early: Vec<u8>,
    /// EPOLLOUT is requested.
    writing: bool,
}

/// The reactor's place in one channel's broadcast.
struct Followed {
    shared: Arc<Channel>,
    key: u64,
    /// Index of the next chunk to deliver.
    next: u64,
    members: Vec<usize>,
}

struct State {
    hub: Arc<Hub>,
    config: Config,
    active: Arc<AtomicUsize>,
    clock: SystemClock,
    epoll: Epoll,
    poked: UnixDatagram,
    /// The sending side of the wake-up socket, given to the hub.
    waker: UnixDatagram,
    joins: Receiver<Joined>,
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    channels: HashMap<Arc<str>, Followed>,
    stopping: bool,
}

/// A session's socket with the early bytes in front.
struct Sock<'a> {
    stream: &'a TcpStream,
    early: &'a mut Vec<u8>,
}

impl Read for Sock<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.early.is_empty() {
            return (&mut &*self.stream).read(buf);
        }
        let n = buf.len().min(self.early.len());
        buf[..n].copy_from_slice(&self.early[..n]);
        self.early.drain(..n);
        if self.early.is_empty() {
            *self.early = Vec::new();
        }
        Ok(n)
    }
}

impl Write for Sock<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&mut &*self.stream).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Entry {
    fn sock(&mut self) -> (Sock<'_>, &mut Session) {
        (
            Sock {
                stream: &self.stream,
                early: &mut self.early,
            },
            &mut self.session,
        )
    }
}

impl State {
    fn run(&mut self) {
        let scan_every =
            (self.config.heartbeat / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut next_scan = Instant::now() + scan_every;
        let mut events = Vec::new();
        loop {
            let wait = next_scan.saturating_duration_since(Instant::now());
            events.clear();
            self.epoll.wait(&mut events, wait);
            for ev in &events {
                if ev.token == POKE {
                    self.poked();
                } else {
                    self.ready(ev);
                }
            }
            if !self.stopping && self.hub.stopping() {
                self.stop_all();
            }
            let now = Instant::now();
            if now >= next_scan {
                next_scan = now + scan_every;
                self.timers(now);
            }
        }
    }

    /// The wake-up socket: new sessions, channel news, or stopping.
    fn poked(&mut self) {
        while self.poked.recv(&mut [0u8; 64]).is_ok() {}
        while let Ok(joined) = self.joins.try_recv() {
            self.join(joined);
        }
        let names: Vec<Arc<str>> = self.channels.keys().cloned().collect();
        for name in names {
            self.deliver(&name);
        }
    }

    /// Takes a session in: a place in the broadcast first, then the rest
    /// of its backlog, then whatever it sent early.
    fn join(&mut self, mut joined: Joined) {
        let channel = match self.follow(&joined.channel) {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "nph-events serve: {} websocket: cannot follow the channel: {e}",
                    joined.peer
                );
                self.active.fetch_sub(1, Ordering::SeqCst);
                return;
            }
        };
        if let Err(e) = joined.reader.poll(&mut joined.backlog, false) {
            eprintln!(
                "nph-events serve: {} websocket: cannot read the spool: {e}",
                joined.peer
            );
        }
        drop(joined.reader);
        let _ = joined.stream.set_nonblocking(true);
        let mut session = Session::new(joined.settings, Instant::now());
        if let Start::After(id) = joined.start {
            session.last_id = Some(id);
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.entries.push(None);
            self.entries.len() - 1
        });
        if let Err(e) = self.epoll.add(&joined.stream, slot as u64 + 1, false) {
            eprintln!("nph-events serve: {} websocket: {e}", joined.peer);
            self.free.push(slot);
            self.active.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let mut entry = Entry {
            stream: joined.stream,
            peer: joined.peer,
            session,
            channel: Arc::clone(&channel),
            early: joined.early,
            writing: false,
        };
        {
            let (mut sock, session) = entry.sock();
            for record in crate::spool::records(&joined.backlog) {
                if let Some(frame) = event_frame(record) {
                    session.send_event(&mut sock, crate::spool::record_id(record), &frame);
                }
            }
        }
        if let Some(f) = self.channels.get_mut(&channel) {
            f.members.push(slot);
        }
        self.entries[slot] = Some(entry);
        if self.stopping {
            self.with(slot, |sock, session, now| session.shutdown(sock, now));
        }
        let early = self.entries[slot]
            .as_ref()
            .is_some_and(|e| !e.early.is_empty());
        if early {
            self.ready(&Event {
                token: slot as u64 + 1,
                readable: true,
                writable: false,
            });
        }
        self.settle(slot);
    }

    /// The reactor's place in a channel's broadcast, taken on first use:
    /// registered for wake-ups before reading the position, so no publish
    /// falls between.
    fn follow(&mut self, name: &str) -> io::Result<Arc<str>> {
        if let Some((key, _)) = self.channels.get_key_value(name) {
            return Ok(Arc::clone(key));
        }
        let shared = self.hub.channel(name)?;
        let key = shared.register(Waker::Socket(self.waker.try_clone()?));
        let next = shared.log.read().unwrap_or_else(|e| e.into_inner()).next();
        let name: Arc<str> = Arc::from(name);
        self.channels.insert(
            Arc::clone(&name),
            Followed {
                shared,
                key,
                next,
                members: Vec::new(),
            },
        );
        Ok(name)
    }

    /// Sends a channel's new events to its sessions: each frame encoded
    /// once, the same bytes written to every session.
    fn deliver(&mut self, name: &Arc<str>) {
        let Some(f) = self.channels.get_mut(name) else {
            return;
        };
        if f.shared.seq.load(Ordering::SeqCst) == f.next {
            return;
        }
        let mut frames = Vec::new();
        {
            let log = f.shared.log.read().unwrap_or_else(|e| e.into_inner());
            let skip = f.next.saturating_sub(log.first) as usize;
            for chunk in log.chunks.iter().skip(skip) {
                for record in crate::spool::records(chunk) {
                    if let Some(frame) = event_frame(record) {
                        frames.push((crate::spool::record_id(record), frame));
                    }
                }
            }
            f.next = log.next();
        }
        let members = f.members.clone();
        for slot in members {
            let Some(entry) = self.entries[slot].as_mut() else {
                continue;
            };
            let (mut sock, session) = entry.sock();
            for (id, frame) in &frames {
                session.send_event(&mut sock, *id, frame);
            }
            self.settle(slot);
        }
    }

    /// A session's socket is ready.
    fn ready(&mut self, ev: &Event) {
        let slot = (ev.token - 1) as usize;
        let Some(entry) = self.entries.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let (config, clock) = (&self.config, &self.clock);
        let channel = Arc::clone(&entry.channel);
        let now = Instant::now();
        let (mut sock, session) = entry.sock();
        if ev.writable {
            session.on_writable(&mut sock);
        }
        if ev.readable {
            let mut publish = |text: &str| super::publish(config, &channel, text, clock);
            session.on_readable(&mut sock, &mut publish, now);
        }
        self.settle(slot);
    }

    /// Runs `f` on one session with its socket.
    fn with(&mut self, slot: usize, f: impl FnOnce(&mut Sock<'_>, &mut Session, Instant)) {
        if let Some(entry) = self.entries[slot].as_mut() {
            let (mut sock, session) = entry.sock();
            f(&mut sock, session, Instant::now());
        }
    }

    /// Every session's timers (pings, dead peers, close waits).
    fn timers(&mut self, now: Instant) {
        for slot in 0..self.entries.len() {
            let due = self.entries[slot]
                .as_ref()
                .is_some_and(|e| e.session.next_timer() <= now);
            if due {
                self.with(slot, |sock, session, now| session.on_timer(sock, now));
                self.settle(slot);
            }
        }
    }

    /// The server is stopping: every session closes with 1001.
    fn stop_all(&mut self) {
        self.stopping = true;
        for slot in 0..self.entries.len() {
            self.with(slot, |sock, session, now| session.shutdown(sock, now));
            self.settle(slot);
        }
    }

    /// After any change: ask for writability while output is queued, and
    /// remove a session that ended.
    fn settle(&mut self, slot: usize) {
        let Some(entry) = self.entries[slot].as_mut() else {
            return;
        };
        if let Some(end) = entry.session.ended() {
            self.remove(slot, end);
            return;
        }
        let wants = entry.session.wants_write();
        if wants != entry.writing {
            entry.writing = wants;
            let _ = self.epoll.modify(&entry.stream, slot as u64 + 1, wants);
        }
    }

    fn remove(&mut self, slot: usize, end: End) {
        let Some(mut entry) = self.entries[slot].take() else {
            return;
        };
        {
            // A last try for a queued close frame.
            let (mut sock, session) = entry.sock();
            session.on_writable(&mut sock);
        }
        self.epoll.remove(&entry.stream);
        if let Some(f) = self.channels.get_mut(&entry.channel) {
            if let Some(at) = f.members.iter().position(|&s| s == slot) {
                f.members.swap_remove(at);
            }
            if f.members.is_empty() {
                lock(&f.shared.streams).remove(&f.key);
                self.channels.remove(&entry.channel);
            }
        }
        self.free.push(slot);
        self.active.fetch_sub(1, Ordering::SeqCst);
        eprintln!(
            "nph-events serve: {} websocket ended: {}",
            entry.peer,
            end.describe()
        );
    }
}
