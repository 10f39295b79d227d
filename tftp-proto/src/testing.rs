//! Deterministic test harness (feature `testing`): a client and a server session joined by a
//! seeded, lossy in-memory link, on a virtual clock that jumps to the next event.
//!
//! Used by this crate's scenario tests, the fuzz targets and the benchmarks; useful for anyone
//! testing their own policy on top of the sessions.
//!
//! ```
//! use tftp_proto::testing::{LinkConfig, Pair, PairConfig};
//! use tftp_proto::OptionValues;
//!
//! let file: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
//! let mut pair = Pair::get(PairConfig {
//!     file: file.clone(),
//!     asked: OptionValues { blksize: Some(1468), windowsize: Some(8), ..Default::default() },
//!     link: LinkConfig { loss: 0.05, seed: 7, ..LinkConfig::default() },
//!     ..PairConfig::default()
//! });
//! let report = pair.run();
//! assert_eq!(report.received, file);
//! assert!(report.client.is_success() && report.server.unwrap().is_success());
//! ```

use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::client::ClientSession;
use crate::config::Config;
use crate::options::OptionValues;
use crate::packet::Mode;
use crate::server::{IncomingRequest, ServerSession};
use crate::session::{Event, Output};
use crate::stats::SessionStats;

/// A small, fast, seeded generator (xorshift64*), so runs are reproducible without a
/// dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// Fill `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// Impairments of one direction of the link.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back by an extra `delay` (and so reordered).
    pub reorder: f64,
    /// One-way delay.
    pub delay: Duration,
    /// Seed of the impairment generator.
    pub seed: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            delay: Duration::from_micros(100),
            seed: 1,
        }
    }
}

/// Which way a datagram travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Client to server.
    ToServer,
    /// Server to client.
    ToClient,
}

/// What the scenario's filter decides for one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let the link decide (random impairments).
    Pass,
    /// Drop it.
    Drop,
}

/// A scenario filter, called for every datagram with its way, ordinal number in that way
/// (0-based) and bytes.
pub type Filter = Box<dyn FnMut(Way, u64, &[u8]) -> Verdict>;

/// Setup of a [`Pair`].
pub struct PairConfig {
    /// The file on the sending side.
    pub file: Vec<u8>,
    /// Options the client asks for.
    pub asked: OptionValues,
    /// Transfer mode.
    pub mode: Mode,
    /// Client configuration.
    pub client: Config,
    /// Server configuration.
    pub server: Config,
    /// Impairments (the two directions use derived seeds).
    pub link: LinkConfig,
    /// Whether the server reports the file size (for `tsize`).
    pub announce_size: bool,
    /// Whether the sending side's source is seekable (`Session::set_source_seekable`): filled
    /// from each [`crate::Fill::offset`], as a file read with `pread` is.
    pub seekable_source: bool,
    /// A scenario filter.
    pub filter: Option<Filter>,
    /// Give up (panic-free: the report says so) after this much virtual time.
    pub time_limit: Duration,
}

impl Default for PairConfig {
    fn default() -> Self {
        PairConfig {
            file: Vec::new(),
            asked: OptionValues::default(),
            mode: Mode::Octet,
            client: Config::default(),
            server: Config::default(),
            link: LinkConfig::default(),
            announce_size: true,
            seekable_source: false,
            filter: None,
            time_limit: Duration::from_secs(3600),
        }
    }
}

impl core::fmt::Debug for PairConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PairConfig")
            .field("file_len", &self.file.len())
            .field("asked", &self.asked)
            .field("mode", &self.mode)
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

/// What happened in a [`Pair::run`].
#[derive(Debug, Clone)]
pub struct Report {
    /// Bytes that ended up on the receiving side.
    pub received: Vec<u8>,
    /// The client's final statistics.
    pub client: SessionStats,
    /// The server's final statistics (`None` if no request ever arrived).
    pub server: Option<SessionStats>,
    /// Virtual time from start until both sessions closed.
    pub elapsed: Duration,
    /// Datagrams put on the link, per way (before loss).
    pub sent_to_server: u64,
    /// Datagrams put on the link towards the client.
    pub sent_to_client: u64,
    /// The run hit [`PairConfig::time_limit`] with a session still open.
    pub timed_out: bool,
}

