//! An event loop thread: its sockets on one epoll instance (single-port listeners waited on
//! with `poll(2)` beside it: see [`crate::reactor`]), its sessions' deadlines on one timing
//! wheel, one receive buffer for all of them. The listening side is
//! [`ServerCore::on_datagram`] (admission, limits, refusals, statistics: the decisions the
//! async server makes); each transfer is a [`ServerSession`] drained after every input;
//! whatever may block goes to the I/O pool and comes back as a message.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use tftp_proto::timers::Wheel;
use tftp_proto::{ErrorCode, Event, IncomingRequest, Output, ServerSession, Transmit};
use tftp_server::batch::{RecvBatch, SendQueue};
use tftp_server::budget::{Reservation, WindowBudget};
use tftp_server::connect::Catcher;
use tftp_server::server::{bind_transfer, bind_transfer_on};
use tftp_server::stats::Progress;
use tftp_server::udp::Received;
use tftp_server::{Decision, HandlerError, Permit, Request, ServerCore};

use crate::data::Data;
use crate::handler::{Handler, Response};
use crate::pool::{Done, Inbox, Jobs, Msg, Pool, drop_on};
use crate::reactor::{Poller, WAKER};
use crate::sip::AddrHasher;
use crate::slab::Slab;
use tftp_server::ring::SpareRing;

/// Keys below this are listeners (their index); sessions' keys are their slots in
/// [`Loop::sessions`] (see [`crate::slab`]).
const FIRST_SESSION: u64 = crate::slab::FIRST_KEY;
/// A session's key with this bit set is its catcher's (see [`tftp_server::connect`]).
const CATCHER: u64 = 1 << 62;
/// After shutdown began, how often a loop looks whether everything has ended.
const TICK: Duration = Duration::from_millis(50);

/// What all loops of a server share.
pub(crate) struct Shared<H> {
    pub(crate) handler: Arc<H>,
    pub(crate) core: Arc<ServerCore>,
    pub(crate) pool: Pool,
    pub(crate) budget: WindowBudget,
    pub(crate) stop: Arc<Stop>,
    /// One per loop.
    pub(crate) inboxes: Vec<Inbox>,
    /// Requests accepted and not yet ended, on every loop: the loops end together, once it
    /// is zero after shutdown.
    pub(crate) live: AtomicUsize,
    /// Round-robin assignment of sessions to loops.
    pub(crate) next_loop: AtomicUsize,
}

/// The shutdown signal: when it was given, and the loops to wake.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    pub(crate) at: Mutex<Option<Instant>>,
    /// Set with `at`: what the loops look at every turn, without the lock.
    given: AtomicBool,
    pub(crate) wakers: Mutex<Vec<Arc<crate::reactor::Waker>>>,
}

impl Stop {
    pub(crate) fn shutdown(&self) {
        let mut at = lock(&self.at);
        if at.is_none() {
            *at = Some(Instant::now());
            self.given.store(true, Ordering::Release);
            drop(at);
            lock(&self.wakers).iter().for_each(|w| w.wake());
        }
    }

    fn stopped_at(&self) -> Option<Instant> {
        if !self.given.load(Ordering::Acquire) {
            return None;
        }
        *lock(&self.at)
    }
}

/// A loop's receive buffer: room for any datagram (a UDP payload is under 64 KiB; a DATA of
/// blksize 65464, RFC 2348, is 65,468 bytes).
const RECV_BUF: usize = 65_536;

/// Single-port mode: datagrams a `recvmmsg` on a listener reads at most, and batches a turn
/// of the loop reads from one listener at most (then the other sources get their turn, as
/// after a burst of requests): 512 datagrams a turn. The DATA a batch causes leaves with one
/// `sendmmsg` ([`SendQueue::BATCH`], 64, at most). 64 × 8 rather than 32 × 8: the CPU per MB
/// of 1,000 clients × 1 MiB fell to ×0.92 and ×0.93 (one client address, two interleaved
/// runs of 10 rounds) and ×0.93 (250 addresses, 8 rounds); 128 × 8 gave ×0.95 and 64 × 4
/// ×0.97 and ×1.01. Most of the saving is the kernel's: in a profile its time fell by a
/// tenth, the per-datagram work (building, routing and freeing each datagram) sampled at
/// about half its former cost.
const LISTENER_BATCH: usize = 64;
const LISTENER_BATCHES: usize = 8;

/// How many full batches of readiness events in a row may hold the timers back.
const MAX_BACKLOG_ROUNDS: u32 = 16;
/// Single-port mode: how many turns in a row that leave datagrams queued on a listener (it
/// gave its [`LISTENER_BATCHES`] full batches) may hold the timers back: 32 × 512 datagrams,
/// more than the ACKs of the default 10,000 sessions. There every transfer's ACK waits in
/// the listener's queue, and a timeout judged while it waits there is a spurious
/// retransmission (and a duplicate ACK back): at 10,000 clients × 1 MiB the loop resent
/// 309,000 DATA (4.3%) when it looked at the timers every 256 datagrams. A flood on the
/// listener delays the timers by those turns (16,384 datagrams) at most.
const MAX_LISTENER_BACKLOG_ROUNDS: u32 = 32;

/// Lone mode (see [`Loop::lone`]): how long one blocking receive on the lone transfer's socket
/// may wait for the peer (its `SO_RCVTIMEO`), which is how late the loop's other sources (the
/// listener, the inbox, the timers) can be seen when the peer falls silent.
const LONE_WAIT: Duration = Duration::from_millis(2);
/// Lone mode: how long receives on the lone socket may go on before one turn through the
/// poller (requests on the listener, messages from other loops and the pool).
const LONE_TURN: Duration = Duration::from_millis(1);
/// Lone mode: after a receive that timed out (a peer slower than [`LONE_WAIT`], a loss), turns
/// through the poller before lone receives are tried again; doubled per miss in a row up to
/// [`LONE_MAX_BACKOFF`], so a slow peer costs a wasted receive every thousand packets at most.
const LONE_BACKOFF: u32 = 16;
const LONE_MAX_BACKOFF: u32 = 1024;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A single-port listener's routes: the session of each client address, in a table probed
/// with hashes computed beforehand, so that a batch's look-ups go in two passes: every
/// datagram's peer hashed (keyed SipHash-1-3, ~96 instructions, no memory), then every
/// table probed (a few instructions each, so the CPU has the probes of many datagrams in
/// flight at once). At 10,000 transfers the table has left the cache by the time a client's
/// next ACK comes, and one look-up after another in the receive's own loop waited for each
/// miss in turn: the load of the route was 2.3% of the server's CPU samples (`perf record`,
/// 10,000 clients from 250 addresses), with the kernel's per-packet work 80%.
#[derive(Default)]
struct Routes {
    /// Client address and session key: the addresses compared whole (as `SocketAddr`, flow
    /// label and scope too), hashed without flow label and scope ([`AddrHasher::hash`]), so
    /// equal addresses hash alike.
    table: hashbrown::HashTable<(SocketAddr, u64)>,
    /// Keyed with a random key, like std's maps: the addresses are the peers' to choose.
    hasher: AddrHasher,
}

impl Routes {
    fn hash(&self, peer: SocketAddr) -> u64 {
        self.hasher.hash(peer)
    }

    /// The session of `peer`, whose [`Routes::hash`] is `hash`.
    fn find(&self, hash: u64, peer: SocketAddr) -> Option<u64> {
        self.table
            .find(hash, |(p, _)| *p == peer)
            .map(|&(_, key)| key)
    }

    fn get(&self, peer: SocketAddr) -> Option<u64> {
        self.find(self.hash(peer), peer)
    }

