//! The listener's one spool watcher per process, and the broadcast it
//! feeds: a thread that holds one wake-up socket and one spool reader per
//! channel in use. On a publish it reads the new records once, appends them
//! to the channel's shared chunk log and wakes the channel's readers (SSE
//! stream threads, and the WebSocket reactor), which copy from there.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::app::{self, Subscriber};
use crate::clock::{Waiter, Wake};
use crate::pump::Source;
use crate::spool::tail::{Start, Tailer};
use crate::spool::wake::WakeSocket;
use crate::spool::Spool;

/// Stack of the watcher thread.
const STACK: usize = 128 * 1024;

/// A channel in use by at least one stream of this process.
///
/// Streams sleep with `thread::park_timeout`, and a publish unparks each of
/// them: one futex wake per thread, no shared lock to fight over. (With a
/// condition variable, a publish woke every stream at once only for them to
/// queue on its mutex one by one: p99 35 ms at 1,000 clients.)
#[derive(Debug, Default)]
pub(crate) struct Channel {
    /// Index of the next chunk the watcher will add (bumped per chunk).
    pub(crate) seq: AtomicU64,
    /// Who streams this channel, by a per-stream key.
    pub(crate) streams: Mutex<HashMap<u64, Waker>>,
    /// What the watcher read from the spool, shared by every stream.
    pub(crate) log: RwLock<ChunkLog>,
}

/// The recent records of a channel as the watcher read them, in chunks
/// (one per read). Streams copy from here: one spool read per publish for
/// the whole process instead of one per stream.
#[derive(Debug, Default)]
pub(crate) struct ChunkLog {
    /// Index of `chunks[0]`.
    pub(crate) first: u64,
    pub(crate) chunks: VecDeque<Arc<[u8]>>,
}

/// Chunks kept; a stream further behind than this is closed (its client
/// reconnects and resumes from the spool with Last-Event-ID).
const RING: usize = 1024;

impl ChunkLog {
    pub(crate) fn next(&self) -> u64 {
        self.first + self.chunks.len() as u64
    }

    fn push(&mut self, chunk: Arc<[u8]>) {
        self.chunks.push_back(chunk);
        if self.chunks.len() > RING {
            self.chunks.pop_front();
            self.first += 1;
        }
    }
}

/// How to wake one reader: an SSE stream's thread sleeps in
/// `park_timeout`; the WebSocket reactor sleeps in `epoll` (it also waits
/// for client frames), so it gets a datagram.
#[derive(Debug)]
pub(crate) enum Waker {
    Thread(Thread),
    Socket(UnixDatagram),
}

impl Channel {
    fn wake_all(&self) {
        for waker in lock(&self.streams).values() {
            match waker {
                Waker::Thread(t) => t.unpark(),
                Waker::Socket(s) => {
                    let _ = s.send(b"!");
                }
            }
        }
    }

    pub(crate) fn register(&self, waker: Waker) -> u64 {
        let key = STREAM_KEYS.fetch_add(1, Ordering::SeqCst);
        lock(&self.streams).insert(key, waker);
        key
    }
}

static STREAM_KEYS: AtomicU64 = AtomicU64::new(0);

/// What the watcher keeps per channel: where to send, what to wait on,
/// and its own reader of the channel.
type Watched = (Arc<Channel>, WakeSocket, Tailer);

/// The process's one spool watcher and its channels.
#[derive(Debug)]
pub struct Hub {
    pub(crate) spool: Spool,
    channels: Mutex<HashMap<String, Arc<Channel>>>,
    /// New channels for the watcher thread.
    adds: Mutex<Sender<Watched>>,
    /// Pokes the watcher's `poll` so it picks up new sockets or stops.
    poke: UnixDatagram,
    stopping: AtomicBool,
}

