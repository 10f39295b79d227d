//! An impairment proxy for TFTP on loopback: seeded loss, duplication, reordering and delay,
//! each direction on its own, between any client and any server.
//!
//! TFTP switches ports (RFC 1350 §4: the server answers a request from a new transfer port,
//! and the client sends everything else there), so the proxy mirrors the switch. The client
//! sends its request to the proxy's front port; the proxy relays it to the server from an
//! upstream socket of that client's own. For each server transfer port that answers there, the
//! proxy answers the client from a distinct proxy port, which the client then locks onto, and
//! relays what the client sends to that port back to the right server port. Answers from the
//! server's listening port itself (single-port servers) come from the front port.
//!
//! ```text
//! client c ──RRQ──▶ front ─────────────── upstream(c) ──RRQ──▶ server:69
//! client c ◀─DATA── proxy port P(c,T) ◀── upstream(c) ◀─DATA── server:T
//! client c ──ACK──▶ proxy port P(c,T) ─── upstream(c) ──ACK──▶ server:T
//! ```
//!
//! What happens to each datagram is decided by [`Shaper`], the sans-IO part: a seeded
//! generator per direction draws the same four numbers for every datagram, so the fate of the
//! n-th datagram in a direction depends only on the seed and n, never on timing. [`Proxy`] is
//! the I/O shell around it: std sockets, one reader thread per socket, one thread that sends
//! delayed datagrams when they are due. It depends on nothing outside std, so tests of any
//! crate can include this file (`#[path = ...] mod netem;`). With `NETEM_TRACE` set in the
//! environment, every datagram's fate is printed to stderr.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! # mod netem { pub use tftp_conformance::netem::*; }
//! use netem::{Impairment, Link, Proxy};
//!
//! let server = "127.0.0.1:6969".parse().unwrap();
//! let proxy = Proxy::start(server, Link::symmetric(Impairment::loss(0.01), 1))?;
//! // curl tftp://{proxy.addr()}/file ...
//! let stats = proxy.stats();
//! println!("dropped {} to the client", stats.to_client.dropped);
//! # Ok(()) }
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What happens to the datagrams of one direction. Probabilities are in `0.0..=1.0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Probability that a datagram that was not dropped is sent twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back by `reorder_delay`, so that later ones
    /// overtake it.
    pub reorder: f64,
    /// How long a reordered datagram is held back (on top of `delay`).
    pub reorder_delay: Duration,
    /// Added to every datagram.
    pub delay: Duration,
    /// A uniformly drawn extra delay in `0..jitter` (datagrams may overtake each other, as
    /// with `tc netem delay D J`).
    pub jitter: Duration,
}

impl Impairment {
    /// A perfect link.
    pub const NONE: Impairment = Impairment {
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        reorder_delay: Duration::from_millis(5),
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
    };

    /// Only loss, with probability `p`.
    pub fn loss(p: f64) -> Self {
        Impairment {
            loss: p,
            ..Impairment::NONE
        }
    }
}

impl Default for Impairment {
    fn default() -> Self {
        Impairment::NONE
    }
}

/// A direction through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server.
    ToServer,
    /// Server to client.
    ToClient,
}

/// A scripted fate, decided before the random impairment: `true` drops the datagram (it
/// still counts as received and dropped, and still consumes its random draws). It may keep
/// state, e.g. to drop only the first OACK.
pub type Filter = Arc<dyn Fn(Direction, &[u8]) -> bool + Send + Sync>;

/// Both directions of the link, and the seed of their generators.
#[derive(Clone)]
pub struct Link {
    /// Client to server.
    pub to_server: Impairment,
    /// Server to client.
    pub to_client: Impairment,
    /// Seeds both directions' generators (each gets a different stream).
    pub seed: u64,
    /// A client address that has sent nothing and received nothing for this long is
    /// forgotten, with its sockets.
    pub idle_timeout: Duration,
    /// Datagrams to drop whatever the dice say.
    pub filter: Option<Filter>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("to_server", &self.to_server)
            .field("to_client", &self.to_client)
            .field("seed", &self.seed)
            .field("idle_timeout", &self.idle_timeout)
            .field("filter", &self.filter.as_ref().map(|_| "Filter"))
            .finish()
    }
}

impl Link {
    /// The same impairment both ways.
    pub fn symmetric(impairment: Impairment, seed: u64) -> Self {
        Link {
            to_server: impairment,
            to_client: impairment,
            seed,
            idle_timeout: Duration::from_secs(60),
            filter: None,
        }
    }

    /// The same link, with datagrams for which `drop` returns `true` dropped.
    pub fn with_filter(
        mut self,
        drop: impl Fn(Direction, &[u8]) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.filter = Some(Arc::new(drop));
        self
    }
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams that reached the proxy.
    pub received: u64,
    /// Datagrams the proxy sent on (duplicates included).
    pub sent: u64,
    /// Datagrams dropped.
    pub dropped: u64,
    /// Datagrams sent twice.
    pub duplicated: u64,
    /// Datagrams held back so that later ones could overtake them.
    pub reordered: u64,
}

/// Counters of the whole proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Client to server.
    pub to_server: Counters,
    /// Server to client.
    pub to_client: Counters,
    /// Client addresses seen at the front port.
    pub clients: u64,
    /// Server transfer ports mirrored by a proxy port.
    pub transfer_ports: u64,
    /// Datagrams at a proxy port from someone other than its client (not relayed).
    pub strays: u64,
}

/// SplitMix64: tiny, seedable, good enough to decide the fate of datagrams.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0.0..1.0`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The fate of the datagrams of one direction: the sans-IO core of the proxy.
///
/// ```
/// # mod netem { pub use tftp_conformance::netem::*; }
/// use std::time::Instant;
/// use netem::{Impairment, Shaper};
///
/// let mut shaper = Shaper::new(Impairment::loss(0.5), 7);
/// let now = Instant::now();
/// let delivered: usize = (0..1000).map(|_| shaper.shape(now).count()).sum();
/// assert!((400..600).contains(&delivered));
/// assert_eq!(shaper.counters().dropped, 1000 - delivered as u64);
/// ```
#[derive(Debug, Clone)]
pub struct Shaper {
    impairment: Impairment,
    rng: Rng,
    counters: Counters,
}