    /// `peer`'s datagrams go to session `key` now (replacing any other).
    fn insert(&mut self, peer: SocketAddr, key: u64) {
        let (hash, hasher) = (self.hash(peer), &self.hasher);
        let entry = self
            .table
            .entry(hash, |(p, _)| *p == peer, |(p, _)| hasher.hash(*p));
        match entry {
            hashbrown::hash_table::Entry::Occupied(mut e) => e.get_mut().1 = key,
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert((peer, key));
            }
        }
    }

    /// Forget `peer`'s route if it goes to `key`: true if it did.
    fn remove(&mut self, peer: SocketAddr, key: u64) -> bool {
        let hash = self.hash(peer);
        match self.table.find_entry(hash, |&(p, k)| p == peer && k == key) {
            Ok(found) => {
                found.remove();
                true
            }
            Err(_) => false,
        }
    }

    fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// The latest session of each client port on a loop, which a new request from that port
/// replaces: the sessions' keys alone, hashed by their requests' peers. The address is read
/// from the session's entry on the look-ups, which are rare (a request accepted, a session
/// ended), not copied here: a key takes 9 bytes of the table, a `HashMap<SocketAddr, u64>`
/// entry took 41 (84 kB of the loop's heap at the peak of 1,000 clients, 18 kB now).
#[derive(Default)]
struct Peers {
    table: hashbrown::HashTable<u64>,
    /// Keyed with a random key, like std's maps: the addresses are the peers' to choose.
    hasher: AddrHasher,
}

impl Peers {
    /// Session `key` is `peer`'s latest now (in place of any other); `peer_of` gives the peer
    /// of every session in the table, `key`'s included.
    fn insert(&mut self, peer: SocketAddr, key: u64, peer_of: impl Fn(u64) -> Option<SocketAddr>) {
        let hasher = &self.hasher;
        let entry = self.table.entry(
            hasher.hash(peer),
            |&k| peer_of(k) == Some(peer),
            |&k| peer_of(k).map_or(0, |p| hasher.hash(p)),
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(mut e) => *e.get_mut() = key,
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(key);
            }
        }
    }

    /// `peer`'s session: its key, if it has one.
    fn get(&self, peer: SocketAddr, peer_of: impl Fn(u64) -> Option<SocketAddr>) -> Option<u64> {
        let found = self
            .table
            .find(self.hasher.hash(peer), |&k| peer_of(k) == Some(peer));
        found.copied()
    }

    /// Take `peer`'s session out of the table: its key, if it has one.
    fn take(
        &mut self,
        peer: SocketAddr,
        peer_of: impl Fn(u64) -> Option<SocketAddr>,
    ) -> Option<u64> {
        let found = self
            .table
            .find_entry(self.hasher.hash(peer), |&k| peer_of(k) == Some(peer));
        found.ok().map(|e| e.remove().0)
    }

    /// Session `key`, of `peer`, ended: forget it if it is still `peer`'s latest. (Its entry
    /// may be gone already: the key alone finds it.)
    fn forget(&mut self, peer: SocketAddr, key: u64) {
        if let Ok(e) = self.table.find_entry(self.hasher.hash(peer), |&k| k == key) {
            e.remove();
        }
    }
}

/// An accepted request on its way to the loop that serves it.
pub(crate) struct Accepted {
    request: Request,
    permit: Permit,
    socket: UdpSocket,
    catcher: Option<Catcher>,
}

struct Listener {
    socket: UdpSocket,
    local: SocketAddr,
    /// Single-port mode: the session of each peer.
    routes: Routes,
    /// Single-port mode: what its sessions (and refusals) send, for one `sendmmsg` at the
    /// end of the batch of datagrams that caused it (or of the loop's turn).
    queue: Option<RefCell<SendQueue>>,
    /// Read from: registered with the poller, or (single-port mode) passed to each wait.
    open: bool,
    /// Routes inserted and removed so far (a route looked up before a change may be stale).
    changes: u64,
}

enum Transport {
    /// Its own socket (RFC 1350 transfer ID), registered under the session's key, bound to the
    /// address the request was sent to; connected to the peer when it has a catcher, which is
    /// registered under the key with [`CATCHER`] set.
    Own(UdpSocket, Option<Catcher>),
    /// The listener with this index (single-port mode), and the source address its replies
    /// must carry (the asked address, when the listener is a wildcard).
    Listener(usize, Option<IpAddr>),
}

struct Entry<'s> {
    /// Boxed: read when the session starts and ends, not per packet; inline it was most of
    /// the entry, which the loop looks up for every datagram (see `Loop::sessions`).
    admitted: Box<Admitted>,
    transport: Transport,
    /// `None` while the handler is asked.
    running: Option<Box<Running<'s>>>,
    /// Replaced by a new request from the same client port (single-port mode).
    gone: bool,
    /// The earliest deadline queued in [`Loop::timers`] for it, if any.
    scheduled: Option<Instant>,
    /// What the last drain left it waiting for (its session's deadline or its source's):
    /// a queued entry that fires before it only queues this one, without touching the
    /// session (at 10,000 transfers, most entries fire early: a transfer's deadline moves on
    /// with every ACK, its queued entry does not).
    deadline: Option<Instant>,
    /// Its own socket was switched to blocking receives with [`LONE_WAIT`] as their timeout
    /// (every other call on it passes `MSG_DONTWAIT`).
    blocking: bool,
}

/// Lone mode: the session whose own socket was taken out of the poller when it became the
/// loop's lone transfer, and is waited on with `poll(2)` by every wait of the loop since (see
/// [`crate::reactor`]): registered, each DATA it sends and each ACK it receives wakes the
/// epoll entry on its wait queue, for nothing while the loop sits in a blocking receive on it.
/// At most one: a session becomes lone only when it is the loop's only one, and stays out of
/// the poller until it ends (its catcher, which sends nothing, stays in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OutOfPoller(u64);

/// What an entry keeps of its request's admission.
struct Admitted {
    request: Request,
    /// Counts against the admission limits until the session ends.
    _permit: Permit,
    started: Instant,
}

impl Entry<'_> {
    /// Wake session `key` at `at`, unless an entry at or before it is queued already: a
    /// later deadline keeps the queued earlier one, which fires early and then queues the
    /// real one ([`Loop::on_timeout`]), so the wheel holds one entry per session, not one per
    /// packet.
    fn wake_at(&mut self, timers: &mut Wheel<Instant, u64>, key: u64, at: Instant) {
        if self.scheduled.is_none_or(|queued| at < queued) {
            timers.schedule(at, key);
            self.scheduled = Some(at);
        }
    }
}

// Fields in this order: what a drain reads besides the session (its source, its deadline, its
// progress count, its budget and flags: 186 bytes, three cache lines) first, where the loop's
// read of a batch's sessions (`Loop::prefetch_sessions`) finds them; rustc's order put them
// after the session's 1,280 bytes, where each DATA wrote `awaiting_peer` to a line that had
// left the cache (`benches/e2e/misses.sh`: a miss a DATA).
#[repr(C)]
struct Running<'s> {
    data: Data,
    /// The block the source is working on, and when it must have delivered it.
    source_deadline: Option<(u64, Instant)>,
    /// The transfer's bytes counted while it runs (the final report counts the rest).
    progress: Progress,
    reservation: Option<Reservation<'s>>,
    /// Waiting for source bytes from the pool.
    starved: bool,
    /// The last drain left it waiting only for its peer or its deadline (no source or sink
    /// work pending on the pool).
    awaiting_peer: bool,
    session: ServerSession<Instant, SpareRing>,
}