impl Hub {
    /// Starts the watcher thread.
    pub fn start(spool: Spool) -> io::Result<Arc<Hub>> {
        let (poke, poked) = UnixDatagram::pair()?;
        poke.set_nonblocking(true)?;
        poked.set_nonblocking(true)?;
        let (tx, rx) = mpsc::channel();
        let hub = Arc::new(Hub {
            spool,
            channels: Mutex::new(HashMap::new()),
            adds: Mutex::new(tx),
            poke,
            stopping: AtomicBool::new(false),
        });
        let watcher = Arc::clone(&hub);
        thread::Builder::new()
            .name("spool-watcher".into())
            .stack_size(STACK)
            .spawn(move || watcher.watch(poked, rx))?;
        Ok(hub)
    }

    /// The channel's shared state, creating it (and its wake-up socket,
    /// bound before anyone reads the log) on first use.
    pub(crate) fn channel(&self, name: &str) -> io::Result<Arc<Channel>> {
        let mut channels = lock(&self.channels);
        if let Some(c) = channels.get(name) {
            return Ok(Arc::clone(c));
        }
        let socket = WakeSocket::bind(&self.spool, name)?;
        let tailer = Tailer::open(&self.spool, name, Start::Now, &mut Vec::new())?;
        let channel = Arc::new(Channel::default());
        let _ = lock(&self.adds).send((Arc::clone(&channel), socket, tailer));
        let _ = self.poke.send(b"+");
        channels.insert(name.to_owned(), Arc::clone(&channel));
        Ok(channel)
    }

    /// The watcher loop: sleeps in `poll` on every channel's socket.
    fn watch(&self, poked: UnixDatagram, adds: Receiver<Watched>) {
        let mut watched: Vec<Watched> = Vec::new();
        let mut last_full = Instant::now();
        let mut buf = Vec::new();
        while !self.stopping.load(Ordering::SeqCst) {
            while let Ok(w) = adds.try_recv() {
                watched.push(w);
            }
            let ready = {
                let mut fds: Vec<BorrowedFd<'_>> = vec![poked.as_fd()];
                fds.extend(watched.iter().map(|(_, s, _)| s.socket().as_fd()));
                crate::sys::wait_readable(&fds, Duration::from_secs(1))
            };
            if ready.first() == Some(&true) {
                while poked.recv(&mut [0u8; 16]).is_ok() {}
            }
            // Now and then every channel is read with the slow checks
            // (gaps), as a stream does at its heartbeat.
            let full = last_full.elapsed() >= Duration::from_secs(5);
            if full {
                last_full = Instant::now();
            }
            for (i, (channel, socket, tailer)) in watched.iter_mut().enumerate() {
                let woken = ready.get(i + 1) == Some(&true);
                if woken {
                    while socket.socket().recv(&mut [0u8; 16]).is_ok() {}
                }
                if !woken && !full {
                    continue;
                }
                buf.clear();
                if let Err(e) = tailer.poll(&mut buf, full) {
                    eprintln!("nph-events serve: cannot read the spool: {e}");
                    continue;
                }
                if buf.is_empty() {
                    continue;
                }
                let next = {
                    let mut log = channel.log.write().unwrap_or_else(|e| e.into_inner());
                    log.push(Arc::from(buf.as_slice()));
                    log.next()
                };
                channel.seq.store(next, Ordering::SeqCst);
                channel.wake_all();
            }
        }
    }

