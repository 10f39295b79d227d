//! `tftp-loadgen`: a TFTP load client driven by `tftp-proto`.
//!
//! Runs `--clients N` concurrent GETs of one file, spread over `--threads T` threads; each
//! thread drives many sessions at once, one non-blocking UDP socket per session, in one epoll
//! loop (mio) with a binary heap of the sessions' retransmission deadlines. Data is discarded
//! but counted, the size is checked (against `--expect-size`, the `--verify` file or the
//! server's `tsize`), and with `--verify PATH` every byte is compared.
//!
//! Prints one JSON object: sessions, failures by reason, sessions/s, session-time percentiles,
//! bytes, wall time, and the load client's own CPU time (getrusage), so a report can show the
//! client was not the bottleneck. With `--server-pid` it also samples the server's process
//! tree (CPU seconds, peak RSS/PSS, processes, threads) over exactly the run.
//!
//! Every run is bounded: at most 100,000 clients and `--deadline` seconds (sessions still
//! running then are counted as failures).
//!
//! With `--bind-from` the sessions come from many client addresses (session `i` binds its
//! socket to address `i mod N`), as a network of many machines would: per-client limits,
//! address-keyed state and the server's choice of reply address are exercised, not just
//! one busy client. A session whose socket cannot be bound fails with that cause; the
//! others run.
//!
//! ```text
//! tftp-loadgen --server 127.0.0.1:6969 --file 1M.bin --clients 1000 --blksize 1468
//! tftp-loadgen --server 198.18.0.2:69 --file 1M.bin --clients 1000 \
//!     --bind-from 198.18.1.1-198.18.1.250
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;
use tftp_benches::proctree::{self, TreeSnapshot, TreeUsage};
use tftp_benches::summary::{Percentiles, percentiles};
use tftp_benches::sys::{self, CpuTime};
use tftp_proto::{ClientSession, Config, Event, Mode, OptionValues, Output, SessionStats};

/// Hard cap on `--clients`, so a typo cannot start a million sessions.
const MAX_CLIENTS: u32 = 100_000;
/// Hard cap on `--deadline`.
const MAX_DEADLINE_SECS: f64 = 3600.0;