/// One event loop thread's state.
pub(crate) struct Loop<'s, H> {
    shared: &'s Shared<H>,
    me: usize,
    poller: Poller,
    inbox: Receiver<Msg>,
    listeners: Vec<Listener>,
    sessions: Slab<Entry<'s>>,
    /// The latest session of each client port on this loop, which a new request from that
    /// port replaces.
    peers: Peers,
    /// Single-port mode: the route of each datagram of the listener batch being handled.
    found: Vec<Option<u64>>,
    /// Single-port mode: the hash of each datagram's peer, its route looked up with.
    hashes: Vec<u64>,
    timers: Wheel<Instant, u64>,
    /// The receive buffer of every socket of this loop.
    buf: Vec<u8>,
    /// What [`Loop::read_queued`] reads into while `buf` holds the listener's datagram
    /// (allocated the first time, rarely: a request from a client port with a transfer here).
    aside: Vec<u8>,
    accepting: bool,
    killed: bool,
    next_stats: Option<Instant>,
    /// Lone mode: turns through the poller left before lone receives are tried again, and
    /// the backoff the next miss sets.
    lone_skip: u32,
    lone_backoff: u32,
    /// Lone mode: the session whose socket the poller no longer holds.
    out_of_poller: Option<OutOfPoller>,
}

/// What draining a session left it waiting for.
enum Step {
    Wait(Option<Instant>),
    Closed,
}

impl<'s, H: Handler> Loop<'s, H> {
    /// Loop `me` of `shared`, serving `listeners`; the first loop reports the statistics.
    pub(crate) fn new(
        shared: &'s Shared<H>,
        me: usize,
        poller: Poller,
        inbox: Receiver<Msg>,
        listeners: Vec<UdpSocket>,
    ) -> io::Result<Self> {
        let mut own = Vec::new();
        let single_port = shared.core.config.single_port;
        for (i, socket) in listeners.into_iter().enumerate() {
            // A single-port listener sends every transfer's DATA: it is waited on with
            // poll(2) instead (see `crate::reactor`), its key its index as here.
            if !single_port {
                poller.add(&socket, i as u64)?;
            }
            let (local, routes, open) = (socket.local_addr()?, Routes::default(), true);
            let queue = match single_port {
                true => Some(RefCell::new(SendQueue::for_socket(&socket)?)),
                false => None,
            };
            own.push(Listener {
                socket,
                local,
                routes,
                queue,
                open,
                changes: 0,
            });
        }
        let core = &shared.core;
        let next_stats = (me == 0 && core.wants_stats())
            .then(|| Instant::now().checked_add(core.config.stats_interval))
            .flatten();
        Ok(Loop {
            shared,
            me,
            poller,
            inbox,
            listeners: own,
            sessions: Slab::default(),
            peers: Peers::default(),
            found: Vec::new(),
            hashes: Vec::new(),
            timers: Wheel::new(Instant::now()),
            buf: vec![0; RECV_BUF],
            aside: Vec::new(),
            accepting: true,
            killed: false,
            next_stats,
            lone_skip: 0,
            lone_backoff: LONE_BACKOFF,
            out_of_poller: None,
        })
    }

    /// Serve until shutdown and the end of every session of the server.
    pub(crate) fn run(mut self) -> io::Result<()> {
        let result = self.serve();
        if result.is_err() {
            // Its sessions end with it; the other loops must not wait for them.
            let live = &self.shared.live;
            live.fetch_sub(self.sessions.len(), Ordering::AcqRel);
        }
        result
    }

    fn serve(&mut self) -> io::Result<()> {
        let mut keys = Vec::with_capacity(crate::reactor::EVENTS);
        let mut events = crate::reactor::Events::new();
        let mut due = Vec::new();
        // Single-port mode: the listeners' datagrams, many a system call (made here: the
        // kernel's headers in it are not `Send`, the loop's thread keeps it).
        let mut batch = self
            .shared
            .core
            .config
            .single_port
            .then(|| RecvBatch::new(LISTENER_BATCH, self.buf.len()));
        // Rounds in a row that left readiness events for the next wait (see below).
        let (mut backlog, mut listener_backlog) = (0u32, 0u32);
        // Lone mode: until when receives on the lone socket may skip the poller, and the
        // time of the last lone receive (a clock read a packet, not one per use).
        let mut turn_ends: Option<Instant> = None;
        let mut received_at: Option<Instant> = None;
        loop {
            // What the last turn queued goes out before the loop waits or ends.
            self.flush_listeners();
            let now = received_at.take().unwrap_or_else(Instant::now);
            let mut wake = self.timers.next_deadline();
            wake = earliest(wake, self.next_stats);
            let stopping = self.shared.stop.stopped_at();
            if stopping.is_none() && wake.is_none_or(|at| at > now) {
                if let Some(key) = self.lone() {
                    let ends = *turn_ends.get_or_insert(now + LONE_TURN);
                    if now < ends {
                        received_at = self.lone_receive(key);
                        if received_at.is_some() {
                            continue;
                        }
                    }
                }
            }
            turn_ends = None;
            self.lone_skip = self.lone_skip.saturating_sub(1);
            let now = Instant::now();
            if let Some(stopped) = stopping {
                if self.accepting {
                    self.accepting = false;
                    tracing::info!(
                        active = self.shared.core.stats().active_sessions(),
                        "shutting down"
                    );
                }
                self.close_idle_listeners();
                let grace = stopped.checked_add(self.shared.core.config.shutdown_grace);
                if !self.killed && grace.is_some_and(|at| now >= at) {
                    self.kill(now);
                }
                if self.shared.live.load(Ordering::Acquire) == 0 && self.sessions.is_empty() {
                    return Ok(());
                }
                wake = earliest(wake, Some(now + TICK));
                if !self.killed {
                    wake = earliest(wake, grace);
                }
            }
            let timeout = wake.map(|at| at.saturating_duration_since(now));
            {
                let mut polled: SmallVec<[_; 8]> = match self.shared.core.config.single_port {
                    true => (self.listeners.iter().enumerate())
                        .filter(|(_, l)| l.open)
                        .map(|(i, l)| (l.socket.as_fd(), i as u64))
                        .collect(),
                    false => SmallVec::new(),
                };
                if let Some(OutOfPoller(key)) = self.out_of_poller {
                    if let Some(Transport::Own(socket, _)) =
                        self.sessions.get(key).map(|e| &e.transport)
                    {
                        polled.push((socket.as_fd(), key));
                    }
                }
                self.poller.wait(&mut events, &mut keys, &polled, timeout)?;
            }
            self.prefetch_sessions(&keys);
            let mut queued = false;
            for &key in &keys {
                match key {
                    WAKER => {}
                    k if k < FIRST_SESSION => {
                        queued |= self.on_listener(k as usize, batch.as_mut());
                    }
                    k if k & CATCHER != 0 => {
                        self.on_readable(k & !CATCHER, true);
                    }
                    k => {
                        self.on_readable(k, false);
                    }
                }
            }
            while let Ok(msg) = self.inbox.try_recv() {
                match msg {
                    Msg::Done(key, done) => self.on_done(key, done),
                    Msg::Start(accepted) => self.start(*accepted),
                    Msg::Replaced(peer) => self.replace_peer(peer),
                }
            }
            // A full batch of readiness events means more sockets are ready than one wait
            // returns: their ACKs are already here. Firing the timers now would retransmit to
            // peers whose answers are queued, unread (at 10,000 clients, 4% of all DATA). So
            // the timers wait for the backlog to be read, but never more than a few rounds.
            if keys.len() == crate::reactor::EVENTS && backlog < MAX_BACKLOG_ROUNDS {
                backlog += 1;
                continue;
            }
            if queued && listener_backlog < MAX_LISTENER_BACKLOG_ROUNDS {
                listener_backlog += 1;
                continue;
            }
            backlog = 0;
            listener_backlog = 0;
            let now = Instant::now();
            due.extend(self.timers.expired(now));
            for key in due.drain(..) {
                self.on_timeout(key, now);
            }
            if let Some(at) = self.next_stats.filter(|at| now >= *at) {
                self.shared.core.report_interval(now);
                self.next_stats = at.checked_add(self.shared.core.config.stats_interval);
            }
        }
    }