#[derive(Debug, PartialEq, Eq)]
struct InFlight {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        // Min-heap on (time, sequence).
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A client session and a server session on a simulated link.
pub struct Pair {
    get: bool,
    file: Vec<u8>,
    source_pos: usize,
    received: Vec<u8>,
    client: ClientSession,
    client_stats: Option<SessionStats>,
    server: Option<ServerSession>,
    server_stats: Option<SessionStats>,
    server_config: Config,
    announce_size: bool,
    seekable_source: bool,
    now: Instant,
    start: Instant,
    link: LinkConfig,
    rng_to_server: Rng,
    rng_to_client: Rng,
    in_flight: BinaryHeap<InFlight>,
    seq: u64,
    counts: [u64; 2],
    filter: Option<Filter>,
    time_limit: Duration,
}

impl core::fmt::Debug for Pair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pair")
            .field("get", &self.get)
            .field("now", &self.now.saturating_duration_since(self.start))
            .finish_non_exhaustive()
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port))
}

/// The client's address in a [`Pair`].
pub const CLIENT_ADDR: SocketAddr = v4(192, 0, 2, 2, 40000);
/// The server's listening address in a [`Pair`].
pub const SERVER_ADDR: SocketAddr = v4(192, 0, 2, 1, 69);
/// The server session's transfer address in a [`Pair`].
pub const TRANSFER_ADDR: SocketAddr = v4(192, 0, 2, 1, 50000);

/// Fill from `file` where the session asks ([`crate::Fill::offset`]); a session whose source
/// is not seekable must always ask for what follows `pos`, the bytes given so far. Returns
/// the new position.
fn fill_from(fill: crate::Fill<'_>, file: &[u8], pos: usize, seekable: bool) -> usize {
    let at = usize::try_from(fill.offset()).unwrap_or(usize::MAX);
    assert!(
        seekable || at == pos,
        "a fill of a stream asked for offset {at} after {pos} bytes"
    );
    let rest = file.get(at..).unwrap_or(&[]);
    if rest.is_empty() {
        fill.finish();
        at
    } else {
        at + fill.write(rest)
    }
}

impl Pair {
    /// A client reading `config.file` from the server.
    pub fn get(config: PairConfig) -> Self {
        Self::new(config, true)
    }

    /// A client writing `config.file` to the server.
    pub fn put(config: PairConfig) -> Self {
        Self::new(config, false)
    }

    fn new(config: PairConfig, get: bool) -> Self {
        let now = Instant::now();
        let mut asked = config.asked;
        if !get && asked.tsize.is_some() {
            asked.tsize = Some(config.file.len() as u64);
        }
        let make = if get {
            ClientSession::get
        } else {
            ClientSession::put
        };
        #[allow(clippy::expect_used)] // a fixed file name without NUL always encodes
        let mut client = make(SERVER_ADDR, "file", config.mode, asked, &config.client, now)
            .expect("request encodes");
        client.set_source_seekable(config.seekable_source);
        Pair {
            get,
            file: config.file,
            source_pos: 0,
            received: Vec::new(),
            client,
            client_stats: None,
            server: None,
            server_stats: None,
            server_config: config.server,
            announce_size: config.announce_size,
            seekable_source: config.seekable_source,
            now,
            start: now,
            rng_to_server: Rng::new(config.link.seed),
            rng_to_client: Rng::new(config.link.seed ^ 0xA5A5_5A5A),
            link: config.link,
            in_flight: BinaryHeap::new(),
            seq: 0,
            counts: [0; 2],
            filter: config.filter,
            time_limit: config.time_limit,
        }
    }

    /// The virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The client session.
    pub fn client(&mut self) -> &mut ClientSession {
        &mut self.client
    }

    /// The server session, once the request has arrived.
    pub fn server(&mut self) -> Option<&mut ServerSession> {
        self.server.as_mut()
    }

