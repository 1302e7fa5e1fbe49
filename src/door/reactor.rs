//! Every listener stream, SSE and WebSocket, on one reactor thread per
//! core.
//!
//! After the request head, a connection thread hands its socket here and
//! ends. One `epoll` watches every client's socket, one wake-up socket per
//! channel in use, and the socket connection threads poke. A client costs
//! one descriptor and a few hundred bytes while idle: no thread, no stack,
//! no buffer. A departed client is seen when it hangs up (`EPOLLRDHUP`),
//! and its descriptor and connection slot are freed at once.
//!
//! Each reactor thread follows each channel its clients use once, the
//! same way a CGI follows it: a [`Subscription`] (a spool reader and a
//! wake-up socket publishers write to). On a publish the new records are
//! read once per thread and the same bytes go to every SSE client, the same
//! frame (encoded once) to every WebSocket client. A channel read that finds events gone (the reactor fell further
//! behind than the channel's retention) yields the spool reader's `reset`
//! (`gap`) event, which every client gets, as a CGI's client would: nothing
//! is skipped without a word.
//!
//! Fair and bounded: a client gets one turn per wake-up with a bounded
//! amount of reading (a WebSocket session reads at most a few dozen
//! messages; one with more input waiting gets its next turn after every
//! other ready client), a client whose output is not draining is not read,
//! and the output queued for slow clients, all of them together, stays
//! within `queue_budget`: a client holding queued output when it is spent
//! is dropped, and reconnects and resumes from its last id.
//!
//! What happens here is counted in the server's [`Metrics`]: streams
//! started and ended (and why), events and resets delivered (added once
//! per channel batch), bytes written (one relaxed add per socket write),
//! channels followed, the output budget's account.

use std::cell::OnceCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::metrics::{Metrics, Proto, Via};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::message::Message;
use crate::spool::tail::{Start, Tailer};
use crate::spool::{self, Spool};
use crate::stream::sse_client::SseClient;
use crate::stream::subscription::Subscription;
use crate::stream::{self, End, Source};
use crate::sys::{Epoll, Event};
use crate::ws::event_frame;
use crate::ws::session::{Session, Settings};

/// Token of the poke socket.
const POKE: u64 = 0;
/// Tokens of channels have this bit; clients are 1 + their slot.
const CHANNEL: u64 = 1 << 62;
/// Stack of a reactor thread.
const STACK: usize = 256 * 1024;
/// Kernel send buffer of a client's socket (the kernel doubles it): ample
/// for events to a reader that keeps up, and a client that stops reading
/// holds this much kernel memory, not the 4 MiB Linux would grow it to.
const SEND_BUFFER: usize = 64 * 1024;
/// Longest sleep: the stop flag is checked at least this often.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// A client on its way from a connection thread to the reactor.
#[derive(Debug)]
pub struct Joined {
    /// The connection (blocking; the reactor makes it non-blocking).
    pub stream: TcpStream,
    /// For the log.
    pub peer: SocketAddr,
    /// The channel it follows.
    pub channel: String,
    /// Where it started (its last id, if it resumes).
    pub start: Start,
    /// What its own spool reader read so far (a `reset` included).
    pub backlog: Vec<u8>,
    /// That reader: read once more once the reactor follows the channel,
    /// so nothing published in between is missed.
    pub reader: Tailer,
    /// SSE or WebSocket.
    pub kind: Kind,
}

/// What kind of client joins.
#[derive(Debug)]
pub enum Kind {
    /// An event stream; the head and opening lines go first.
    Sse {
        /// The head and the opening lines.
        opening: Vec<u8>,
    },
    /// A WebSocket session (its 101 is sent).
    Ws {
        /// Its settings.
        settings: Settings,
        /// Bytes the client sent right after its request head.
        early: Vec<u8>,
    },
}

/// The handle connection threads and the accept loop use: one or more
/// reactor threads, each with its own clients and its own follower of each
/// channel its clients use. More than one spreads a broadcast's writes
/// (most of their cost is the kernel's) over the cores.
#[derive(Debug)]
pub struct Reactor {
    threads: Vec<Handle>,
    next: AtomicUsize,
    stopping: Arc<AtomicBool>,
}

/// One reactor thread's mailbox.
#[derive(Debug)]
struct Handle {
    joins: Mutex<Sender<Joined>>,
    poke: UnixDatagram,
}