    /// The loop's one transfer, if it has exactly one, on its own socket, waiting for its
    /// peer: lone mode. A lock-step transfer (windowsize 1: what PXE ROMs do) then costs two
    /// system calls a packet, a blocking `recvfrom` of the ACK and a `sendto` of the next
    /// DATA, instead of three with an `epoll_wait` between: the least a server can spend.
    /// The other sources (a listener, other loops' messages, the timers) are looked at every
    /// [`LONE_TURN`], and after [`LONE_WAIT`] of silence from the peer.
    fn lone(&mut self) -> Option<u64> {
        if self.sessions.len() != 1 || self.lone_skip > 0 {
            return None;
        }
        let (key, entry) = self.sessions.sole()?;
        let waiting = entry.running.as_ref().is_some_and(|r| r.awaiting_peer);
        let own = matches!(entry.transport, Transport::Own(..));
        (waiting && own && !entry.gone).then_some(key)
    }

    /// One blocking receive on lone session `key`'s socket (at most [`LONE_WAIT`]), and the
    /// datagram's handling: when it came. None if none came: the poller's turn.
    fn lone_receive(&mut self, key: u64) -> Option<Instant> {
        let entry = self.sessions.get_mut(key)?;
        let (Transport::Own(socket, _), Some(running)) = (&entry.transport, &mut entry.running)
        else {
            return None;
        };
        if !entry.blocking {
            // The timeout first: a blocking socket without one could hold the loop forever.
            let switched = socket.set_read_timeout(Some(LONE_WAIT));
            if let Err(e) = switched.and_then(|()| socket.set_nonblocking(false)) {
                tracing::debug!(error = %e, "no blocking receives on a transfer socket");
                self.lone_skip = u32::MAX;
                return None;
            }
            entry.blocking = true;
        }
        if self.out_of_poller.is_none() && self.poller.delete(socket).is_ok() {
            self.out_of_poller = Some(OutOfPoller(key));
        }
        let len = running.session.max_datagram_len().min(self.buf.len());
        match recv(
            socket,
            &mut self.buf[..len],
            rustix::net::RecvFlags::empty(),
        ) {
            Ok((n, from)) => {
                self.lone_backoff = LONE_BACKOFF;
                let now = Instant::now();
                running.session.handle_datagram(now, from, &self.buf[..n]);
                self.drain(key, now);
                Some(now)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::WouldBlock {
                    tracing::debug!(error = %e, "recv failed");
                }
                // The peer is slow or a datagram was lost: back to the poller for a while.
                self.lone_skip = self.lone_backoff;
                self.lone_backoff = (self.lone_backoff * 2).min(LONE_MAX_BACKOFF);
                None
            }
        }
    }