impl Shaper {
    /// A shaper whose decisions follow from `seed` alone.
    pub fn new(impairment: Impairment, seed: u64) -> Self {
        let mut rng = Rng(seed);
        // Decorrelate nearby seeds.
        rng.next_u64();
        Shaper {
            impairment,
            rng,
            counters: Counters::default(),
        }
    }

    /// A datagram arrives at `now`: when to send each copy of it (none if it is dropped, two
    /// if it is duplicated).
    pub fn shape(&mut self, now: Instant) -> impl Iterator<Item = Instant> + use<> {
        self.shape_unless_dropped(now, false)
    }

    /// [`Shaper::shape`], with the datagram dropped anyway if `drop` (a scripted loss).
    pub fn shape_unless_dropped(
        &mut self,
        now: Instant,
        drop: bool,
    ) -> impl Iterator<Item = Instant> + use<> {
        let imp = self.impairment;
        // Always four draws, so the n-th datagram's fate depends only on the seed and n.
        let (lost, dup, reorder, jitter) = (
            self.rng.unit() < imp.loss,
            self.rng.unit() < imp.duplicate,
            self.rng.unit() < imp.reorder,
            self.rng.unit(),
        );
        self.counters.received += 1;
        if lost || drop {
            self.counters.dropped += 1;
            return [None, None].into_iter().flatten();
        }
        let mut at = now + imp.delay + imp.jitter.mul_f64(jitter);
        if reorder {
            self.counters.reordered += 1;
            at += imp.reorder_delay;
        }
        let copies = if dup {
            self.counters.duplicated += 1;
            2
        } else {
            1
        };
        self.counters.sent += copies;
        [Some(at), (copies == 2).then_some(at)]
            .into_iter()
            .flatten()
    }

    /// What happened so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }
}

/// A socket of the proxy; its reader thread stops when it is closed.
#[derive(Debug)]
struct Port {
    socket: UdpSocket,
    closed: AtomicBool,
}

/// What a socket is for, which says where its datagrams go.
#[derive(Debug, Clone, Copy)]
enum Role {
    /// The front port: requests from any client.
    Front,
    /// The upstream socket of client `c`: answers from the server.
    Upstream(SocketAddr),
    /// The proxy port mirroring server transfer port `server` for client `client`.
    Transfer {
        client: SocketAddr,
        server: SocketAddr,
    },
}

#[derive(Debug)]
struct Flow {
    upstream: Arc<Port>,
    /// Server transfer port → the proxy port that mirrors it.
    transfers: HashMap<SocketAddr, Arc<Port>>,
    last_active: Instant,
}