impl Reactor {
    /// Starts `threads` reactor threads (at least one). `active` counts
    /// the server's open connections: a client counts until it ends here.
    /// `metrics` gets the streams' numbers (and holds the output budget's
    /// account).
    pub fn start(
        config: &Config,
        spool: &Spool,
        active: &Arc<AtomicUsize>,
        threads: usize,
        metrics: &Arc<Metrics>,
    ) -> io::Result<Reactor> {
        let stopping = Arc::new(AtomicBool::new(false));
        let threads = (0..threads.max(1))
            .map(|i| {
                spawn(
                    i,
                    config.clone(),
                    spool.clone(),
                    Arc::clone(active),
                    &stopping,
                    metrics,
                )
            })
            .collect::<io::Result<Vec<Handle>>>()?;
        Ok(Reactor {
            threads,
            next: AtomicUsize::new(0),
            stopping,
        })
    }

    /// Hands a client over (to the threads in turn).
    pub fn join(&self, joined: Joined) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.threads.len();
        let handle = &self.threads[i];
        let _ = lock(&handle.joins).send(joined);
        let _ = handle.poke.send(b"+");
    }

    /// Ends every stream: SSE clients get what is queued, WebSocket
    /// clients a close with 1001.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for handle in &self.threads {
            let _ = handle.poke.send(b"x");
        }
    }

    /// Whether the server is stopping.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// Starts reactor thread `index`.