    fn jobs(&self, key: u64) -> Jobs<'_> {
        let (pool, inbox) = (&self.shared.pool, &self.shared.inboxes[self.me]);
        Jobs { pool, inbox, key }
    }

    /// Listener `index` is readable. With a transfer port per session it receives only
    /// requests: take a burst of them at once (a flood of PXE clients is admitted as fast as
    /// it comes, not one request per turn of the loop). In single-port mode it carries the
    /// transfers too: a few batches of datagrams, one `recvmmsg` each, and what they cause
    /// sent with one `sendmmsg` a batch. True when single-port datagrams are still queued
    /// (see [`MAX_LISTENER_BACKLOG_ROUNDS`]).
    fn on_listener(&mut self, index: usize, batch: Option<&mut RecvBatch>) -> bool {
        if let Some(batch) = batch {
            return self.on_listener_batches(index, batch);
        }
        for _ in 0..256 {
            if !self.on_listener_datagram(index) {
                break;
            }
        }
        false
    }

    /// Single-port mode: read listener `index` in batches; true if they were all full (more
    /// may be queued).
    fn on_listener_batches(&mut self, index: usize, batch: &mut RecvBatch) -> bool {
        for _ in 0..LISTENER_BATCHES {
            let Some(listener) = self.listeners.get(index).filter(|l| l.open) else {
                return false;
            };
            // Only a request needs the address it was sent to (its replies come from it); a
            // datagram that is not one goes to its sender's session or is dropped, wherever
            // it was sent.
            let changes = listener.changes;
            let is_request = |_, datagram: &[u8]| IncomingRequest::is_request(datagram);
            match batch.recv_with(&listener.socket, is_request) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    tracing::debug!(error = %e, "listener recv failed");
                    return false;
                }
            }
            // One clock read a batch: they all arrived before the receive.
            let now = Instant::now();
            // The datagrams' routes: every peer hashed, then every route looked up (see
            // `Routes`); then the sessions they go to read, before any is handled.
            let (routes, found, hashes) = (&listener.routes, &mut self.found, &mut self.hashes);
            // One of each per datagram, in the batch's order.
            let peers = (0..batch.len()).map(|i| batch.get(i).map(|(r, _)| r.peer));
            hashes.clear();
            hashes.extend(peers.clone().map(|p| p.map_or(0, |peer| routes.hash(peer))));
            found.clear();
            found.extend(
                peers
                    .zip(hashes.iter())
                    .map(|(p, &h)| p.and_then(|peer| routes.find(h, peer))),
            );
            self.prefetch_sessions(self.found.iter().flatten());
            for i in 0..batch.len() {
                // Still the route, unless a datagram before it in the batch started or ended
                // a session here.
                let unchanged = self
                    .listeners
                    .get(index)
                    .is_some_and(|l| l.changes == changes);
                let route = self.found.get(i).copied().filter(|_| unchanged);
                if let Some((received, datagram)) = batch.get(i) {
                    self.on_listener_received(index, received, datagram, route, now);
                }
            }
            if let Some(listener) = self.listeners.get(index) {
                flush_listener(listener);
            }
            if batch.len() < LISTENER_BATCH {
                return false;
            }
        }
        true
    }

    /// Read the state of sessions `keys` (see [`tftp_proto::Session::prefetch`]); keys of
    /// no running session (listeners, catchers, the waker, ended sessions) are passed over.
    fn prefetch_sessions<'k>(&self, keys: impl IntoIterator<Item = &'k u64>) {
        // In two passes, a few sessions at a time: their table entries (whose misses overlap,
        // each look-up a few instructions), then their sessions' state, which the entries
        // point to.
        const AT_ONCE: usize = 16;
        let mut keys = keys.into_iter().peekable();
        while keys.peek().is_some() {
            let mut ready: [Option<&Entry<'s>>; AT_ONCE] = [None; AT_ONCE];
            for (slot, key) in ready.iter_mut().zip(keys.by_ref()) {
                *slot = self.sessions.get(*key);
            }
            for entry in ready.iter().flatten() {
                let Some(running) = entry.running.as_ref() else {
                    continue;
                };
                running.session.prefetch();
                std::hint::black_box((
                    (entry.deadline, entry.scheduled),
                    (running.data.position(), running.source_deadline),
                    (running.progress.counted(), running.awaiting_peer),
                ));
            }
        }
    }

    /// One datagram on listener `index`, then the server's decision. False if there was none.
    fn on_listener_datagram(&mut self, index: usize) -> bool {
        let Some(listener) = self.listeners.get(index).filter(|l| l.open) else {
            return false;
        };
        // With the address the request was sent to (IP_PKTINFO): replies come from it.
        let received = match tftp_server::udp::recv_from_to(&listener.socket, &mut self.buf) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) => {
                tracing::debug!(error = %e, "listener recv failed");
                return true;
            }
        };
        let buf = std::mem::take(&mut self.buf);
        let n = received.len.min(buf.len());
        self.on_listener_received(index, &received, &buf[..n], None, Instant::now());
        self.buf = buf;
        true
    }

    /// `datagram`, `received` on listener `index` by `now`: the server's decision, and its
    /// effect. `route`: its sender's route, if already looked up (`Some(None)`: none).
    fn on_listener_received(
        &mut self,
        index: usize,
        received: &Received,
        datagram: &[u8],
        route: Option<Option<u64>>,
        now: Instant,
    ) {
        let peer = received.peer;
        let is_request = IncomingRequest::is_request(datagram);
        // A request from a client port whose transfer here has datagrams queued on its own
        // socket (the final ACK its client sent just before this request): those first, so
        // the transfer ends before the request is weighed, or the endpoint would drop it as a
        // repeat of the request that transfer serves. The listener is read in a burst, so it
        // can get ahead of a transfer socket's datagram that came before.
        if is_request && !self.shared.core.config.single_port {
            self.read_queued(peer);
        }
        let Some(listener) = self.listeners.get(index) else {
            return;
        };
        let route = route.unwrap_or_else(|| listener.routes.get(peer));
        // Single-port mode: what is not a request, from a client port with a session here,
        // is that session's (the admission would say so: its endpoint routes the same ports,
        // accepted and ended with these routes). Most datagrams at a listener are, and go
        // without the admission's lock and its endpoint's ordered map (a profile at 1,000
        // clients: about 2% of the server's CPU; five interleaved rounds: x0.975 CPU per MB).
        if let Some(key) = route.filter(|_| !is_request) {
            return self.deliver(key, peer, datagram, now);
        }
        let core = &self.shared.core;
        let asked = received.local_ip.unwrap_or(listener.local.ip());
        let local = SocketAddr::new(asked, listener.local.port());
        // Only a wildcard listener has a choice of source address.
        let from = received
            .local_ip
            .filter(|_| listener.local.ip().is_unspecified());
        let interface = received.interface;
        match core.on_datagram(local, interface, peer, datagram, now, self.accepting) {
            Decision::Ignore => {}
            Decision::Route => {
                if let Some(key) = route {
                    self.deliver(key, peer, datagram, now);
                }
            }
            Decision::Reply(reply) => {
                send_one(Out::listener(listener, from), &reply.to_vec(), peer)
            }
            Decision::Accept(request, permit) => {
                self.accept(index, request, permit, from, interface)
            }
        }
    }

    /// Send what the listeners' sessions queued (single-port mode).
    fn flush_listeners(&self) {
        for listener in &self.listeners {
            flush_listener(listener);
        }
    }

    /// `datagram` came from `peer` for session `key`.
    fn deliver(&mut self, key: u64, peer: SocketAddr, datagram: &[u8], now: Instant) {
        let Some(running) = self.sessions.get_mut(key).and_then(|e| e.running.as_mut()) else {
            // The handler is still deciding: the peer has nothing to say yet.
            return;
        };
        // Cut to the session's buffer, as the socket would: an oversized DATA is seen as such.
        let len = datagram.len().min(running.session.max_datagram_len());
        running.session.handle_datagram(now, peer, &datagram[..len]);
        self.drain(key, now);
    }

    /// Handle what waits on the own socket of `peer`'s session on this loop, if it has one
    /// (a few datagrams at most: a transfer's peer has little to say at once).
    fn read_queued(&mut self, peer: SocketAddr) {
        let sessions = &self.sessions;
        let Some(key) = self.peers.get(peer, |k| peer_of(sessions, k)) else {
            return;
        };
        // The listener's datagram is in `buf`, taken out of the loop meanwhile (the requests
        // read one at a time): these go into a buffer of their own.
        if self.aside.is_empty() {
            self.aside = vec![0; RECV_BUF];
        }
        std::mem::swap(&mut self.buf, &mut self.aside);
        for _ in 0..4 {
            if !self.on_readable(key, false) {
                break;
            }
        }
        std::mem::swap(&mut self.buf, &mut self.aside);
    }

    /// Session `key`'s socket is readable, or its catcher's (`catcher`: a stranger wrote
    /// to its port, which the session answers and counts as it would on one socket). True
    /// if a datagram was read.
    fn on_readable(&mut self, key: u64, catcher: bool) -> bool {
        let Some(entry) = self.sessions.get_mut(key) else {
            return false;
        };
        let (Transport::Own(socket, caught), Some(running)) =
            (&entry.transport, &mut entry.running)
        else {
            return false;
        };
        let socket = match (catcher, caught) {
            (false, _) => socket,
            (true, Some(caught)) => caught.socket(),
            (true, None) => return false,
        };
        let len = running.session.max_datagram_len().min(self.buf.len());
        match recv(
            socket,
            &mut self.buf[..len],
            rustix::net::RecvFlags::DONTWAIT,
        ) {
            Ok((n, from)) => {
                let now = Instant::now();
                running.session.handle_datagram(now, from, &self.buf[..n]);
                self.drain(key, now);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            // ICMP errors surface here; they are not the peer's words.
            Err(e) => {
                tracing::debug!(error = %e, "recv failed");
                false
            }
        }
    }

    fn accept(
        &mut self,
        index: usize,
        request: Request,
        permit: Permit,
        from: Option<IpAddr>,
        interface: Option<u32>,
    ) {
        let shared = self.shared;
        // The admission replaced the client port's session (a new request from a port means
        // the client gave up on the old transfer), on whichever loop or listener it runs.
        self.replace_peer(request.peer);
        for (i, inbox) in shared.inboxes.iter().enumerate() {
            if i != self.me {
                let _ = inbox.send(Msg::Replaced(request.peer));
            }
        }
        if shared.core.config.single_port {
            shared.live.fetch_add(1, Ordering::AcqRel);
            return self.begin(request, permit, Transport::Listener(index, from));
        }
        let listener = &mut self.listeners[index];
        let range = shared.core.config.port_range.as_ref();
        // On the asked address: the transfer's replies come from it.
        let asked = request.local.ip();
        let mut bound = bind_transfer_on(asked, interface, range);
        if let Err(e) = &bound {
            if asked != listener.local.ip() && e.kind() != io::ErrorKind::AddrInUse {
                // The address went away meanwhile: the listener's own, as before.
                tracing::debug!(%asked, error = %e, "cannot bind a transfer socket on the asked address");
                bound = bind_transfer(listener.local.ip(), range);
            }
        }
        // Non-blocking already (bind_transfer_on).
        let socket = match bound {
            Ok(socket) => socket,
            Err(e) => {
                if let Some(reply) = shared.core.no_transfer_socket(&request, &e) {
                    send_one(Out::listener(listener, from), &reply.to_vec(), request.peer);
                }
                return;
            }
        };
        // Before anything is sent from it: the peer learns the port from the first answer.
        let catcher = shared.core.connect_transfer(&socket, request.peer);
        shared.live.fetch_add(1, Ordering::AcqRel);
        let accepted = Accepted {
            request,
            permit,
            socket,
            catcher,
        };
        let to = shared.next_loop.fetch_add(1, Ordering::Relaxed) % shared.inboxes.len();
        if to == self.me {
            return self.start(accepted);
        }
        match shared.inboxes[to].send(Msg::Start(Box::new(accepted))) {
            Ok(()) => {}
            // That loop is gone (it failed): serve it here.
            Err(Msg::Start(accepted)) => self.start(*accepted),
            Err(_) => {}
        }
    }

    /// A new request from `peer` was accepted: its session on this loop, if any, is replaced.
    fn replace_peer(&mut self, peer: SocketAddr) {
        let sessions = &self.sessions;
        if let Some(key) = self.peers.take(peer, |k| peer_of(sessions, k)) {
            self.replaced(key);
        }
    }

    /// Session `key` was replaced by a new request from its client port: end it silently.
    fn replaced(&mut self, key: u64) {
        let Some(entry) = self.sessions.get_mut(key) else {
            return;
        };
        entry.gone = true;
        if let Some(running) = &mut entry.running {
            let now = Instant::now();
            running.session.abandon(now);
            self.drain(key, now);
        }
    }

    /// Ask the handler about an accepted request (on the pool).
    fn begin(&mut self, request: Request, permit: Permit, transport: Transport) {
        let peer = request.peer;
        let listener = match transport {
            Transport::Listener(index, _) => Some(index),
            Transport::Own(..) => None,
        };
        let entry = Entry {
            admitted: Box::new(Admitted {
                request,
                _permit: permit,
                started: Instant::now(),
            }),
            transport,
            running: None,
            gone: false,
            scheduled: None,
            deadline: None,
            blocking: false,
        };
        let key = self.sessions.insert(entry);
        tftp_server::ring::hold_rings(self.sessions.len() == 1);
        let sessions = &self.sessions;
        self.peers.insert(peer, key, |k| peer_of(sessions, k));
        if let Some(listener) = listener.and_then(|index| self.listeners.get_mut(index)) {
            listener.routes.insert(peer, key);
            listener.changes += 1;
        }
        if self.killed {
            return self.answered(key, Err(shutting_down()));
        }
        let Some(entry) = self.sessions.get(key) else {
            return;
        };
        let request = &entry.admitted.request;
        // A read the handler answers here costs no pool thread (Handler::read_on_loop).
        let handler = &*self.shared.handler;
        let on_loop = match request.kind {
            tftp_proto::RequestKind::Read => {
                catch_unwind(AssertUnwindSafe(|| handler.read_on_loop(request)))
                    .unwrap_or_else(|_| Some(Err(crate::pool::server_error())))
            }
            tftp_proto::RequestKind::Write => None,
        };
        match on_loop {
            Some(answer) => self.answered(key, answer.map(|r| r.0)),
            None => self.jobs(key).ask(&self.shared.handler, request),
        }
    }

    /// Serve a request accepted with its own transfer socket on this loop.
    fn start(&mut self, accepted: Accepted) {
        let Accepted {
            request,
            permit,
            socket,
            catcher,
        } = accepted;
        self.begin(request, permit, Transport::Own(socket, catcher));
    }

    fn on_done(&mut self, key: u64, done: Done) {
        let shared = self.shared;
        let pool = &shared.pool;
        let Some(entry) = self.sessions.get_mut(key) else {
            // The session ended meanwhile: whatever came back is dropped off the loop.
            return drop_on(pool, done);
        };
        match (done, &mut entry.running) {
            (Done::Answer(answer), None) => self.answered(key, answer),
            (done, Some(running)) => {
                running.data.done(done, pool);
                self.drain(key, Instant::now());
            }
            (done, None) => drop_on(pool, done),
        }
    }

    /// Refuse session `key` with `error`: its ERROR to the client, the refusal counted and
    /// logged, the entry gone.
    fn refuse(&mut self, key: u64, error: &HandlerError) {
        let Some(entry) = self.sessions.get(key) else {
            return;
        };
        let admitted = &entry.admitted;
        let peer = admitted.request.peer;
        send_one(
            out_of(&entry.transport, &self.listeners, peer),
            &error.reply().to_vec(),
            peer,
        );
        self.shared
            .core
            .refused(&admitted.request, error, admitted.started);
        self.remove(key);
    }

    /// The handler answered session `key`: refuse, or start the transfer.
    fn answered(&mut self, key: u64, answer: Result<Response, HandlerError>) {
        let shared = self.shared;
        let core = &shared.core;
        let Some(entry) = self.sessions.get_mut(key) else {
            return;
        };
        let response = match answer {
            Ok(response) => response,
            Err(error) => return self.refuse(key, &error),
        };
        let request = &entry.admitted.request;
        let (size, limits) = (response.size, response.limits);
        let Some(mut session) = core.start_session_in(
            request,
            size,
            limits,
            entry.admitted.started,
            SpareRing::default(),
        ) else {
            // A SpareRing grows to anything: not a path.
            return self.refuse(key, &HandlerError::server_error());
        };
        if let Transport::Own(socket, catcher) = &entry.transport {
            let registered = self.poller.add(socket, key).and_then(|()| match catcher {
                Some(catcher) => self.poller.add(catcher.socket(), key | CATCHER),
                None => Ok(()),
            });
            if let Err(e) = registered {
                tracing::warn!(error = %e, "cannot register a transfer socket");
                session.abort(Instant::now(), ErrorCode::NOT_DEFINED, "Server error");
            }
        }
        let gone = entry.gone;
        let data = response.into_data();
        session.set_source_seekable(data.is_seekable());
        entry.running = Some(Box::new(Running {
            session,
            data,
            reservation: None,
            source_deadline: None,
            starved: false,
            progress: Progress::new(Instant::now()),
            awaiting_peer: false,
        }));
        self.drain(key, Instant::now());
        // Replaced while the handler decided: its first answer went out (as the async server
        // does: the client sees every request answered), and it ends now.
        if gone {
            self.replaced(key);
        }
    }

    fn on_timeout(&mut self, key: u64, now: Instant) {
        let Some(entry) = self.sessions.get_mut(key) else {
            return;
        };
        if entry.scheduled.is_some_and(|at| at <= now) {
            entry.scheduled = None;
        }
        let Some(running) = &mut entry.running else {
            return;
        };
        match entry.deadline {
            // Early: the session's deadline moved on since this entry was queued.
            Some(at) if at > now => return entry.wake_at(&mut self.timers, key, at),
            // Waiting for nothing but input (its session has no deadline).
            None => return,
            Some(_) => {}
        }
        let source_late = running.source_deadline.is_some_and(|(_, at)| now >= at);
        if running.starved && source_late {
            tracing::warn!(peer = %entry.admitted.request.peer, "data source timed out");
            let message = "Data source timed out";
            running.session.abort(now, ErrorCode::NOT_DEFINED, message);
        } else {
            running.session.handle_timeout(now);
        }
        self.drain(key, now);
    }

    /// Drain session `key`'s outputs until it waits or closes; `now` is when its input came
    /// (what it sends is timestamped with it: one clock read a packet).
    fn drain(&mut self, key: u64, now: Instant) {
        let shared = self.shared;
        let jobs = Jobs {
            pool: &shared.pool,
            inbox: &shared.inboxes[self.me],
            key,
        };
        let Some(entry) = self.sessions.get_mut(key) else {
            return;
        };
        let Some(running) = &mut entry.running else {
            return;
        };
        // The session's copy of the peer: it is in the cache lines the loop prefetched, the
        // boxed request is not.
        let out = out_of(&entry.transport, &self.listeners, running.session.peer());
        match drive(shared, running, &entry.admitted.request, out, &jobs, now) {
            Step::Wait(deadline) => {
                entry.deadline = deadline;
                if let Some(at) = deadline {
                    entry.wake_at(&mut self.timers, key, at);
                }
            }
            Step::Closed => self.remove(key),
        }
    }

    /// The end of session `key`: its data, its socket, its route and its permit go.
    fn remove(&mut self, key: u64) {
        let Some(entry) = self.sessions.remove(key) else {
            return;
        };
        // One session left on this loop: its ring would only come back to it.
        tftp_server::ring::hold_rings(self.sessions.len() == 1);
        if self.out_of_poller == Some(OutOfPoller(key)) {
            self.out_of_poller = None;
        }
        self.peers.forget(entry.admitted.request.peer, key);
        if let Transport::Listener(index, _) = entry.transport {
            let listener = &mut self.listeners[index];
            if listener.routes.remove(entry.admitted.request.peer, key) {
                listener.changes += 1;
            }
        }
        if let Some(running) = entry.running {
            let Running {
                data, reservation, ..
            } = *running;
            drop(reservation);
            data.close(&self.shared.pool);
        }
        // Closing the transfer socket takes it out of the poller.
        self.shared.live.fetch_sub(1, Ordering::AcqRel);
    }

    /// Shutdown: a listener stops reading once it routes to no session.
    fn close_idle_listeners(&mut self) {
        for listener in &mut self.listeners {
            if listener.open && listener.routes.is_empty() {
                if !self.shared.core.config.single_port {
                    let _ = self.poller.delete(&listener.socket);
                }
                listener.open = false;
            }
        }
    }

    /// The grace period is over: abort every session with an ERROR.
    fn kill(&mut self, now: Instant) {
        self.killed = true;
        let keys: Vec<u64> = self.sessions.keys().collect();
        for key in keys {
            let Some(entry) = self.sessions.get_mut(key) else {
                continue;
            };
            match &mut entry.running {
                Some(running) => {
                    let message = "Server shutting down";
                    running.session.abort(now, ErrorCode::NOT_DEFINED, message);
                    self.drain(key, now);
                }
                // A handler still deciding is answered for.
                None => self.answered(key, Err(shutting_down())),
            }
        }
    }
}