    /// Put a datagram from `from` on the link towards `to`, as if a third party sent it.
    pub fn inject(&mut self, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        self.seq += 1;
        self.in_flight.push(InFlight {
            at: self.now,
            seq: self.seq,
            from,
            to,
            bytes: bytes.to_vec(),
        });
    }

    fn send(&mut self, way: Way, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        let n = &mut self.counts[way as usize];
        let ordinal = *n;
        *n += 1;
        if let Some(filter) = &mut self.filter {
            if filter(way, ordinal, bytes) == Verdict::Drop {
                return;
            }
        }
        let rng = match way {
            Way::ToServer => &mut self.rng_to_server,
            Way::ToClient => &mut self.rng_to_client,
        };
        if rng.chance(self.link.loss) {
            return;
        }
        let copies = if rng.chance(self.link.duplicate) {
            2
        } else {
            1
        };
        let extra = if rng.chance(self.link.reorder) {
            self.link.delay * 2 + Duration::from_micros(50)
        } else {
            Duration::ZERO
        };
        for _ in 0..copies {
            self.seq += 1;
            self.in_flight.push(InFlight {
                at: self.now + self.link.delay + extra,
                seq: self.seq,
                from,
                to,
                bytes: bytes.to_vec(),
            });
        }
    }

    /// Drain both sessions' outputs. Returns true if anything happened.
    pub fn drive(&mut self) -> bool {
        let mut busy = false;
        let mut out = Vec::new();
        loop {
            match self.client.poll_output(self.now) {
                Output::Transmit(t) => {
                    out.extend(t.datagrams().map(|d| (t.destination, d.to_vec())))
                }
                Output::Store(mut store) => {
                    self.received.extend_from_slice(store.data());
                    store.stored();
                }
                Output::Fill(fill) => {
                    self.source_pos =
                        fill_from(fill, &self.file, self.source_pos, self.seekable_source)
                }
                Output::Event(Event::Finished(stats)) => self.client_stats = Some(stats),
                Output::Event(_) => {}
                Output::Wait(_) | Output::Closed => break,
            }
            busy = true;
        }
        for (to, bytes) in out.drain(..) {
            self.send(Way::ToServer, CLIENT_ADDR, to, &bytes);
        }
        if let Some(server) = self.server.as_mut() {
            loop {
                match server.poll_output(self.now) {
                    Output::Transmit(t) => {
                        out.extend(t.datagrams().map(|d| (t.destination, d.to_vec())))
                    }
                    Output::Store(mut store) => {
                        self.received.extend_from_slice(store.data());
                        store.stored();
                    }
                    Output::Fill(fill) => {
                        self.source_pos =
                            fill_from(fill, &self.file, self.source_pos, self.seekable_source);
                    }
                    Output::Event(Event::Finished(stats)) => self.server_stats = Some(stats),
                    Output::Event(_) => {}
                    Output::Wait(_) | Output::Closed => break,
                }
                busy = true;
            }
        }
        for (to, bytes) in out {
            self.send(Way::ToClient, TRANSFER_ADDR, to, &bytes);
        }
        busy
    }

    fn deliver(&mut self, d: InFlight) {
        if d.to == CLIENT_ADDR {
            self.client.handle_datagram(self.now, d.from, &d.bytes);
        } else if d.to == SERVER_ADDR {
            if self.server.is_none() {
                if let Ok(request) = IncomingRequest::parse(d.from, &d.bytes) {
                    let size = self.announce_size.then_some(self.file.len() as u64);
                    let mut server =
                        ServerSession::new(&request, &self.server_config, size, self.now);
                    server.set_source_seekable(self.seekable_source);
                    self.server = Some(server);
                }
            }
        } else if d.to == TRANSFER_ADDR {
            if let Some(server) = self.server.as_mut() {
                server.handle_datagram(self.now, d.from, &d.bytes);
            }
        }
        // Anything else is addressed to a host that is not simulated: it vanishes.
    }