fn spawn(
    index: usize,
    config: Config,
    spool: Spool,
    active: Arc<AtomicUsize>,
    stopping: &Arc<AtomicBool>,
    metrics: &Arc<Metrics>,
) -> io::Result<Handle> {
    let (poke, poked) = UnixDatagram::pair()?;
    poke.set_nonblocking(true)?;
    poked.set_nonblocking(true)?;
    let epoll = Epoll::new()?;
    epoll.add(&poked, POKE, false)?;
    let (tx, rx) = mpsc::channel();
    let full_check_every = config.heartbeat.max(Duration::from_secs(1));
    let mut state = State {
        config,
        spool,
        active,
        clock: SystemClock::new(),
        epoll,
        poked,
        joins: rx,
        clients: Vec::new(),
        free: Vec::new(),
        channels: Vec::new(),
        by_name: HashMap::new(),
        timers: BinaryHeap::new(),
        stop: Arc::clone(stopping),
        stopping: false,
        full_check_every,
        next_full_check: Instant::now() + full_check_every,
        again: Vec::new(),
        metrics: Arc::clone(metrics),
        index,
        round: 0,
    };
    thread::Builder::new()
        .name(format!("reactor-{index}"))
        .stack_size(STACK)
        .spawn(move || state.run())?;
    Ok(Handle {
        joins: Mutex::new(tx),
        poke,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One client: its connection and its protocol's state.
struct Entry {
    stream: TcpStream,
    peer: SocketAddr,
    /// Index of the channel it follows.
    channel: usize,
    client: Client,
    /// EPOLLIN is requested (not while its output is not draining).
    reading: bool,
    /// EPOLLOUT is requested.
    writing: bool,
    /// Bytes queued for it, as counted in the server's budget.
    queued: usize,
    /// The last round of the event loop it had a turn in.
    round: u64,
    /// The earliest timer of this client in the heap.
    timer: Option<Instant>,
}

enum Client {
    Sse(SseClient),
    Ws {
        /// Boxed: an SSE client, the common case, then costs its own size,
        /// not a WebSocket session's.
        session: Box<Session>,
        /// Bytes read with the request head, fed before the socket's.
        early: Vec<u8>,
    },
}

/// A channel in use: followed once for all its clients.
struct Followed {
    name: Arc<str>,
    subscription: Subscription,
    members: Vec<usize>,
}

/// New events of a channel, for every client: SSE clients get the records
/// as they are, WebSocket clients a frame encoded once per event.
struct Batch<'a> {
    records: Vec<(Option<u64>, &'a [u8])>,
    frames: OnceCell<Vec<(Option<u64>, Vec<u8>)>>,
}

impl<'a> Batch<'a> {
    fn new(bytes: &'a [u8]) -> Batch<'a> {
        Batch {
            records: spool::records(bytes)
                .map(|r| (spool::record_id(r), r))
                .collect(),
            frames: OnceCell::new(),
        }
    }

    /// Events in it (records with an id, and `reset` events).
    fn events(&self) -> u64 {
        let event = |(id, r): &&(Option<u64>, &[u8])| id.is_some() || crate::sse::is_reset(r);
        self.records.iter().filter(event).count() as u64
    }

    /// `reset` events in it.
    fn resets(&self) -> u64 {
        let reset = |(_, r): &&(Option<u64>, &[u8])| crate::sse::is_reset(r);
        self.records.iter().filter(reset).count() as u64
    }

    fn frames(&self) -> &[(Option<u64>, Vec<u8>)] {
        self.frames.get_or_init(|| {
            self.records
                .iter()
                .filter_map(|(id, r)| Some((*id, event_frame(r)?)))
                .collect()
        })
    }
}

/// Where a newcomer's stream continues after its backlog: the id of the
/// last event in it, or, after a `reset` event, the id the reset names
/// (none for an empty channel), or else the id it resumed after. Events at
/// or below it are not sent again; a client that resumed with an id the
/// channel never reached (another site's, a forged one) gets the reset and
/// then every new event, as the CGI's client does.
fn resume_point(start: Start, backlog: &[u8]) -> Option<u64> {
    let mut last = match start {
        Start::After(n) => Some(n),
        Start::Now => None,
    };
    for record in spool::records(backlog) {
        if crate::sse::is_reset(record) {
            last = spool::record_id(record);
        } else if let Some(id) = spool::record_id(record) {
            last = Some(id);
        }
    }
    last
}

/// A client's socket with the early bytes in front; what is written to
/// it is counted in `bytes`.
struct Sock<'a> {
    stream: &'a TcpStream,
    early: &'a mut Vec<u8>,
    bytes: &'a AtomicU64,
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
        let n = (&mut &*self.stream).write(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Entry {
    fn next_timer(&self) -> Instant {
        match &self.client {
            Client::Sse(c) => c.next_timer(),
            Client::Ws { session, .. } => session.next_timer(),
        }
    }

    fn ended(&self) -> Option<End> {
        match &self.client {
            Client::Sse(c) => c.ended(),
            Client::Ws { session, .. } => session.ended(),
        }
    }

    fn wants_write(&self) -> bool {
        match &self.client {
            Client::Sse(c) => c.wants_write(),
            Client::Ws { session, .. } => session.wants_write(),
        }
    }

    fn wants_read(&self) -> bool {
        match &self.client {
            Client::Sse(_) => true,
            Client::Ws { session, .. } => session.wants_read(),
        }
    }

    /// Input is left after a turn that spent its budget.
    fn has_more(&self) -> bool {
        match &self.client {
            Client::Sse(_) => false,
            Client::Ws { session, .. } => session.has_more(),
        }
    }

    fn queued(&self) -> usize {
        match &self.client {
            Client::Sse(c) => c.queued(),
            Client::Ws { session, .. } => session.queued(),
        }
    }

    /// Drops its output and ends it.
    fn abandon(&mut self, end: End) {
        match &mut self.client {
            Client::Sse(c) => c.abandon(end),
            Client::Ws { session, .. } => session.abandon(end),
        }
    }

    fn kind(&self) -> &'static str {
        match self.client {
            Client::Sse(_) => "stream",
            Client::Ws { .. } => "websocket",
        }
    }

    fn proto(&self) -> Proto {
        match self.client {
            Client::Sse(_) => Proto::Sse,
            Client::Ws { .. } => Proto::Ws,
        }
    }

    /// Sends a batch; returns how many of its events went out (or were
    /// queued) to this client.
    fn deliver(&mut self, batch: &Batch<'_>, now: Instant, bytes: &AtomicU64) -> u64 {
        let mut no_early = Vec::new();
        let mut sock = Sock {
            stream: &self.stream,
            early: &mut no_early,
            bytes,
        };
        match &mut self.client {
            Client::Sse(c) => c.send_events(&mut sock, &batch.records, now) as u64,
            Client::Ws { session, .. } if session.takes_events() => {
                let mut sent = 0;
                for (id, frame) in batch.frames() {
                    sent += u64::from(session.send_event(&mut sock, *id, frame));
                }
                sent
            }
            Client::Ws { .. } => 0,
        }
    }

    fn on_ready(&mut self, ev: &Event, ctx: &Ctx<'_>, channel: &str, now: Instant) {
        let bytes = ctx.metrics.bytes(self.proto());
        match &mut self.client {
            Client::Sse(c) => {
                let mut sock = Sock {
                    stream: &self.stream,
                    early: &mut Vec::new(),
                    bytes,
                };
                if ev.writable {
                    c.on_writable(&mut sock);
                }
                if ev.readable {
                    c.on_readable(&mut sock);
                }
            }
            Client::Ws { session, early } => {
                let mut sock = Sock {
                    stream: &self.stream,
                    early,
                    bytes,
                };
                if ev.writable {
                    session.on_writable(&mut sock);
                }
                if ev.readable {
                    let who = session.publisher();
                    let mut relay = |text: &str| {
                        let m = Message {
                            event: None,
                            data: text.to_owned(),
                            sender: None,
                        };
                        let result =
                            stream::publish_from_client(ctx.config, channel, &m, who, ctx.clock);
                        match &result {
                            Ok(_) => ctx.metrics.published(Via::Ws),
                            Err(e) if stream::rate::is_rate_limited(e) => {
                                ctx.metrics.publish_rate_refused()
                            }
                            Err(_) => ctx.metrics.publish_failed(),
                        }
                        result
                    };
                    session.on_readable(&mut sock, &mut relay, now);
                }
            }
        }
    }

    fn on_timer(&mut self, ctx: &Ctx<'_>, now: Instant) {
        let bytes = ctx.metrics.bytes(self.proto());
        match &mut self.client {
            Client::Sse(c) => {
                let mut sock = Sock {
                    stream: &self.stream,
                    early: &mut Vec::new(),
                    bytes,
                };
                c.on_timer(&mut sock, ctx.config, ctx.clock, now)
            }
            Client::Ws { session, early } => {
                let mut sock = Sock {
                    stream: &self.stream,
                    early,
                    bytes,
                };
                session.on_timer(&mut sock, now);
            }
        }
    }

    fn shutdown(&mut self, now: Instant, bytes: &AtomicU64) {
        match &mut self.client {
            Client::Sse(c) => c.shutdown(now),
            Client::Ws { session, early } => {
                let mut sock = Sock {
                    stream: &self.stream,
                    early,
                    bytes,
                };
                session.shutdown(&mut sock, now);
            }
        }
    }
}

/// What a client's handlers need from its thread.
struct Ctx<'a> {
    config: &'a Config,
    clock: &'a SystemClock,
    metrics: &'a Metrics,
}

struct State {
    config: Config,
    spool: Spool,
    active: Arc<AtomicUsize>,
    clock: SystemClock,
    epoll: Epoll,
    poked: UnixDatagram,
    joins: Receiver<Joined>,
    clients: Vec<Option<Entry>>,
    free: Vec<usize>,
    channels: Vec<Option<Followed>>,
    by_name: HashMap<Arc<str>, usize>,
    /// `(when, slot)`; an entry counts only while it is its client's
    /// `timer` (later changes leave stale entries, skipped when popped).
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    stop: Arc<AtomicBool>,
    stopping: bool,
    /// How often every channel is read with the slow checks (gaps), as a
    /// CGI stream does at its heartbeat.
    full_check_every: Duration,
    next_full_check: Instant,
    /// Clients to read again after this round (their turn ended with
    /// input left, or their output drained and reading resumes).
    again: Vec<usize>,
    /// The server's numbers; its `queued` is the bytes queued for slow
    /// clients on every reactor thread (the output budget's account).
    metrics: Arc<Metrics>,
    /// This thread's number.
    index: usize,
    /// Rounds of the event loop: a client gets one turn per round.
    round: u64,
}

impl State {
    fn run(&mut self) {
        let mut events = Vec::new();
        loop {
            self.round += 1;
            self.metrics.beat(self.index);
            let now = Instant::now();
            let mut wake = (now + MAX_SLEEP).min(self.next_full_check);
            if let Some(Reverse((at, _))) = self.timers.peek() {
                wake = wake.min(*at);
            }
            if !self.again.is_empty() {
                wake = now;
            }
            events.clear();
            self.epoll
                .wait(&mut events, wake.saturating_duration_since(now));
            for ev in &events {
                match ev.token {
                    POKE => self.poked(),
                    t if t & CHANNEL != 0 => self.channel_ready((t & !CHANNEL) as usize, false),
                    t => self.ready((t - 1) as usize, ev),
                }
            }
            self.read_again();
            if !self.stopping && self.stop.load(Ordering::SeqCst) {
                self.stop_all();
            }
            let now = Instant::now();
            self.timers_due(now);
            if now >= self.next_full_check {
                self.next_full_check = now + self.full_check_every;
                for index in 0..self.channels.len() {
                    self.channel_ready(index, true);
                }
            }
        }
    }

    /// The poke socket: new clients, or stopping.
    fn poked(&mut self) {
        while self.poked.recv(&mut [0u8; 64]).is_ok() {}
        while let Ok(joined) = self.joins.try_recv() {
            self.join(joined);
        }
    }

    /// Takes a client in: the channel followed and brought up to date for
    /// the clients already there, then the rest of the newcomer's backlog
    /// (events in both are sent once, by id), then whatever it sent early.
    fn join(&mut self, mut joined: Joined) {
        let channel = match self.follow(&joined.channel) {
            Ok(index) => index,
            Err(e) => {
                eprintln!(
                    "nph-events serve: {} cannot follow the channel: {e}",
                    joined.peer
                );
                self.active.fetch_sub(1, Ordering::SeqCst);
                return;
            }
        };
        self.channel_ready(channel, false);
        let position = joined.reader.last_id();
        if let Err(e) = joined.reader.poll(&mut joined.backlog, false) {
            eprintln!(
                "nph-events serve: {} cannot read the spool: {e}",
                joined.peer
            );
        }
        drop(joined.reader);
        let now = Instant::now();
        let last_id = resume_point(joined.start, &joined.backlog);
        let _ = joined.stream.set_nonblocking(true);
        let _ = crate::sys::cap_send_buffer(&joined.stream, SEND_BUFFER);
        let batch = Batch::new(&joined.backlog);
        let (proto, mut sent) = match joined.kind {
            Kind::Sse { .. } => (Proto::Sse, batch.events()),
            Kind::Ws { .. } => (Proto::Ws, 0),
        };
        let mut stream = Sock {
            stream: &joined.stream,
            early: &mut Vec::new(),
            bytes: self.metrics.bytes(proto),
        };
        let client = match joined.kind {
            Kind::Sse { mut opening } => {
                stream::starting_position(joined.start, position, &mut opening);
                opening.extend_from_slice(&joined.backlog);
                Client::Sse(SseClient::new(
                    &self.config,
                    &mut stream,
                    &opening,
                    last_id,
                    now,
                ))
            }
            Kind::Ws { settings, early } => {
                let mut session = Session::new(settings, now);
                for (id, frame) in batch.frames() {
                    sent += u64::from(session.send_event(&mut stream, *id, frame));
                }
                session.last_id = last_id;
                Client::Ws {
                    session: Box::new(session),
                    early,
                }
            }
        };
        let resets = if sent > 0 { batch.resets() } else { 0 };
        self.metrics.delivered(proto, sent, resets);
        drop(batch);
        let slot = self.free.pop().unwrap_or_else(|| {
            self.clients.push(None);
            self.clients.len() - 1
        });
        if let Err(e) = self.epoll.add(&joined.stream, slot as u64 + 1, false) {
            eprintln!("nph-events serve: {} {e}", joined.peer);
            self.free.push(slot);
            self.active.fetch_sub(1, Ordering::SeqCst);
            self.unfollow_if_unused(channel);
            return;
        }
        let early = matches!(&client, Client::Ws { early, .. } if !early.is_empty());
        self.metrics.stream_started(proto);
        self.clients[slot] = Some(Entry {
            stream: joined.stream,
            peer: joined.peer,
            channel,
            client,
            reading: true,
            writing: false,
            queued: 0,
            round: 0,
            timer: None,
        });
        if let Some(f) = self.channels[channel].as_mut() {
            f.members.push(slot);
        }
        if self.stopping {
            let bytes = self.metrics.bytes(proto);
            if let Some(entry) = self.clients[slot].as_mut() {
                entry.shutdown(Instant::now(), bytes);
            }
        }
        if early {
            let ev = Event {
                token: slot as u64 + 1,
                readable: true,
                writable: false,
            };
            self.ready(slot, &ev);
        }
        self.settle(slot);
    }

    /// The channel's index, following it from now on first use: its
    /// wake-up socket is bound before its log is read, so no publish
    /// falls between.
    fn follow(&mut self, name: &str) -> io::Result<usize> {
        if let Some(&index) = self.by_name.get(name) {
            return Ok(index);
        }
        let mut ignored = Vec::new();
        let subscription = Subscription::open(&self.spool, name, Start::Now, &mut ignored)?;
        let index = match self.channels.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.channels.push(None);
                self.channels.len() - 1
            }
        };
        self.epoll
            .add(subscription.wake_socket(), CHANNEL | index as u64, false)?;
        let name: Arc<str> = Arc::from(name);
        self.by_name.insert(Arc::clone(&name), index);
        self.metrics.following(true);
        self.channels[index] = Some(Followed {
            name,
            subscription,
            members: Vec::new(),
        });
        Ok(index)
    }

    fn unfollow_if_unused(&mut self, index: usize) {
        if self.channels[index]
            .as_ref()
            .is_some_and(|f| f.members.is_empty())
        {
            if let Some(f) = self.channels[index].take() {
                self.epoll.remove(f.subscription.wake_socket());
                self.by_name.remove(&f.name);
                self.metrics.following(false);
            }
        }
    }

    /// A channel has news (or it is time for the slow checks): read it
    /// once, send it to every member.
    fn channel_ready(&mut self, index: usize, full_check: bool) {
        let Some(f) = self.channels.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        if !full_check {
            f.subscription.woken();
        }
        let mut bytes = Vec::new();
        if let Err(e) = f.subscription.poll(&mut bytes, full_check) {
            eprintln!("nph-events serve: cannot read channel {}: {e}", f.name);
            return;
        }
        if bytes.is_empty() {
            return;
        }
        let batch = Batch::new(&bytes);
        let members = f.members.clone();
        let now = Instant::now();
        // Counted here and added once per batch: (events, resets) per
        // protocol.
        let resets = batch.resets();
        let mut counts = [(0, 0); 2];
        for slot in members {
            if let Some(entry) = self.clients[slot].as_mut() {
                let proto = entry.proto();
                let sent = entry.deliver(&batch, now, self.metrics.bytes(proto));
                let c = &mut counts[proto as usize];
                c.0 += sent;
                // Every member gets the batch's resets with its events.
                c.1 += if sent > 0 { resets } else { 0 };
            }
            self.settle(slot);
        }
        for (proto, (events, resets)) in [(Proto::Sse, counts[0]), (Proto::Ws, counts[1])] {
            self.metrics.delivered(proto, events, resets);
        }
    }

    /// A client's socket is ready.
    fn ready(&mut self, slot: usize, ev: &Event) {
        let Some(entry) = self.clients.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if ev.readable && !entry.reading && !entry.wants_read() {
            // Not watched for input: a hang-up or an error. Whatever it
            // still had to read waits behind output it does not take.
            let mut ev = *ev;
            ev.readable = false;
            let ctx = Ctx {
                config: &self.config,
                clock: &self.clock,
                metrics: &self.metrics,
            };
            entry.on_ready(&ev, &ctx, "", Instant::now());
            if entry.ended().is_none() && !entry.wants_read() {
                entry.abandon(End::ClientClosed);
            }
            self.settle(slot);
            return;
        }
        entry.round = self.round;
        let name = self.channels[entry.channel]
            .as_ref()
            .map(|f| Arc::clone(&f.name))
            .unwrap_or_else(|| Arc::from(""));
        let ctx = Ctx {
            config: &self.config,
            clock: &self.clock,
            metrics: &self.metrics,
        };
        entry.on_ready(ev, &ctx, &name, Instant::now());
        self.settle(slot);
    }

    /// Gives the clients whose turn ended with input left (or whose
    /// reading resumed) their next turn, after everyone else's.
    fn read_again(&mut self) {
        let ev = |slot: usize| Event {
            token: slot as u64 + 1,
            readable: true,
            writable: false,
        };
        let round = self.round;
        let mut next_round = Vec::new();
        for slot in std::mem::take(&mut self.again) {
            match &self.clients[slot] {
                Some(e) if e.wants_read() && e.round == round => next_round.push(slot),
                Some(e) if e.wants_read() => self.ready(slot, &ev(slot)),
                _ => {}
            }
        }
        // Had their turn this round already: the next round.
        self.again.extend(next_round);
    }

    /// Every timer that is due.
    fn timers_due(&mut self, now: Instant) {
        while let Some(Reverse((at, slot))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(entry) = self.clients[slot].as_mut() else {
                continue;
            };
            if entry.timer != Some(at) {
                continue; // stale: the client's timer was armed anew
            }
            entry.timer = None;
            let ctx = Ctx {
                config: &self.config,
                clock: &self.clock,
                metrics: &self.metrics,
            };
            entry.on_timer(&ctx, now);
            self.settle(slot);
        }
    }

    /// The server is stopping: every client ends.
    fn stop_all(&mut self) {
        self.stopping = true;
        for slot in 0..self.clients.len() {
            if let Some(entry) = self.clients[slot].as_mut() {
                entry.shutdown(Instant::now(), self.metrics.bytes(entry.proto()));
            }
            self.settle(slot);
        }
    }

    /// After any change: remove a client that ended, ask for writability
    /// while output is queued, arm its next timer.
    fn settle(&mut self, slot: usize) {
        let Some(entry) = self.clients[slot].as_mut() else {
            return;
        };
        if let Some(end) = entry.ended() {
            self.remove(slot, end);
            return;
        }
        if !self.account(slot) {
            return;
        }
        let Some(entry) = self.clients[slot].as_mut() else {
            return;
        };
        let (read, write) = (entry.wants_read(), entry.wants_write());
        if (read, write) != (entry.reading, entry.writing) {
            if read && !entry.reading {
                // tungstenite may hold whole messages it read before.
                self.again.push(slot);
            }
            (entry.reading, entry.writing) = (read, write);
            let _ = self
                .epoll
                .modify(&entry.stream, slot as u64 + 1, read, write);
        }
        if entry.has_more() {
            self.again.push(slot);
        }
        let next = entry.next_timer();
        if entry.timer.is_none_or(|armed| next < armed) {
            entry.timer = Some(next);
            self.timers.push(Reverse((next, slot)));
        }
    }

    /// Counts a client's queued output in the server's budget; a client
    /// that holds some when the budget is spent is dropped. Returns whether
    /// it is still there.
    fn account(&mut self, slot: usize) -> bool {
        let Some(entry) = self.clients[slot].as_mut() else {
            return false;
        };
        let now = entry.queued();
        let queued = &self.metrics.queued;
        let total = if now >= entry.queued {
            queued.fetch_add(now - entry.queued, Ordering::SeqCst) + (now - entry.queued)
        } else {
            queued.fetch_sub(entry.queued - now, Ordering::SeqCst) - (entry.queued - now)
        };
        entry.queued = now;
        if now == 0 || total <= self.config.queue_budget {
            return true;
        }
        entry.abandon(End::TooSlow);
        eprintln!(
            "nph-events serve: {} dropped: output queued for slow clients reached queue_budget ({} bytes)",
            entry.peer, self.config.queue_budget
        );
        self.settle(slot);
        false
    }

    fn remove(&mut self, slot: usize, end: End) {
        let Some(mut entry) = self.clients[slot].take() else {
            return;
        };
        self.metrics
            .queued
            .fetch_sub(entry.queued, Ordering::SeqCst);
        let proto = entry.proto();
        if let Client::Ws { session, early } = &mut entry.client {
            // A last try for a queued close frame.
            let mut sock = Sock {
                stream: &entry.stream,
                early,
                bytes: self.metrics.bytes(proto),
            };
            session.on_writable(&mut sock);
        }
        self.epoll.remove(&entry.stream);
        if let Some(f) = self.channels[entry.channel].as_mut() {
            if let Some(at) = f.members.iter().position(|&s| s == slot) {
                f.members.swap_remove(at);
            }
        }
        self.unfollow_if_unused(entry.channel);
        self.free.push(slot);
        self.metrics.stream_ended(proto, end);
        self.active.fetch_sub(1, Ordering::SeqCst);
        eprintln!(
            "nph-events serve: {} {} ended: {}",
            entry.peer,
            entry.kind(),
            end.describe()
        );
    }
}