#[derive(Parser, Debug, Clone)]
#[command(about = "TFTP load client: N concurrent GETs driven by tftp-proto, JSON report")]
struct Args {
    /// The server's listening address.
    #[arg(long, default_value = "127.0.0.1:69")]
    server: SocketAddr,
    /// Client addresses to bind the sessions' sockets to, round robin (session i gets
    /// address i mod N): an IPv4 range `198.18.1.1-198.18.1.250` or a comma-separated list
    /// (`198.18.1.1,198.18.1.2`, `2001:db8::100,2001:db8::101`). Default: the wildcard
    /// address, the kernel picks.
    #[arg(long, value_name = "RANGE|LIST", value_parser = parse_bind_from)]
    bind_from: Option<BindFrom>,
    /// The file to fetch.
    #[arg(long)]
    file: String,
    /// Concurrent sessions (at most 100,000).
    #[arg(long, default_value_t = 1)]
    clients: u32,
    /// Threads to spread the sessions over.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Ask for this blksize (RFC 2348); none: 512 without the option.
    #[arg(long)]
    blksize: Option<u16>,
    /// Ask for this windowsize (RFC 7440).
    #[arg(long)]
    windowsize: Option<u16>,
    /// Do not ask for tsize (by default `tsize 0` is asked, to check the size).
    #[arg(long)]
    no_tsize: bool,
    /// Ask for this timeout option in seconds (RFC 2349), as curl does with 6.
    #[arg(long)]
    timeout: Option<u8>,
    /// The expected size in bytes; a session that gets another size fails.
    #[arg(long)]
    expect_size: Option<u64>,
    /// Compare every received byte with this file (read into memory once).
    #[arg(long)]
    verify: Option<PathBuf>,
    /// Start the sessions evenly over this many seconds instead of all at once.
    #[arg(long, default_value_t = 0.0)]
    ramp: f64,
    /// Stop after this many seconds; unfinished sessions count as failures.
    #[arg(long, default_value_t = 60.0)]
    deadline: f64,
    /// The client's retransmission timeout before any RTT is measured, in ms.
    #[arg(long, default_value_t = 1000)]
    initial_timeout_ms: u64,
    /// Least margin of the client's adaptive retransmission timeout over its round trip,
    /// and its floor, ms (tftp-proto's default is 50; RFC 6298 TCP's floor is 1000). Under
    /// overload a low one means many retransmissions.
    #[arg(long, default_value_t = 50)]
    min_timeout_ms: u64,
    /// Ceiling of the client's retransmission timeout after backoff, ms.
    #[arg(long, default_value_t = 5000)]
    max_timeout_ms: u64,
    /// Retransmissions of one packet before a session gives up.
    #[arg(long, default_value_t = 6)]
    retries: u32,
    /// Leave each session's socket unconnected. By default it is `connect()`ed to the
    /// server's transfer port once the first answer names it, as a client on another machine
    /// costs the server nothing: on loopback the kernel delivers each DATA to the client's
    /// socket in the server's `sendmsg`, and finds an unconnected socket by walking the UDP
    /// table's address-and-port chain (every socket of both sides is in it: 30,000 at 10,000
    /// per-transfer sessions with catchers, ~5% of the server's CPU in a profile), a connected
    /// one by its four-tuple (Linux 6.13+).
    #[arg(long)]
    no_connect: bool,
    /// Receive buffer per socket in bytes (SO_RCVBUFFORCE); default: the system's.
    #[arg(long)]
    rcvbuf: Option<usize>,
    /// Sample this process tree (the server) during the run: CPU, peak RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Read the server's CPU time from this cgroup directory (needed for servers that let the
    /// kernel reap their children, like tftpd-hpa).
    #[arg(long)]
    server_cgroup: Option<PathBuf>,
    /// Interval between server samples, ms (stretched if sampling gets expensive).
    #[arg(long, default_value_t = 100)]
    sample_ms: u64,
    /// Also sample PSS (smaps_rollup): exact shared-memory accounting, but slower.
    #[arg(long)]
    pss: bool,
    /// After the run, wait up to this long for the server tree to shrink back before the
    /// final CPU sample, ms.
    #[arg(long, default_value_t = 3000)]
    settle_ms: u64,
    /// Pin the load client to these CPUs (comma-separated).
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
    /// Free-form label copied into the JSON.
    #[arg(long)]
    label: Option<String>,
    /// Also write the JSON to this file.
    #[arg(long)]
    output: Option<PathBuf>,
}

/// At most this many `--bind-from` addresses (a /16): more is a typo.
const MAX_BIND_FROM: usize = 65_536;

/// The client addresses of `--bind-from`, in order.
#[derive(Debug, Clone, PartialEq)]
struct BindFrom(Vec<IpAddr>);

impl BindFrom {
    /// The address session `i` binds to.
    fn for_session(&self, i: u32) -> IpAddr {
        self.0[i as usize % self.0.len()]
    }
}

/// `A-B` (IPv4, inclusive, A ≤ B) or `A,B,...` (either family, one family per list).
fn parse_bind_from(s: &str) -> Result<BindFrom, String> {
    let s = s.trim();
    let addrs: Vec<IpAddr> = if let Some((a, b)) = s.split_once('-') {
        let parse = |x: &str| {
            x.trim()
                .parse::<Ipv4Addr>()
                .map_err(|e| format!("`{}` in a range: {e} (ranges are IPv4 only)", x.trim()))
        };
        let (a, b) = (u32::from(parse(a)?), u32::from(parse(b)?));
        if a > b {
            return Err(format!(
                "empty range: {} > {}",
                Ipv4Addr::from(a),
                Ipv4Addr::from(b)
            ));
        }
        if (b - a) as usize >= MAX_BIND_FROM {
            return Err(format!("more than {MAX_BIND_FROM} addresses"));
        }
        (a..=b).map(|x| IpAddr::V4(Ipv4Addr::from(x))).collect()
    } else {
        s.split(',')
            .map(|x| {
                let x = x.trim();
                x.parse::<IpAddr>().map_err(|e| format!("`{x}`: {e}"))
            })
            .collect::<Result<_, _>>()?
    };
    if addrs.len() > MAX_BIND_FROM {
        return Err(format!("more than {MAX_BIND_FROM} addresses"));
    }
    if addrs.iter().any(|a| a.is_ipv4() != addrs[0].is_ipv4()) {
        return Err("IPv4 and IPv6 addresses mixed".into());
    }
    match addrs.first() {
        Some(_) => Ok(BindFrom(addrs)),
        None => Err("no address".into()),
    }
}