#[derive(Debug)]
struct Scheduled {
    at: Instant,
    seq: u64,
    port: Arc<Port>,
    to: SocketAddr,
    bytes: Vec<u8>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Debug)]
struct State {
    to_server: Shaper,
    to_client: Shaper,
    flows: HashMap<SocketAddr, Flow>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    stats: Stats,
    readers: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    server: SocketAddr,
    /// `NETEM_TRACE` is set: print every datagram's fate to stderr, with times from here.
    trace: Option<Instant>,
    filter: Option<FilterFn>,
    front: Arc<Port>,
    idle_timeout: Duration,
    state: Mutex<State>,
    due: Condvar,
    stop: AtomicBool,
}

/// A [`Filter`] that can sit in a `Debug` struct.
struct FilterFn(Filter);

impl std::fmt::Debug for FilterFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Filter")
    }
}

/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// The impairment proxy: a front port for clients, relaying to one server through a
/// [`Link`]. Dropping it stops every thread and closes every socket.
#[derive(Debug)]
pub struct Proxy {
    shared: Arc<Shared>,
    scheduler: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy for `server` on a free port of the loopback address of its family.
    pub fn start(server: SocketAddr, link: Link) -> io::Result<Proxy> {
        Proxy::bind(SocketAddr::new(loopback(server), 0), server, link)
    }