fn shutting_down() -> HandlerError {
    HandlerError::new(ErrorCode::NOT_DEFINED, "Server shutting down")
}

/// Where a session's datagrams go out.
#[derive(Clone, Copy)]
struct Out<'a> {
    socket: &'a UdpSocket,
    /// The source address they must carry (a wildcard listener answering from the asked
    /// address).
    from: Option<IpAddr>,
    /// The peer the socket is connected to: sent to without an address, on the connection's
    /// route.
    connected: Option<SocketAddr>,
    /// A single-port listener's queue: datagrams wait there for one `sendmmsg`.
    queue: Option<&'a RefCell<SendQueue>>,
}

impl<'a> Out<'a> {
    /// Out of `listener`, from `from` if given.
    fn listener(listener: &'a Listener, from: Option<IpAddr>) -> Self {
        Out {
            socket: &listener.socket,
            from,
            connected: None,
            queue: listener.queue.as_ref(),
        }
    }
}

/// Send what `listener`'s queue holds: one `sendmmsg` a batch. A full send buffer gets a
/// short wait; then what is left is a loss, which the retransmission timers cover.
fn flush_listener(listener: &Listener) {
    if let Some(queue) = &listener.queue {
        flush_queue(&listener.socket, queue);
    }
}

/// Send what `queue` holds out of `socket` (see [`flush_listener`]).
fn flush_queue(socket: &UdpSocket, queue: &RefCell<SendQueue>) {
    let mut queue = queue.borrow_mut();
    if queue.is_empty() {
        return;
    }
    let flushed = match queue.flush(socket) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && writable(socket) => queue.flush(socket),
        other => other,
    };
    if let Err(e) = flushed {
        let dropped = queue.clear();
        tracing::debug!(dropped, error = %e, "send failed");
    }
}