/// What one session came to.
#[derive(Debug, Clone)]
struct SessionResult {
    /// Seconds from the session's start to its outcome (None: unfinished at the deadline).
    secs: Option<f64>,
    finished_at: Option<Instant>,
    bytes: u64,
    failure: Option<String>,
    retransmissions: u64,
    packets_sent: u64,
    packets_received: u64,
}

#[derive(Debug, Default)]
struct ThreadReport {
    results: Vec<SessionResult>,
    send_errors: u64,
    recv_errors: u64,
    connect_errors: u64,
    first_start: Option<Instant>,
}

/// Read-only state shared by the worker threads.
#[derive(Debug)]
struct Plan {
    args: Args,
    options: OptionValues,
    config: Config,
    verify: Option<Arc<Vec<u8>>>,
    expect: Option<u64>,
    start: Instant,
    deadline: Instant,
}

#[derive(Debug)]
struct Slot {
    session: ClientSession,
    socket: UdpSocket,
    /// The deadline this slot has in the heap (the earliest, if several).
    armed: Option<Instant>,
    bytes: u64,
    mismatch_at: Option<u64>,
    finished: bool,
    /// Nothing left to connect: connected to the server's transfer port, or left
    /// unconnected for good (`--no-connect`).
    connected: bool,
}

/// The address session `i` binds to: its `--bind-from` address, or the wildcard of the
/// server's family.
fn bind_addr(args: &Args, i: u32) -> SocketAddr {
    let ip = match (&args.bind_from, args.server.ip()) {
        (Some(from), _) => from.for_session(i),
        (None, IpAddr::V4(_)) => Ipv4Addr::UNSPECIFIED.into(),
        (None, IpAddr::V6(_)) => Ipv6Addr::UNSPECIFIED.into(),
    };
    SocketAddr::new(ip, 0)
}

fn failure_of(plan: &Plan, stats: &SessionStats, slot: &Slot) -> Option<String> {
    if let Some(e) = stats.error() {
        return Some(e.to_string());
    }
    if let Some(off) = slot.mismatch_at {
        return Some(format!(
            "content differs from --verify file at offset {off}"
        ));
    }
    let expected = plan.expect.or(stats.options.tsize);
    match expected {
        Some(n) if n != slot.bytes => Some(format!("size mismatch: expected {n} bytes")),
        _ => None,
    }
}