    /// Advance to the next event (a delivery or a deadline). Returns false when nothing is
    /// left to happen.
    pub fn step(&mut self) -> bool {
        self.drive();
        let next_delivery = self.in_flight.peek().map(|d| d.at);
        let deadlines = [
            self.client.poll_timeout(),
            self.server.as_ref().and_then(|s| s.poll_timeout()),
        ];
        let next = [next_delivery, deadlines[0], deadlines[1]]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else {
            return false;
        };
        if next > self.now {
            self.now = next;
        }
        while self.in_flight.peek().is_some_and(|d| d.at <= self.now) {
            if let Some(d) = self.in_flight.pop() {
                self.deliver(d);
            }
        }
        self.client.handle_timeout(self.now);
        if let Some(server) = self.server.as_mut() {
            server.handle_timeout(self.now);
        }
        true
    }

    /// Run until both sessions are closed and the link is empty, or the time limit.
    pub fn run(&mut self) -> Report {
        let mut timed_out = false;
        loop {
            let both_closed =
                self.client.is_closed() && self.server.as_ref().is_none_or(|s| s.is_closed());
            if both_closed && self.in_flight.is_empty() {
                break;
            }
            if self.now.saturating_duration_since(self.start) > self.time_limit {
                timed_out = true;
                break;
            }
            if !self.step() {
                break;
            }
        }
        self.drive();
        Report {
            received: core::mem::take(&mut self.received),
            client: self
                .client_stats
                .clone()
                .unwrap_or_else(|| self.client.stats().clone()),
            server: self
                .server_stats
                .clone()
                .or_else(|| self.server.as_ref().map(|s| s.stats().clone())),
            elapsed: self.now.saturating_duration_since(self.start),
            sent_to_server: self.counts[0],
            sent_to_client: self.counts[1],
            timed_out,
        }
    }

    /// Whether this pair is a get (read) or a put (write).
    pub fn is_get(&self) -> bool {
        self.get
    }
}

/// Drive a session from fuzzer bytes and check its invariants, panicking on a violation.
///
/// The input is a script: a header choosing the configuration, a request, then steps (a
/// datagram from the peer or from a stranger, time passing, the caller aborting). The
/// invariants: every datagram sent decodes, no DATA exceeds the negotiated block size,
/// `Finished` comes at most once, nothing is sent after `Closed`, and every drain ends.
pub mod fuzz {
    use super::*;
    use crate::packet::{ErrorCode, Packet};
    use crate::session::Session;
    use crate::storage::{Lending, Storage};
    use crate::{OptionLimits, Rollover};