/// How session transport `transport` to `peer` sends.
fn out_of<'a>(transport: &'a Transport, listeners: &'a [Listener], peer: SocketAddr) -> Out<'a> {
    match transport {
        Transport::Own(socket, catcher) => Out {
            socket,
            from: None,
            connected: catcher.as_ref().map(|_| peer),
            queue: None,
        },
        Transport::Listener(index, from) => Out::listener(&listeners[*index], *from),
    }
}

/// Drain a running session's outputs until it waits (for a datagram, its deadline, or the
/// pool) or closes. The window budget is taken when data starts to flow. `now` is the time
/// of the input that started the drain: a clock read for each output would cost more than
/// the rest of the loop's own work a packet (on a VM's vDSO clock), and the microseconds a
/// drain takes only make the measured round trip as much longer.
fn drive<'s, H>(
    shared: &'s Shared<H>,
    running: &mut Running<'s>,
    request: &Request,
    out: Out<'_>,
    jobs: &Jobs<'_>,
    now: Instant,
) -> Step {
    let session = &mut running.session;
    running.awaiting_peer = false;
    loop {
        if running.reservation.is_none() {
            let bytes = session.window_memory();
            if bytes > 0 {
                running.reservation = shared.budget.reserve(bytes);
                if running.reservation.is_none() {
                    tracing::warn!(bytes, "window memory budget exhausted");
                    let busy = HandlerError::server_busy();
                    session.abort(now, busy.code, &busy.message);
                }
            }
        }
        match session.poll_output(now) {
            Output::Transmit(t) => send(out, &t),
            Output::Fill(mut fill) => {
                let (block, offset) = (fill.block(), fill.offset());
                match running.data.fill(fill.buf(), offset, jobs) {
                    Poll::Ready(Ok(0)) => fill.finish(),
                    Poll::Ready(Ok(n)) => {
                        let _ = fill.advance(n);
                    }
                    Poll::Ready(Err(e)) => {
                        tracing::warn!(peer = %request.peer, error = %e, "data source failed");
                        let error = HandlerError::from(&e);
                        session.abort(now, error.code, &error.message);
                    }
                    Poll::Pending => {
                        let limit = match running.source_deadline {
                            Some((b, at)) if b == block => Some(at),
                            _ => now.checked_add(shared.core.config.source_timeout),
                        };
                        running.source_deadline = limit.map(|at| (block, at));
                        running.starved = true;
                        return Step::Wait(earliest(session.poll_timeout(), limit));
                    }
                }
                running.starved = false;
            }
            Output::Store(mut store) => {
                let last = store.is_last();
                match running.data.store(store.data(), last, jobs) {
                    Poll::Ready(Ok(())) => store.stored(),
                    Poll::Ready(Err(error)) => {
                        tracing::warn!(peer = %request.peer, %error, "data sink failed");
                        session.abort(now, error.code, &error.message);
                    }
                    Poll::Pending => return Step::Wait(session.poll_timeout()),
                }
            }
            Output::Event(Event::Finished(stats)) => {
                let counted = running.progress.counted();
                shared.core.session_finished_after(request, stats, counted);
            }
            Output::Event(_) => {}
            Output::Wait(deadline) => {
                running.starved = false;
                running.awaiting_peer = true;
                let (bytes, runs) = (session.stats().bytes, session.outcome().is_none());
                if let Some(new) = running.progress.due(now, bytes, runs) {
                    shared.core.stats().transfer_progress(request.kind, new);
                }
                return Step::Wait(deadline);
            }
            Output::Closed => return Step::Closed,
        }
    }
}

/// Send a transmit from `from` (if given): a batch with one `sendmsg` (UDP GSO) where the
/// kernel can, else one by one.
fn send(out: Out<'_>, t: &Transmit<'_>) {
    let (socket, from) = (out.socket, out.from);
    if let Some(size) = t.segment_size.filter(|&size| t.contents.len() > size) {
        // After what waits in the queue: a peer's datagrams keep their order.
        if let Some(queue) = out.queue {
            flush_queue(socket, queue);
        }
        let gso = |s: &UdpSocket| {
            tftp_server::udp::send_gso_from(s.as_fd(), t.contents, size, t.destination, from)
        };
        match gso(socket) {
            Ok(_) => return,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if writable(socket) && gso(socket).is_ok() {
                    return;
                }
            }
            Err(_) => {}
        }
    }
    for datagram in t.datagrams() {
        send_one(out, datagram, t.destination);
    }
}