    /// Stops the watcher and ends every stream's wait.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.poke.send(b"x");
        for channel in lock(&self.channels).values() {
            channel.wake_all();
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits for news on one channel, a timeout, or the server stopping.
struct HubWaiter {
    hub: Arc<Hub>,
    channel: Arc<Channel>,
    key: u64,
    seen: u64,
    /// The thread's unused stack was released (done at the first wait).
    trimmed: bool,
}

impl HubWaiter {
    /// Registers the current thread with `channel`. `seen` is read after
    /// registering, so a publish from then on is never missed.
    fn new(hub: Arc<Hub>, channel: Arc<Channel>) -> HubWaiter {
        let key = channel.register(Waker::Thread(thread::current()));
        let seen = channel.seq.load(Ordering::SeqCst);
        HubWaiter {
            hub,
            channel,
            key,
            seen,
            trimmed: false,
        }
    }
}

impl Drop for HubWaiter {
    fn drop(&mut self) {
        lock(&self.channel.streams).remove(&self.key);
    }
}

impl Waiter for HubWaiter {
    fn wait(&mut self, timeout: Duration, _wake: Option<BorrowedFd<'_>>) -> Wake {
        if !self.trimmed {
            self.trimmed = true;
            crate::sys::release_unused_stack();
        }
        let deadline = Instant::now() + timeout;
        loop {
            if self.hub.stopping.load(Ordering::SeqCst) {
                return Wake::Shutdown;
            }
            let seq = self.channel.seq.load(Ordering::SeqCst);
            if seq != self.seen {
                self.seen = seq;
                return Wake::Data;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Wake::Elapsed;
            }
            // An unpark between the check above and this call makes it
            // return at once: no wake-up is lost.
            thread::park_timeout(left);
        }
    }
}

/// A stream's source: the channel's shared chunks from its position on,
/// minus records it already had from its own backlog read.
pub(crate) struct HubSource {
    channel: Arc<Channel>,
    next: u64,
    last_id: Option<u64>,
}

impl Source for HubSource {
    fn poll(&mut self, out: &mut Vec<u8>, _full_check: bool) -> io::Result<()> {
        let log = self.channel.log.read().unwrap_or_else(|e| e.into_inner());
        if self.next < log.first {
            return Err(io::Error::other(
                "stream fell behind the broadcast; the client reconnects and resumes",
            ));
        }
        for chunk in log.chunks.iter().skip((self.next - log.first) as usize) {
            for record in crate::spool::records(chunk) {
                let id = crate::spool::record_id(record);
                if id.is_some_and(|id| self.last_id.is_some_and(|last| id <= last)) {
                    continue; // already sent from the backlog
                }
                out.extend_from_slice(record);
                self.last_id = id.or(self.last_id);
            }
        }
        self.next = log.next();
        Ok(())
    }
}

/// Takes a position in the channel's broadcast, then reads the backlog
/// from the spool. The caller registered for wake-ups before: whatever is
/// published from then on is in the backlog or in a chunk from the
/// position on (records in both are sent once, by id).
pub(crate) fn join(
    shared: Arc<Channel>,
    spool: &Spool,
    channel: &str,
    start: Start,
    backlog: &mut Vec<u8>,
) -> io::Result<HubSource> {
    let next = shared.log.read().unwrap_or_else(|e| e.into_inner()).next();
    let mut reader = Tailer::open(spool, channel, start, backlog)?;
    reader.poll(backlog, false)?;
    let last_id = crate::spool::records(backlog)
        .filter_map(crate::spool::record_id)
        .max()
        .or(match start {
            Start::After(n) => Some(n),
            Start::Now => None,
        });
    Ok(HubSource {
        channel: shared,
        next,
        last_id,
    })
}

pub(crate) struct HubSubscriber {
    pub(crate) hub: Arc<Hub>,
}

impl Subscriber for HubSubscriber {
    fn subscribe<'a>(
        &'a mut self,
        spool: &Spool,
        channel: &str,
        start: Start,
        backlog: &mut Vec<u8>,
    ) -> io::Result<app::Subscribed<'a>> {
        let shared = self.hub.channel(channel)?;
        // Register before taking a position (see `join`).
        let waiter = HubWaiter::new(Arc::clone(&self.hub), Arc::clone(&shared));
        let source = join(shared, spool, channel, start, backlog)?;
        Ok((Box::new(source), Box::new(waiter)))
    }
}

impl Hub {
    /// Whether the server is stopping.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}