    struct Script<'a>(&'a [u8]);

    impl<'a> Script<'a> {
        fn byte(&mut self) -> Option<u8> {
            let (&b, rest) = self.0.split_first()?;
            self.0 = rest;
            Some(b)
        }
        fn bytes(&mut self, n: usize) -> &'a [u8] {
            let n = n.min(self.0.len());
            let (a, b) = self.0.split_at(n);
            self.0 = b;
            a
        }
    }

    fn config(flags: u8) -> Config {
        Config {
            retries: u32::from(flags & 3) + 1,
            rollover: if flags & 4 != 0 {
                Rollover::ToOne
            } else {
                Rollover::ToZero
            },
            max_transfer_size: (flags & 8 != 0).then_some(3000),
            max_batch: if flags & 128 != 0 { 8 } else { 1 },
            limits: OptionLimits {
                max_blksize: if flags & 16 != 0 { 16 } else { 1468 },
                max_windowsize: if flags & 32 != 0 { 4 } else { 1 },
                timeout: if flags & 64 != 0 {
                    crate::TimeoutPolicy::Honour
                } else {
                    crate::TimeoutPolicy::Adaptive
                },
                ..OptionLimits::default()
            },
            ..Config::default()
        }
    }

    struct Checker {
        finished: bool,
        closed: bool,
        /// The source's length, and whether it is read where the session asks.
        source_len: usize,
        seekable: bool,
        /// Bytes given so far (the next offset of a stream).
        taken: usize,
    }

    impl Checker {
        fn drain<R, B: Storage>(&mut self, s: &mut Session<R, Instant, B>, now: Instant) {
            for _ in 0..100_000 {
                let blksize = usize::from(s.options().blksize);
                match s.poll_output(now) {
                    Output::Transmit(t) => {
                        assert!(!self.closed, "transmit after Closed");
                        for d in t.datagrams() {
                            match Packet::decode(d) {
                                Ok(Packet::Data { data, .. }) => assert!(data.len() <= blksize),
                                Ok(_) => {}
                                Err(e) => panic!("sent an undecodable datagram: {e}"),
                            }
                        }
                    }
                    Output::Fill(mut fill) => {
                        assert!(!fill.buf().is_empty());
                        let at = usize::try_from(fill.offset()).unwrap_or(usize::MAX);
                        assert!(self.seekable || at == self.taken, "a stream went back");
                        let left = self.source_len.saturating_sub(at);
                        if left == 0 {
                            fill.finish();
                        } else {
                            let n = fill.buf().len().min(left).min(700);
                            self.taken = self.taken.max(at + n);
                            let _ = fill.advance(n);
                        }
                    }
                    Output::Store(mut store) => {
                        let _ = store.data();
                        store.stored();
                    }
                    Output::Event(Event::Finished(_)) => {
                        assert!(!self.finished, "Finished twice");
                        self.finished = true;
                    }
                    Output::Event(_) => {}
                    Output::Wait(_) => return,
                    Output::Closed => {
                        self.closed = true;
                        assert!(s.is_closed());
                        return;
                    }
                }
            }
            panic!("poll_output did not settle");
        }
    }

    fn run<R, B: Storage>(
        mut s: Session<R, Instant, B>,
        script: &mut Script<'_>,
        mut now: Instant,
        peer: SocketAddr,
        source: usize,
        seekable: bool,
    ) {
        s.set_source_seekable(seekable);
        let stranger: SocketAddr = v4(192, 0, 2, 77, 7777);
        let mut c = Checker {
            finished: false,
            closed: false,
            source_len: source,
            seekable,
            taken: 0,
        };
        c.drain(&mut s, now);
        while let Some(op) = script.byte() {
            match op % 5 {
                0 | 1 => {
                    let len = usize::from(script.byte().unwrap_or(0)) * 3;
                    let dgram = script.bytes(len);
                    let from = if op % 5 == 0 { peer } else { stranger };
                    s.handle_datagram(now, from, dgram);
                }
                2 => {
                    if let Some(d) = s.poll_timeout() {
                        now = d;
                    }
                    s.handle_timeout(now);
                }
                3 => {
                    now += Duration::from_millis(u64::from(script.byte().unwrap_or(0)) * 7);
                    s.handle_timeout(now);
                }
                _ => {
                    // A well-formed ACK or DATA from the peer, to get deeper than random bytes.
                    let block = u16::from_be_bytes([
                        script.byte().unwrap_or(0),
                        script.byte().unwrap_or(1),
                    ]);
                    let len = usize::from(script.byte().unwrap_or(0)) * 6;
                    let mut buf = vec![0u8; 4 + len];
                    let packet = if op & 0x80 != 0 {
                        Packet::Ack { block }
                    } else {
                        Packet::Data {
                            block,
                            data: &vec![b'\r'; len],
                        }
                    };
                    if let Ok(n) = packet.encode(&mut buf) {
                        s.handle_datagram(now, peer, &buf[..n]);
                    }
                    if op == 0xff {
                        s.abort(now, ErrorCode::NOT_DEFINED, "fuzz abort");
                    }
                }
            }
            c.drain(&mut s, now);
        }
    }

    /// A server session: the script's request (RRQ or WRQ), then the steps.
    pub fn server(data: &[u8]) {
        let mut script = Script(data);
        let flags = script.byte().unwrap_or(0);
        // The high bit: a seekable source (read where the session asks).
        let len = script.byte().unwrap_or(0);
        let request = script.bytes(usize::from(len & 0x7f));
        let Ok(request) = IncomingRequest::parse(CLIENT_ADDR, request) else {
            return;
        };
        let now = Instant::now();
        let size = usize::from(flags) * 37;
        let announced = (flags & 128 != 0).then_some(size as u64);
        let seekable = len & 0x80 != 0;
        if seekable {
            // A seekable source's ring is lent, given back and taken again.
            let lent = ServerSession::with_storage(
                &request,
                &config(flags),
                announced,
                now,
                Lending::default(),
            );
            if let Ok(s) = lent {
                run(s, &mut script, now, CLIENT_ADDR, size, true);
            }
        } else {
            let s = ServerSession::new(&request, &config(flags), announced, now);
            run(s, &mut script, now, CLIENT_ADDR, size, false);
        }
    }

    /// A client session (get or put, options from the header), then the steps. The server's
    /// answers come from [`TRANSFER_ADDR`].
    pub fn client(data: &[u8]) {
        let mut script = Script(data);
        let flags = script.byte().unwrap_or(0);
        let asked = OptionValues {
            blksize: (flags & 1 != 0).then_some(16),
            windowsize: (flags & 2 != 0).then_some(3),
            tsize: (flags & 4 != 0).then_some(0),
            timeout: (flags & 8 != 0).then_some(2),
        };
        let mode = if flags & 16 != 0 {
            Mode::Netascii
        } else {
            Mode::Octet
        };
        let now = Instant::now();
        let config = config(flags >> 3);
        let s = if flags & 32 != 0 {
            ClientSession::put(SERVER_ADDR, "f", mode, asked, &config, now)
        } else {
            ClientSession::get(SERVER_ADDR, "f", mode, asked, &config, now)
        };
        if let Ok(s) = s {
            // A put's source: seekable with the same bit as a windowsize asked for.
            run(
                s,
                &mut script,
                now,
                TRANSFER_ADDR,
                usize::from(flags) * 41,
                flags & 66 == 66,
            );
        }
    }
}