/// Send one datagram, from `from` if given (a wildcard listener answering from the asked
/// address). A full send buffer gets a short wait; then a failure is a loss, which the
/// retransmission timer covers.
fn send_one(out: Out<'_>, datagram: &[u8], to: SocketAddr) {
    let Out {
        socket,
        from,
        connected,
        queue,
    } = out;
    if let Some(queue) = queue {
        let full = {
            let mut queue = queue.borrow_mut();
            queue.push(datagram, to, from);
            queue.is_full()
        };
        if full {
            flush_queue(socket, queue);
        }
        return;
    }
    // Never blocking, on a lone transfer's blocking socket either.
    let flags = rustix::net::SendFlags::DONTWAIT;
    let once = || match from {
        _ if connected == Some(to) => Ok(rustix::net::send(socket, datagram, flags)?),
        Some(_) => tftp_server::udp::send_from_to(socket, datagram, to, from),
        None => Ok(rustix::net::sendto(socket, datagram, flags, &to)?),
    };
    match once() {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            if writable(socket) {
                let _ = once();
            }
        }
        // A connected socket reports an ICMP error (port unreachable, possibly forged) on
        // the next call, which this send took; the datagram itself was not sent. Once more,
        // or a lock-step transfer would wait a whole retransmission timeout.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            if let Err(e) = once() {
                tracing::debug!(%to, error = %e, "send failed");
            }
        }
        Err(e) => tracing::debug!(%to, error = %e, "send failed"),
    }
}

/// Wait up to 10 ms for room in `socket`'s send buffer.
fn writable(socket: &UdpSocket) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(socket, PollFlags::OUT)];
    let timeout = Timespec {
        tv_sec: 0,
        tv_nsec: 10_000_000,
    };
    rustix::event::poll(&mut fds, Some(&timeout)).is_ok_and(|n| n > 0)
}

/// Receive one datagram with `flags` (`DONTWAIT` but on a lone socket): its length and sender.
fn recv(
    socket: &UdpSocket,
    buf: &mut [u8],
    flags: rustix::net::RecvFlags,
) -> io::Result<(usize, SocketAddr)> {
    // The bytes written (a longer datagram is cut to `buf`, as `recv_from` cuts it).
    let (n, _, from) = rustix::net::recvfrom(socket, buf, flags)?;
    let from = from.and_then(|a| SocketAddr::try_from(a).ok());
    let from = from.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no IP sender"))?;
    Ok((n, from))
}

/// The client of session `key`.
fn peer_of(sessions: &Slab<Entry<'_>>, key: u64) -> Option<SocketAddr> {
    sessions.get(key).map(|e| e.admitted.request.peer)
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_entry_stays_small() {
        // The loop looks an entry up for every datagram, in a table of one per session: at
        // 10,000 sessions the table leaves the cache, and each line of an entry is a miss.
        // The request (both addresses, the file name, the options and limits) made it 296
        // bytes; boxed, as it is read only when the session starts and ends, the entry was
        // 160 (benches/e2e/results/2026-12-05-cache-misses.txt); with its admission permit
        // and start time in that box too, 88: with its key, one bucket of the table is 96.
        let size = std::mem::size_of::<Entry<'static>>();
        assert!(size <= 88, "a session entry is {size} bytes");
    }

    #[test]
    fn a_sessions_data_is_the_size_of_a_file_source() {
        // Every running session keeps its `Data`. A file (most sessions) needs 56 bytes of it;
        // a handler's reader or writer took 112 and 104, which every session then carried
        // (56 bytes a session more at the peak of 1,000 clients); they are boxed.
        let size = std::mem::size_of::<crate::data::Data>();
        assert!(size <= 56, "a session's data is {size} bytes");
    }

    #[test]
    fn what_a_drain_reads_besides_the_session_comes_first() {
        // Three cache lines at the start of the box, which the loop reads for a batch's
        // sessions before handling any; after the session, they were a miss a DATA.
        let session = std::mem::offset_of!(Running<'static>, session);
        assert!(session <= 192, "the session starts at byte {session}");
    }

    #[test]
    fn routes_go_to_the_latest_session_of_a_peer_and_leave_with_it() {
        let mut routes = Routes::default();
        let (a, b): (SocketAddr, SocketAddr) = (
            "198.18.0.7:1024".parse().unwrap(),
            "[2001:db8::7]:1024".parse().unwrap(),
        );
        assert_eq!(routes.get(a), None);
        routes.insert(a, 1);
        routes.insert(b, 2);
        assert_eq!((routes.get(a), routes.get(b)), (Some(1), Some(2)));
        assert_eq!(routes.find(routes.hash(a), a), Some(1));
        // A new request from the same port: its session replaces the old one's route.
        routes.insert(a, 3);
        assert_eq!(routes.get(a), Some(3));
        // The old session's end leaves the new route alone.
        assert!(!routes.remove(a, 1));
        assert_eq!(routes.get(a), Some(3));
        assert!(routes.remove(a, 3));
        assert_eq!(routes.get(a), None);
        // Another port of the same address is another peer.
        assert_eq!(routes.get("198.18.0.7:1025".parse().unwrap()), None);
        assert!(routes.remove(b, 2));
        assert!(routes.is_empty());
    }

    #[test]
    fn a_new_request_finds_its_ports_session_by_address() {
        // Sessions as the loop's slab holds them: key i is the session of `clients[i]`.
        let clients: Vec<SocketAddr> = (0..2_000u16)
            .map(|i| {
                let (hi, lo) = (i / 200, i % 200);
                format!("198.18.{hi}.{lo}:{}", 1024 + i).parse().unwrap()
            })
            .chain(["[2001:db8::7]:1024".parse().unwrap()])
            .collect();
        let peer_of = |k: u64| clients.get(k as usize).copied();
        let mut peers = Peers::default();
        for (key, &peer) in clients.iter().enumerate().take(1_000) {
            peers.insert(peer, key as u64, peer_of);
        }
        // Grown to a thousand entries (every growth rehashes by the sessions' addresses).
        for (key, &peer) in clients.iter().enumerate().take(1_000) {
            assert_eq!(peers.take(peer, peer_of), Some(key as u64), "{peer}");
            assert_eq!(peers.take(peer, peer_of), None);
            peers.insert(peer, key as u64, peer_of);
        }
        // A thousand ports cost their keys and the table's control bytes, not their
        // addresses: a `HashMap<SocketAddr, u64>` took 84 kB.
        let size = peers.table.allocation_size();
        assert!(size <= 20_000, "{size} bytes for 1,000 peers");
        // Addresses compare whole, as `SocketAddr`s (as the map's keys did): another flow
        // label is another peer.
        let v6 = clients[2_000];
        peers.insert(v6, 2_000, peer_of);
        let SocketAddr::V6(mut labelled) = v6 else {
            unreachable!()
        };
        labelled.set_flowinfo(7);
        assert_eq!(peers.take(SocketAddr::V6(labelled), peer_of), None);
        // A session that ends after a newer one took its port leaves the newer one's entry.
        peers.forget(clients[5], 1_999);
        assert_eq!(peers.take(clients[5], peer_of), Some(5));
        // Its own end takes its entry out, found by its key alone (its entry is gone by then).
        peers.forget(clients[6], 6);
        assert_eq!(peers.take(clients[6], peer_of), None);
        // Another port of the same address is another peer.
        assert_eq!(
            peers.take("198.18.0.7:1025".parse().unwrap(), peer_of),
            None
        );
        assert_eq!(peers.take(v6, peer_of), Some(2_000));
    }
}