    /// A proxy for `server` whose front port is `listen`.
    pub fn bind(listen: SocketAddr, server: SocketAddr, link: Link) -> io::Result<Proxy> {
        let front = open_port(listen)?;
        let shared = Arc::new(Shared {
            server,
            trace: std::env::var_os("NETEM_TRACE").map(|_| Instant::now()),
            filter: link.filter.clone().map(FilterFn),
            front: Arc::clone(&front),
            idle_timeout: link.idle_timeout,
            state: Mutex::new(State {
                to_server: Shaper::new(link.to_server, link.seed),
                to_client: Shaper::new(link.to_client, link.seed ^ 0x5EED_0FC1_1E47),
                flows: HashMap::new(),
                queue: BinaryHeap::new(),
                seq: 0,
                stats: Stats::default(),
                readers: Vec::new(),
            }),
            due: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let reader = spawn_reader(&shared, front, Role::Front)?;
        lock(&shared.state).readers.push(reader);
        let s = Arc::clone(&shared);
        let scheduler = std::thread::Builder::new()
            .name("netem-scheduler".into())
            .spawn(move || run_scheduler(&s))?;
        Ok(Proxy {
            shared,
            scheduler: Some(scheduler),
        })
    }

    /// The front port: where clients send their requests.
    pub fn addr(&self) -> SocketAddr {
        self.shared
            .front
            .socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(loopback(self.shared.server), 0))
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let state = lock(&self.shared.state);
        Stats {
            to_server: state.to_server.counters(),
            to_client: state.to_client.counters(),
            ..state.stats
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.due.notify_all();
        if let Some(s) = self.scheduler.take() {
            let _ = s.join();
        }
        // A reader may still be creating a socket (and its reader) as the flag is set.
        loop {
            let readers = std::mem::take(&mut lock(&self.shared.state).readers);
            if readers.is_empty() {
                break;
            }
            for r in readers {
                let _ = r.join();
            }
        }
    }
}

fn loopback(of: SocketAddr) -> IpAddr {
    if of.is_ipv6() {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn open_port(addr: SocketAddr) -> io::Result<Arc<Port>> {
    let socket = UdpSocket::bind(addr)?;
    socket.set_read_timeout(Some(POLL))?;
    Ok(Arc::new(Port {
        socket,
        closed: AtomicBool::new(false),
    }))
}

fn spawn_reader(shared: &Arc<Shared>, port: Arc<Port>, role: Role) -> io::Result<JoinHandle<()>> {
    let shared = Arc::clone(shared);
    std::thread::Builder::new()
        .name("netem-reader".into())
        .spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !shared.stop.load(Ordering::Relaxed) && !port.closed.load(Ordering::Relaxed) {
                match port.socket.recv_from(&mut buf) {
                    Ok((n, from)) => relay(&shared, role, from, &buf[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    // ICMP errors surfacing on the socket, and the like: keep going.
                    Err(_) => {}
                }
            }
        })
}

/// Route one datagram that arrived at a socket of `role` from `from`, through the shaper of
/// its direction.
fn relay(shared: &Arc<Shared>, role: Role, from: SocketAddr, bytes: &[u8]) {
    let now = Instant::now();
    let mut guard = lock(&shared.state);
    let state = &mut *guard;
    // (the socket to send from, the destination, towards the server?)
    let route = match role {
        Role::Front => {
            flow(shared, state, from, now).map(|f| (Arc::clone(&f.upstream), shared.server, true))
        }
        Role::Upstream(client) if from == shared.server => {
            // A single-port server answers from its listening port: so does the proxy.
            touch(state, client, now);
            Some((Arc::clone(&shared.front), client, false))
        }
        Role::Upstream(client) => {
            transfer_port(shared, state, client, from, now).map(|p| (p, client, false))
        }
        Role::Transfer { client, server } if from == client => {
            touch(state, client, now);
            state
                .flows
                .get(&client)
                .map(|f| (Arc::clone(&f.upstream), server, true))
        }
        Role::Transfer { .. } => {
            state.stats.strays += 1;
            None
        }
    };
    let Some((port, to, to_server)) = route else {
        return;
    };
    let direction = if to_server {
        Direction::ToServer
    } else {
        Direction::ToClient
    };
    let forced = shared
        .filter
        .as_ref()
        .is_some_and(|f| (f.0)(direction, bytes));
    let shaper = if to_server {
        &mut state.to_server
    } else {
        &mut state.to_client
    };
    let mut now_copies = 0;
    let mut woke = false;
    let mut fate = String::new();
    for at in shaper.shape_unless_dropped(now, forced) {
        if shared.trace.is_some() {
            fate += &format!(" +{:?}", at - now);
        }
        // Due now and nothing due earlier is waiting: send at once, without a thread hop.
        if at <= now && state.queue.peek().is_none_or(|Reverse(s)| s.at > at) {
            now_copies += 1;
        } else {
            state.seq += 1;
            state.queue.push(Reverse(Scheduled {
                at,
                seq: state.seq,
                port: Arc::clone(&port),
                to,
                bytes: bytes.to_vec(),
            }));
            woke = true;
        }
    }
    if woke {
        shared.due.notify_one();
    }
    drop(guard);
    if let Some(start) = shared.trace {
        let dir = if to_server { "->" } else { "<-" };
        let fate = if fate.is_empty() { " dropped" } else { &fate };
        eprintln!(
            "netem {:>10.3} ms {from} {dir} {to} {}:{fate}",
            (now - start).as_secs_f64() * 1000.0,
            describe(bytes)
        );
    }
    for _ in 0..now_copies {
        let _ = port.socket.send_to(bytes, to);
    }
}

/// A TFTP datagram in a few words, for the trace.
fn describe(bytes: &[u8]) -> String {
    let word = |i: usize| {
        bytes
            .get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    match (word(0), word(2)) {
        (Some(1), _) => "RRQ".into(),
        (Some(2), _) => "WRQ".into(),
        (Some(3), Some(block)) => format!("DATA {block} ({} bytes)", bytes.len() - 4),
        (Some(4), Some(block)) => format!("ACK {block}"),
        (Some(5), Some(code)) => format!("ERROR {code}"),
        (Some(6), _) => "OACK".into(),
        _ => format!("{} bytes", bytes.len()),
    }
}

fn touch(state: &mut State, client: SocketAddr, now: Instant) {
    if let Some(f) = state.flows.get_mut(&client) {
        f.last_active = now;
    }
}

/// The flow of `client`, created (with its upstream socket) on its first request.
fn flow<'a>(
    shared: &Arc<Shared>,
    state: &'a mut State,
    client: SocketAddr,
    now: Instant,
) -> Option<&'a mut Flow> {
    if !state.flows.contains_key(&client) {
        let upstream = open_port(SocketAddr::new(loopback(shared.server), 0)).ok()?;
        let reader = spawn_reader(shared, Arc::clone(&upstream), Role::Upstream(client)).ok()?;
        state.readers.push(reader);
        state.stats.clients += 1;
        state.flows.insert(
            client,
            Flow {
                upstream,
                transfers: HashMap::new(),
                last_active: now,
            },
        );
    }
    let f = state.flows.get_mut(&client)?;
    f.last_active = now;
    Some(f)
}

/// The proxy port mirroring server transfer port `server` for `client`, created when the
/// server first answers from it.
fn transfer_port(
    shared: &Arc<Shared>,
    state: &mut State,
    client: SocketAddr,
    server: SocketAddr,
    now: Instant,
) -> Option<Arc<Port>> {
    let f = state.flows.get_mut(&client)?;
    f.last_active = now;
    if let Some(p) = f.transfers.get(&server) {
        return Some(Arc::clone(p));
    }
    let ip = shared
        .front
        .socket
        .local_addr()
        .map(|a| a.ip())
        .unwrap_or_else(|_| loopback(server));
    let port = open_port(SocketAddr::new(ip, 0)).ok()?;
    let reader = spawn_reader(shared, Arc::clone(&port), Role::Transfer { client, server }).ok()?;
    f.transfers.insert(server, Arc::clone(&port));
    state.readers.push(reader);
    state.stats.transfer_ports += 1;
    Some(port)
}

/// Send delayed datagrams when they are due; forget idle clients.
fn run_scheduler(shared: &Shared) {
    let mut state = lock(&shared.state);
    let mut last_reap = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let mut due = Vec::new();
        while state.queue.peek().is_some_and(|Reverse(s)| s.at <= now) {
            if let Some(Reverse(s)) = state.queue.pop() {
                due.push(s);
            }
        }
        if now.duration_since(last_reap) >= Duration::from_secs(1) {
            last_reap = now;
            reap(&mut state, now, shared.idle_timeout);
        }
        if !due.is_empty() {
            drop(state);
            for s in due {
                let _ = s.port.socket.send_to(&s.bytes, s.to);
            }
            state = lock(&shared.state);
            continue;
        }
        let wait = state
            .queue
            .peek()
            .map_or(POLL, |Reverse(s)| s.at.saturating_duration_since(now))
            .min(POLL);
        state = shared
            .due
            .wait_timeout(state, wait)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

fn reap(state: &mut State, now: Instant, idle: Duration) {
    state.flows.retain(|_, f| {
        let keep = now.duration_since(f.last_active) < idle;
        if !keep {
            f.upstream.closed.store(true, Ordering::Relaxed);
            for p in f.transfers.values() {
                p.closed.store(true, Ordering::Relaxed);
            }
        }
        keep
    });
    state.readers.retain(|r| !r.is_finished());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_fate_of_each_datagram_depends_on_the_seed_only() {
        let imp = Impairment {
            loss: 0.1,
            duplicate: 0.05,
            reorder: 0.05,
            jitter: Duration::from_millis(3),
            ..Impairment::NONE
        };
        let now = Instant::now();
        let run = |seed| {
            let mut s = Shaper::new(imp, seed);
            (0..10_000)
                .map(|_| s.shape(now).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        let mut s = Shaper::new(imp, 3);
        for _ in 0..100_000 {
            let _ = s.shape(now).count();
        }
        let c = s.counters();
        assert_eq!(c.received, 100_000);
        assert!((9_500..10_500).contains(&c.dropped), "{c:?}");
        assert!((4_200..4_800).contains(&c.duplicated), "{c:?}");
        assert_eq!(c.sent, c.received - c.dropped + c.duplicated);
    }

    #[test]
    fn mirrors_the_port_switch_and_counts() {
        // A tiny "server": answers each request from a new port, then echoes what arrives there.
        let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let mut buf = [0u8; 100];
            for _ in 0..2 {
                let (n, peer) = listener.recv_from(&mut buf).unwrap();
                let transfer = UdpSocket::bind("127.0.0.1:0").unwrap();
                transfer.send_to(&buf[..n], peer).unwrap();
                let (n, from) = transfer.recv_from(&mut buf).unwrap();
                assert_eq!(from, peer);
                transfer.send_to(&buf[..n], peer).unwrap();
            }
        });
        let proxy = Proxy::start(server, Link::symmetric(Impairment::NONE, 1)).unwrap();
        let mut ports = Vec::new();
        for _ in 0..2 {
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            client.send_to(b"hello", proxy.addr()).unwrap();
            let mut buf = [0u8; 100];
            let (n, tid) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"hello");
            assert_ne!(tid, proxy.addr(), "answered from a new port");
            client.send_to(b"again", tid).unwrap();
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"again"[..], tid));
            ports.push(tid);
        }
        assert_ne!(ports[0], ports[1]);
        echo.join().unwrap();
        let s = proxy.stats();
        assert_eq!((s.clients, s.transfer_ports), (2, 2));
        assert_eq!((s.to_server.sent, s.to_client.sent), (4, 4));
    }
}