/// A model of [`crate::timers::Wheel`] on whole-millisecond instants ([`crate::time::Millis`]),
/// for its property test and its fuzz target: a key is due once `now` reaches its deadline
/// (or, scheduled for a tick an earlier [`WheelModel::expired`] already passed, the next
/// tick); keys come out by tick, then in the order they were scheduled.
#[derive(Debug, Clone)]
pub struct WheelModel<K> {
    origin: u64,
    /// The first tick not yet expired.
    cursor: u64,
    /// `(tick, key)` in scheduling order; ticks count from `origin`.
    entries: Vec<(u64, K)>,
}

impl<K: Copy> WheelModel<K> {
    /// An empty model whose tick 0 is `origin`.
    pub fn new(origin: crate::time::Millis) -> Self {
        WheelModel {
            origin: origin.0,
            cursor: 0,
            entries: Vec::new(),
        }
    }

    /// Wake `key` at `at`.
    pub fn schedule(&mut self, at: crate::time::Millis, key: K) {
        let tick = at.0.saturating_sub(self.origin).max(self.cursor);
        self.entries.push((tick, key));
    }

    /// The keys due at `now`, removed: by tick, then in scheduling order.
    pub fn expired(&mut self, now: crate::time::Millis) -> Vec<K> {
        let now_tick = now.0.saturating_sub(self.origin);
        if now_tick < self.cursor {
            return Vec::new();
        }
        let mut due: Vec<(u64, K)> = self
            .entries
            .iter()
            .copied()
            .filter(|e| e.0 <= now_tick)
            .collect();
        self.entries.retain(|e| e.0 > now_tick);
        self.cursor = now_tick + 1;
        due.sort_by_key(|e| e.0); // stable: scheduling order within a tick
        due.into_iter().map(|e| e.1).collect()
    }

    /// The earliest tick with a key, as an instant (`None` past the end of time).
    pub fn next_deadline(&self) -> Option<crate::time::Millis> {
        let first = self.entries.iter().map(|e| e.0).min()?;
        self.origin.checked_add(first).map(crate::time::Millis)
    }

    /// Keys queued.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