/// Drain a session's output. Returns true when the session is over (Closed).
fn drive(
    plan: &Plan,
    slot: &mut Slot,
    token: usize,
    now: Instant,
    heap: &mut BinaryHeap<Reverse<(Instant, usize)>>,
    report: &mut ThreadReport,
) -> bool {
    loop {
        match slot.session.poll_output(now) {
            Output::Transmit(t) => {
                if slot.socket.send_to(t.contents, t.destination).is_err() {
                    // Seen by the protocol as a lost datagram; it retransmits.
                    report.send_errors += 1;
                }
            }
            Output::Store(mut block) => {
                let data = block.data();
                if let Some(v) = &plan.verify {
                    let off = slot.bytes as usize;
                    let same = v.get(off..off + data.len()) == Some(data);
                    if !same && slot.mismatch_at.is_none() {
                        slot.mismatch_at = Some(slot.bytes);
                    }
                }
                slot.bytes += data.len() as u64;
                block.stored();
            }
            Output::Fill(fill) => fill.finish(),
            Output::Event(Event::Finished(stats)) => {
                slot.finished = true;
                report.results.push(SessionResult {
                    secs: Some(stats.duration().as_secs_f64()),
                    finished_at: Some(now),
                    bytes: slot.bytes,
                    failure: failure_of(plan, &stats, slot),
                    retransmissions: stats.retransmissions,
                    packets_sent: stats.packets_sent,
                    packets_received: stats.packets_received,
                });
            }
            Output::Event(_) => {}
            Output::Wait(_) => break,
            Output::Closed => return true,
        }
    }
    if let Some(d) = slot.session.poll_timeout()
        && slot.armed.is_none_or(|a| d < a)
    {
        slot.armed = Some(d);
        heap.push(Reverse((d, token)));
    }
    false
}

/// Why a session could not start; counted as its failure (the other sessions run on).
#[derive(Debug)]
struct StartError(String);

/// Start session `i`. An error that concerns only this session (its socket cannot be bound
/// or set up) is a [`StartError`]; others end the run.
fn start_session(plan: &Plan, i: u32, now: Instant) -> Result<Result<Slot, StartError>> {
    let bind = bind_addr(&plan.args, i);
    let std_sock = match std::net::UdpSocket::bind(bind) {
        Ok(s) => s,
        Err(e) => {
            // The cause without the address, so that failures group by cause.
            let from = if plan.args.bind_from.is_some() {
                "a --bind-from address"
            } else {
                "the wildcard address"
            };
            return Ok(Err(StartError(format!("cannot bind {from}: {e}"))));
        }
    };
    std_sock.set_nonblocking(true)?;
    if let Some(b) = plan.args.rcvbuf {
        sys::set_socket_buffer(std_sock.as_raw_fd(), true, b).context("setting SO_RCVBUF")?;
    }
    let socket = UdpSocket::from_std(std_sock);
    let session = ClientSession::get(
        plan.args.server,
        &plan.args.file,
        Mode::Octet,
        plan.options,
        &plan.config,
        now,
    )
    .context("encoding the request")?;
    Ok(Ok(Slot {
        session,
        socket,
        armed: None,
        bytes: 0,
        mismatch_at: None,
        finished: false,
        connected: plan.args.no_connect,
    }))
}

/// Drive the sessions with the given client indices to completion or the deadline.
fn run_thread(plan: &Plan, ids: Vec<u32>) -> Result<ThreadReport> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut heap: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut slots: Vec<Option<Slot>> = Vec::with_capacity(ids.len());
    let mut free: Vec<usize> = Vec::new();
    let mut report = ThreadReport::default();
    let mut buf = vec![0u8; 65536];
    let n = f64::from(plan.args.clients.max(1));
    let starts: Vec<Instant> = ids
        .iter()
        .map(|&i| plan.start + Duration::from_secs_f64(plan.args.ramp * f64::from(i) / n))
        .collect();
    let mut next = 0usize;

    loop {
        let mut now = Instant::now();
        if now >= plan.deadline {
            break;
        }
        // Start the sessions that are due.
        while next < starts.len() && starts[next] <= now {
            let mut slot = match start_session(plan, ids[next], now)? {
                Ok(slot) => slot,
                Err(StartError(why)) => {
                    report.results.push(SessionResult {
                        secs: None,
                        finished_at: Some(now),
                        bytes: 0,
                        failure: Some(why),
                        retransmissions: 0,
                        packets_sent: 0,
                        packets_received: 0,
                    });
                    next += 1;
                    continue;
                }
            };
            let token = free.pop().unwrap_or_else(|| {
                slots.push(None);
                slots.len() - 1
            });
            poll.registry()
                .register(&mut slot.socket, Token(token), Interest::READABLE)?;
            report.first_start.get_or_insert(now);
            if drive(plan, &mut slot, token, now, &mut heap, &mut report) {
                free.push(token);
            } else {
                slots[token] = Some(slot);
            }
            next += 1;
        }
        // Every started session reports exactly once, on Event::Finished.
        if next == starts.len() && report.results.len() == next {
            break;
        }
        // Sleep until a datagram, the next deadline, the next start or the end.
        let mut wake = plan.deadline;
        if let Some(Reverse((t, _))) = heap.peek() {
            wake = wake.min(*t);
        }
        if let Some(s) = starts.get(next) {
            wake = wake.min(*s);
        }
        let timeout = wake.saturating_duration_since(now);
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        for event in events.iter() {
            let token = event.token().0;
            let Some(Some(slot)) = slots.get_mut(token) else {
                continue;
            };
            // Edge-triggered: drain the socket.
            loop {
                match slot.socket.recv_from(&mut buf) {
                    Ok((len, from)) => {
                        now = Instant::now();
                        slot.session.handle_datagram(now, from, &buf[..len]);
                        // The session took `from` as the server's transfer ID (a stranger's
                        // datagram leaves its peer as it was).
                        if !slot.connected && slot.session.peer() == from {
                            slot.connected = true;
                            if slot.socket.connect(from).is_err() {
                                report.connect_errors += 1;
                            }
                        }
                        if drive(plan, slot, token, now, &mut heap, &mut report) {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    // ICMP errors (e.g. port unreachable) surface here; the protocol's
                    // timer decides what they mean.
                    Err(_) => {
                        report.recv_errors += 1;
                        break;
                    }
                }
            }
            if slot.session.is_closed() {
                slots[token] = None;
                free.push(token);
            }
        }
        // Fire the due timers.
        now = Instant::now();
        while let Some(Reverse((t, token))) = heap.peek().copied() {
            if t > now {
                break;
            }
            heap.pop();
            let Some(Some(slot)) = slots.get_mut(token) else {
                continue;
            };
            if slot.armed != Some(t) {
                continue; // superseded by an earlier deadline
            }
            slot.armed = None;
            match slot.session.poll_timeout() {
                Some(d) if d <= now => {
                    slot.session.handle_timeout(now);
                    if drive(plan, slot, token, now, &mut heap, &mut report) {
                        slots[token] = None;
                        free.push(token);
                    }
                }
                Some(d) => {
                    // The deadline moved later since it was armed: re-arm.
                    slot.armed = Some(d);
                    heap.push(Reverse((d, token)));
                }
                None => {}
            }
        }
    }
    // Whatever has not finished by now missed the deadline.
    for slot in slots.iter().flatten().filter(|s| !s.finished) {
        let stats = slot.session.stats();
        report.results.push(SessionResult {
            secs: None,
            finished_at: None,
            bytes: slot.bytes,
            failure: Some("unfinished at the deadline".into()),
            retransmissions: stats.retransmissions,
            packets_sent: stats.packets_sent,
            packets_received: stats.packets_received,
        });
    }
    let never_started = starts.len() - next;
    for _ in 0..never_started {
        report.results.push(SessionResult {
            secs: None,
            finished_at: None,
            bytes: 0,
            failure: Some("not started before the deadline".into()),
            retransmissions: 0,
            packets_sent: 0,
            packets_received: 0,
        });
    }
    Ok(report)
}

#[derive(Debug, Serialize)]
struct ServerReport {
    #[serde(flatten)]
    usage: TreeUsage,
    /// Server CPU seconds per MB (10^6 bytes) delivered.
    cpu_secs_per_mb: Option<f64>,
    /// The sampler's own CPU seconds (included in the load client's process CPU).
    sampler_cpu_secs: f64,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    label: Option<String>,
    server: SocketAddr,
    /// How many `--bind-from` client addresses the sessions came from (0: the wildcard).
    client_addresses: usize,
    file: String,
    clients: u32,
    threads: usize,
    blksize: Option<u16>,
    windowsize: Option<u16>,
    ramp_secs: f64,
    deadline_secs: f64,
    /// The client's retransmission settings: initial, floor and ceiling of the timeout (ms),
    /// and retries per packet.
    initial_timeout_ms: u64,
    min_timeout_ms: u64,
    max_timeout_ms: u64,
    retries: u32,
    sessions: usize,
    completed: usize,
    failures: usize,
    failure_reasons: BTreeMap<String, usize>,
    /// First session start to last session outcome.
    wall_secs: f64,
    sessions_per_sec: f64,
    /// Session times of the completed sessions (null when none completed).
    session_secs: Option<Percentiles>,
    /// Payload bytes received over all sessions.
    bytes: u64,
    /// bytes / wall_secs, in MB/s (10^6 bytes per second).
    mb_per_sec: f64,
    retransmissions: u64,
    packets_sent: u64,
    packets_received: u64,
    send_errors: u64,
    recv_errors: u64,
    /// Sessions whose socket could not be connected (they ran on unconnected).
    connect_errors: u64,
    /// The load client's CPU time (all threads, the sampler included).
    client_cpu: CpuTime,
    client_cpu_secs: f64,
    /// client_cpu_secs / wall_secs: how many cores the client kept busy.
    client_cpu_cores: f64,
    nofile_limit: u64,
    server_usage: Option<ServerReport>,
}

fn sample_server(
    pid: u32,
    cgroup: Option<&std::path::Path>,
    pss: bool,
    interval: Duration,
    settle: Duration,
    stop: &AtomicBool,
    first: TreeSnapshot,
) -> ServerReport {
    let mut usage = TreeUsage::new(pid, &first);
    let mut error = None;
    let mut last = first;
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        match proctree::snapshot(pid, pss, cgroup) {
            Ok(s) => {
                usage.add(&s);
                last = s;
            }
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
        // Keep sampling under about 20% of one core.
        let cost = t0.elapsed();
        thread::sleep(interval.max(cost * 4));
    }
    // Let the tree wind down (tftpd-hpa's children exit after their last ACK) so the final
    // CPU reading includes them.
    let until = Instant::now() + settle;
    while error.is_none() {
        match proctree::snapshot(pid, false, cgroup) {
            Ok(s) => {
                last = s;
                if (s.procs <= first.procs && s.threads <= first.threads) || Instant::now() >= until
                {
                    break;
                }
            }
            Err(e) => error = Some(e.to_string()),
        }
        thread::sleep(Duration::from_millis(20));
    }
    usage.finish(&TreeSnapshot {
        pss_kib: None,
        ..last
    });
    ServerReport {
        usage,
        cpu_secs_per_mb: None,
        sampler_cpu_secs: sys::thread_cpu().map(|c| c.total()).unwrap_or(0.0),
        error,
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.clients == 0 || args.clients > MAX_CLIENTS {
        bail!("--clients must be in 1..={MAX_CLIENTS}");
    }
    if !(args.deadline > 0.0 && args.deadline <= MAX_DEADLINE_SECS) {
        bail!("--deadline must be in (0, {MAX_DEADLINE_SECS}] seconds");
    }
    if !(args.ramp >= 0.0 && args.ramp < args.deadline) {
        bail!("--ramp must be in [0, --deadline)");
    }
    if let Some(from) = &args.bind_from
        && from.0[0].is_ipv4() != args.server.is_ipv4()
    {
        bail!("--bind-from addresses are not of --server's address family");
    }
    let threads = args.threads.clamp(1, args.clients as usize);
    if !args.cpus.is_empty() {
        sys::pin_to_cpus(&args.cpus).context("pinning to --cpus")?;
    }
    // One socket per session, plus a few per thread.
    let want = u64::from(args.clients) + 64 * threads as u64 + 64;
    let nofile = sys::raise_nofile(want).context("raising RLIMIT_NOFILE")?;
    if nofile < want {
        bail!("RLIMIT_NOFILE is {nofile}, {want} file descriptors are needed");
    }
    let verify = match &args.verify {
        Some(p) => Some(Arc::new(
            std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        )),
        None => None,
    };
    let expect = args.expect_size.or(verify.as_ref().map(|v| v.len() as u64));
    let options = OptionValues {
        blksize: args.blksize,
        windowsize: args.windowsize,
        tsize: (!args.no_tsize).then_some(0),
        timeout: args.timeout,
    };
    let mut config = Config::default();
    config.retries = args.retries;
    config.initial_timeout = Duration::from_millis(args.initial_timeout_ms);
    config.min_timeout = Duration::from_millis(args.min_timeout_ms);
    config.max_timeout = Duration::from_millis(args.max_timeout_ms);

    let server_first = match args.server_pid {
        Some(pid) => Some(
            proctree::snapshot(pid, args.pss, args.server_cgroup.as_deref())
                .with_context(|| format!("reading the process tree of {pid}"))?,
        ),
        None => None,
    };
    let cpu0 = sys::process_cpu()?;
    let start = Instant::now();
    let plan = Arc::new(Plan {
        deadline: start + Duration::from_secs_f64(args.deadline),
        start,
        options,
        config,
        verify,
        expect,
        args: args.clone(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = match (args.server_pid, server_first) {
        (Some(pid), Some(first)) => {
            let stop = Arc::clone(&stop);
            let cgroup = args.server_cgroup.clone();
            let (pss, interval, settle) = (
                args.pss,
                Duration::from_millis(args.sample_ms),
                Duration::from_millis(args.settle_ms),
            );
            Some(thread::spawn(move || {
                sample_server(pid, cgroup.as_deref(), pss, interval, settle, &stop, first)
            }))
        }
        _ => None,
    };

    let mut handles = Vec::new();
    for t in 0..threads {
        let ids: Vec<u32> = (0..args.clients)
            .filter(|i| *i as usize % threads == t)
            .collect();
        let plan = Arc::clone(&plan);
        handles.push(thread::spawn(move || run_thread(&plan, ids)));
    }
    let mut reports = Vec::new();
    let mut first_error = None;
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => reports.push(r),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(anyhow::anyhow!("a worker thread panicked"));
            }
        }
    }
    let end = Instant::now();
    let cpu = sys::process_cpu()?.since(&cpu0);
    stop.store(true, Ordering::Relaxed);
    let mut server_usage = match sampler {
        Some(h) => Some(
            h.join()
                .map_err(|_| anyhow::anyhow!("the sampler thread panicked"))?,
        ),
        None => None,
    };
    if let Some(e) = first_error {
        return Err(e);
    }

    let results: Vec<&SessionResult> = reports.iter().flat_map(|r| &r.results).collect();
    let first_start = reports.iter().filter_map(|r| r.first_start).min();
    let last_finish = results.iter().filter_map(|r| r.finished_at).max();
    let wall = match (first_start, last_finish) {
        (Some(a), Some(b)) => b.saturating_duration_since(a),
        _ => end.saturating_duration_since(start),
    }
    .as_secs_f64();
    let mut failure_reasons: BTreeMap<String, usize> = BTreeMap::new();
    for r in &results {
        if let Some(f) = &r.failure {
            *failure_reasons.entry(f.clone()).or_default() += 1;
        }
    }
    let failures = results.iter().filter(|r| r.failure.is_some()).count();
    let completed = results.len() - failures;
    let mut secs: Vec<f64> = results
        .iter()
        .filter(|r| r.failure.is_none())
        .filter_map(|r| r.secs)
        .collect();
    let bytes: u64 = results.iter().map(|r| r.bytes).sum();
    if let Some(s) = server_usage.as_mut()
        && bytes > 0
    {
        s.cpu_secs_per_mb = Some(s.usage.cpu_secs / (bytes as f64 / 1e6));
    }
    let per_sec = |x: f64| if wall > 0.0 { x / wall } else { 0.0 };
    let report = Report {
        label: args.label.clone(),
        server: args.server,
        client_addresses: args.bind_from.as_ref().map_or(0, |b| b.0.len()),
        file: args.file.clone(),
        clients: args.clients,
        threads,
        blksize: args.blksize,
        windowsize: args.windowsize,
        ramp_secs: args.ramp,
        deadline_secs: args.deadline,
        initial_timeout_ms: args.initial_timeout_ms,
        min_timeout_ms: args.min_timeout_ms,
        max_timeout_ms: args.max_timeout_ms,
        retries: args.retries,
        sessions: results.len(),
        completed,
        failures,
        failure_reasons,
        wall_secs: wall,
        sessions_per_sec: per_sec(completed as f64),
        session_secs: (!secs.is_empty()).then(|| percentiles(&mut secs)),
        bytes,
        mb_per_sec: per_sec(bytes as f64 / 1e6),
        retransmissions: results.iter().map(|r| r.retransmissions).sum(),
        packets_sent: results.iter().map(|r| r.packets_sent).sum(),
        packets_received: results.iter().map(|r| r.packets_received).sum(),
        send_errors: reports.iter().map(|r| r.send_errors).sum(),
        recv_errors: reports.iter().map(|r| r.recv_errors).sum(),
        connect_errors: reports.iter().map(|r| r.connect_errors).sum(),
        client_cpu: cpu,
        client_cpu_secs: cpu.total(),
        client_cpu_cores: per_sec(cpu.total()),
        nofile_limit: nofile,
        server_usage,
    };
    let json = serde_json::to_string_pretty(&report)?;
    println!("{json}");
    if let Some(path) = &args.output {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if report.failures > 0 {
        // Still exit 0: failures are a measured result, not a tool error.
        eprintln!(
            "tftp-loadgen: {} of {} sessions failed",
            failures, report.sessions
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }

    #[test]
    fn bind_from_range() {
        let b = parse_bind_from("198.18.1.1-198.18.1.250").unwrap();
        assert_eq!(b.0.len(), 250);
        assert_eq!(b.0[0], v4("198.18.1.1"));
        assert_eq!(b.0[249], v4("198.18.1.250"));
        // Round robin: session i gets address i mod N.
        assert_eq!(b.for_session(0), v4("198.18.1.1"));
        assert_eq!(b.for_session(249), v4("198.18.1.250"));
        assert_eq!(b.for_session(250), v4("198.18.1.1"));
        assert_eq!(b.for_session(999), v4("198.18.1.250"));
        // Across an octet boundary, one address, spaces around the dash.
        let b = parse_bind_from("198.18.0.254 - 198.18.1.1").unwrap();
        assert_eq!(
            b.0,
            ["198.18.0.254", "198.18.0.255", "198.18.1.0", "198.18.1.1"].map(v4)
        );
        assert_eq!(parse_bind_from("10.0.0.1-10.0.0.1").unwrap().0.len(), 1);
    }

    #[test]
    fn bind_from_list() {
        let b = parse_bind_from("198.18.1.1, 198.18.1.7").unwrap();
        assert_eq!(b.0, [v4("198.18.1.1"), v4("198.18.1.7")]);
        let b = parse_bind_from("2001:db8::100,2001:db8::101").unwrap();
        assert_eq!(b.0.len(), 2);
        assert!(b.0[1].is_ipv6());
        assert_eq!(
            parse_bind_from("::1").unwrap().0,
            ["::1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn bind_from_rejects() {
        for bad in [
            "",
            "198.18.1.250-198.18.1.1",
            "198.18.1.1-",
            "2001:db8::1-2001:db8::9",
            "198.18.1.1,2001:db8::1",
            "198.18.1.1,,198.18.1.2",
            "198.18.1.300",
            "10.0.0.0-10.1.0.0",
        ] {
            assert!(parse_bind_from(bad).is_err(), "accepted {bad:?}");
        }
        // The largest allowed range.
        assert_eq!(
            parse_bind_from("10.0.0.0-10.0.255.255").unwrap().0.len(),
            65_536
        );
    }
}
