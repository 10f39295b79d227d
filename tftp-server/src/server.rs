//! The runtime-independent half of a server: what to do with a datagram on the listening
//! port, how a session starts and how it is reported. An adapter supplies sockets, tasks and
//! timers around it.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, Type};
use tftp_proto::{ErrorReply, OptionLimits, Outcome, ServerSession, SessionStats};

use crate::admission::{Admission, Admitted, Permit};
use crate::config::{MtuPolicy, ServerConfig};
use crate::log_limit::LogLimit;
use crate::request::{HandlerError, Printable, Request, SessionReport};
use crate::stats::{ServerStats, StatsCollector};

/// Called with the report of every finished session (and every refused request).
pub type SessionCallback = Arc<dyn Fn(&SessionReport) + Send + Sync>;
/// Called every [`ServerConfig::stats_interval`] with the counters of the interval.
pub type StatsCallback = Arc<dyn Fn(&ServerStats) + Send + Sync>;

/// Everything a server needs besides its handler: where to listen, how to behave, whom to
/// tell. The same for every adapter.
///
/// ```
/// use tftp_server::server::ServerOptions;
///
/// let options = ServerOptions::new()
///     .listen("127.0.0.1:6969".parse().unwrap())
///     .on_session(|report| println!("{} {:?}", report.filename, report.stats.outcome))
///     .on_stats(|stats| println!("{} sessions", stats.sessions_started));
/// ```
#[derive(Clone, Default)]
pub struct ServerOptions {
    /// Addresses to bind listening sockets to.
    pub listen: Vec<SocketAddr>,
    /// Already-bound listening sockets (e.g. from systemd socket activation).
    pub sockets: Vec<Arc<UdpSocket>>,
    /// Behaviour and limits.
    pub config: ServerConfig,
    /// Per-session callback.
    pub on_session: Option<SessionCallback>,
    /// Periodic server statistics callback.
    pub on_stats: Option<StatsCallback>,
}

impl fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerOptions")
            .field("listen", &self.listen)
            .field("sockets", &self.sockets.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ServerOptions {
    /// No listeners, default configuration, no callbacks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Listen on `addr` too.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen.push(addr);
        self
    }

    /// Use an already-bound socket as a listener.
    pub fn socket(mut self, socket: UdpSocket) -> Self {
        self.sockets.push(Arc::new(socket));
        self
    }

    /// Replace the configuration.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Call `f` with every finished session's report.
    ///
    /// `f` runs where the session ran, as it ends: on the event loop's thread with
    /// `tftp-blocking` (every other transfer of that loop waits for it), on the session's
    /// task with the async runtimes. Keep it short and never let it block: hand slow work
    /// (a file or pipe that may stall, a network call) to a thread of its own through a
    /// bounded queue, dropping what does not fit, as tftpd's session log does
    /// (`tftpd::session_log::SessionLog::in_background`).
    pub fn on_session(mut self, f: impl Fn(&SessionReport) + Send + Sync + 'static) -> Self {
        self.on_session = Some(Arc::new(f));
        self
    }

    /// Call `f` every `config.stats_interval` with the interval's counters. Like
    /// [`ServerOptions::on_session`]'s, `f` may run on an event loop's thread: it must not
    /// block.
    pub fn on_stats(mut self, f: impl Fn(&ServerStats) + Send + Sync + 'static) -> Self {
        self.on_stats = Some(Arc::new(f));
        self
    }

    /// Bind every `listen` address (see [`bind_listener`]) and return all listening sockets
    /// (given ones too, e.g. from socket activation), in non-blocking mode and prepared to
    /// learn each datagram's destination ([`crate::udp::prepare_listener`]), so that answers
    /// come from the address that was asked.
    pub fn bind_all(&self) -> io::Result<Vec<Arc<UdpSocket>>> {
        let mut out = self.sockets.clone();
        let buffer = listener_buffer(&self.config);
        for addr in &self.listen {
            out.push(Arc::new(bind_listener_sized(*addr, buffer)?));
        }
        for s in &out {
            s.set_nonblocking(true)?;
            if let Err(e) = crate::udp::prepare_listener(&**s) {
                // Still a listener; its answers come from the routing table's pick.
                tracing::warn!(local = ?s.local_addr().ok(), error = %e, "cannot learn the destination of requests");
            }
        }
        Ok(out)
    }
}

/// A listener's receive buffer, as asked of the kernel (which doubles it for its own
/// accounting): room for a burst of requests (many PXE clients at once), and in single-port
/// mode for every transfer's ACK too — there the listener is every transfer's socket, and
/// in lock-step each session may have an ACK waiting in it while the loop works through the
/// others. An ACK takes about 1 KiB of the kernel's accounting (its `truesize`), so 2 KiB a
/// session asked leaves room for two. Measured (single-port, 10,000 clients × 1 MiB, lifted
/// limits): with 4 MiB asked (8 MiB granted) the kernel dropped 164,000 ACKs for a full
/// listener (`UdpRcvbufErrors`; each one a client's 1 s retransmission timeout, 432,000 in
/// all), with 32 MiB none (188,000).
pub fn listener_buffer(config: &ServerConfig) -> usize {
    const PER_SESSION: usize = 2 << 10;
    const MOST: usize = 64 << 20;
    match config.single_port {
        true => (config.admission.max_sessions.saturating_mul(PER_SESSION))
            .clamp(LISTENER_REQUESTS, MOST),
        false => LISTENER_REQUESTS,
    }
}

/// A listener's receive buffer for requests alone (see [`listener_buffer`]).
const LISTENER_REQUESTS: usize = 4 << 20;

/// Bind a listening socket with the receive buffer of the default configuration (see
/// [`bind_listener_sized`]).
pub fn bind_listener(addr: SocketAddr) -> io::Result<UdpSocket> {
    bind_listener_sized(addr, LISTENER_REQUESTS)
}

/// Bind a listening socket whose receive buffer holds `buffer` bytes (see
/// [`listener_buffer`]): `SO_RCVBUFFORCE` when the process may (root, `CAP_NET_ADMIN`: the
/// size the service needs whatever `net.core.rmem_max` says), else `SO_RCVBUF`, which the
/// kernel caps at `net.core.rmem_max` (212,992 bytes on a stock system; a warning then says
/// so). `[::]` is bound dual-stack (IPv4 clients arrive as mapped addresses). A permission
/// error on a privileged port says how to get past it.
pub fn bind_listener_sized(addr: SocketAddr, buffer: usize) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() && addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        socket.set_only_v6(false)?;
    }
    // The kernel reports twice what was asked (half of it for its own overhead).
    let granted = crate::udp::set_receive_buffer(&socket, buffer) / 2;
    if granted < buffer {
        let message = "the listener's receive buffer is smaller than asked: run as root (or \
                       with CAP_NET_ADMIN), or raise net.core.rmem_max";
        // Short of what single-port mode needs for its transfers: that costs retransmissions.
        match buffer > LISTENER_REQUESTS {
            true => tracing::warn!(%addr, asked = buffer, granted, "{message}"),
            false => tracing::debug!(%addr, asked = buffer, granted, "{message}"),
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into()).map_err(|e| {
        if e.kind() == io::ErrorKind::PermissionDenied && addr.port() < 1024 {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot bind {addr}: ports below 1024 need root or CAP_NET_BIND_SERVICE \
                     (e.g. `sudo setcap cap_net_bind_service=+ep tftpd`), or listen on an \
                     unprivileged port such as 6969"
                ),
            )
        } else {
            io::Error::new(e.kind(), format!("cannot bind {addr}: {e}"))
        }
    })?;
    Ok(socket.into())
}

/// Bind a transfer socket on `local`'s address: an ephemeral port, or one from `range`
/// (RFC 1350 §4: each transfer has its own port, the server's transfer ID).
pub fn bind_transfer(local: IpAddr, range: Option<&RangeInclusive<u16>>) -> io::Result<UdpSocket> {
    bind_transfer_on(local, None, range)
}

/// [`bind_transfer`] on the address a request was sent to, as the listener learnt it:
/// `local` in the listener's family. An IPv4-mapped address (an IPv4 client of a dual-stack
/// listener) binds a dual-stack IPv6 socket to it, which sends and receives IPv4 with peers
/// in the same mapped form as the listener's; an IPv6 link-local address is bound on
/// `interface`, the one the request came in on.
pub fn bind_transfer_on(
    local: IpAddr,
    interface: Option<u32>,
    range: Option<&RangeInclusive<u16>>,
) -> io::Result<UdpSocket> {
    let bind = |port: u16| -> io::Result<UdpSocket> {
        let addr = match local {
            IpAddr::V6(ip) if ip.is_unicast_link_local() => SocketAddr::V6(
                std::net::SocketAddrV6::new(ip, port, 0, interface.unwrap_or(0)),
            ),
            _ => SocketAddr::new(local, port),
        };
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        let dual_stack = match local {
            IpAddr::V6(ip) => ip == Ipv6Addr::UNSPECIFIED || ip.to_ipv4_mapped().is_some(),
            IpAddr::V4(_) => false,
        };
        if dual_stack {
            socket.set_only_v6(false)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        Ok(socket.into())
    };
    let Some(range) = range else {
        return bind(0);
    };
    let (lo, hi) = (*range.start(), *range.end());
    let span = u32::from(hi.saturating_sub(lo)) + 1;
    // Start at a pseudo-random port so concurrent binds spread out; try each once.
    let start = range_start(span);
    let mut last = io::Error::new(io::ErrorKind::AddrInUse, "port range exhausted");
    for i in 0..span {
        let port = lo.saturating_add(((start + i) % span) as u16);
        match bind(port) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Where a search of a port range of `span` ports starts: different for every call
/// (`RandomState` is seeded per process and moves on with each value), so that concurrent
/// transfers spread over the range instead of all probing from its first port.
fn range_start(span: u32) -> u32 {
    let random = std::hash::BuildHasher::hash_one(
        &std::collections::hash_map::RandomState::new(),
        std::process::id(),
    );
    (random % u64::from(span.max(1))) as u32
}

/// What to do with a datagram that arrived on a listening socket.
#[derive(Debug)]
pub enum Decision {
    /// Drop it.
    Ignore,
    /// Single-port mode: it belongs to the running session of its sender; deliver it there.
    Route,
    /// Send this ERROR back to the sender (from the listening socket), nothing more.
    Reply(ErrorReply),
    /// A new request: ask the handler, then start a session. Keep the permit until the
    /// session ends.
    Accept(Request, Permit),
}

/// The shared state of one server: configuration, admission, statistics, callbacks.
pub struct ServerCore {
    /// The configuration.
    pub config: ServerConfig,
    admission: Arc<Admission>,
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    budget: crate::budget::WindowBudget,
    log_limit: LogLimit,
    stats: Arc<StatsCollector>,
    on_session: Option<SessionCallback>,
    on_stats: Option<StatsCallback>,
    /// Interface MTUs for [`MtuPolicy::Interface`], with when each was read.
    mtus: std::sync::Mutex<std::collections::HashMap<u32, (Instant, Option<u32>)>>,
    /// Descriptors for connected transfers' catchers.
    spare: crate::connect::Spare,
}

impl fmt::Debug for ServerCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCore")
            .field("config", &self.config)
            .field("active", &self.stats.active_sessions())
            .finish_non_exhaustive()
    }
}

impl ServerCore {
    /// The core for `options` (its sockets are the adapter's business).
    ///
    /// Raises the soft descriptor limit to the hard one and caps
    /// [`AdmissionConfig::max_sessions`](crate::AdmissionConfig::max_sessions) to what it
    /// allows (see [`crate::descriptors::fit_sessions`]).
    pub fn new(options: &ServerOptions) -> Arc<Self> {
        let mut config = options.config.clone();
        config.admission.max_sessions =
            crate::descriptors::fit_sessions(config.admission.max_sessions);
        let spare = match config.connect_transfers && !config.single_port {
            true => crate::descriptors::spare_descriptors(config.admission.max_sessions),
            false => 0,
        };
        if config.connect_transfers && !config.single_port {
            let max = config.admission.max_sessions;
            if spare < max {
                tracing::info!(
                    connected = spare,
                    max_sessions = max,
                    "descriptors for connected transfer sockets (a second one each) beyond \
                     max_sessions: only this many transfers at once are connected to their \
                     peers, the others cost the kernel a route lookup per packet (raise \
                     RLIMIT_NOFILE, e.g. LimitNOFILE=, or lower max_sessions)"
                );
            }
        }
        Arc::new(ServerCore {
            admission: Admission::new(config.admission.clone(), config.single_port),
            budget: crate::budget::WindowBudget::new(config.window_memory),
            log_limit: LogLimit::default(),
            config,
            stats: Arc::new(StatsCollector::new(Instant::now())),
            on_session: options.on_session.clone(),
            on_stats: options.on_stats.clone(),
            mtus: Default::default(),
            spare: crate::connect::Spare::new(spare),
        })
    }

    /// Connect a new transfer socket to its peer, with its catcher, if
    /// [`ServerConfig::connect_transfers`] and a spare descriptor allow (see
    /// [`crate::connect`]); else leave it unconnected and return `None`.
    pub fn connect_transfer(
        &self,
        socket: &UdpSocket,
        peer: SocketAddr,
    ) -> Option<crate::connect::Catcher> {
        self.spare.connect(socket, peer)
    }

    /// The statistics collector (running totals for metrics endpoints).
    pub fn stats(&self) -> &StatsCollector {
        &self.stats
    }

    /// Decide on a datagram from `peer` that arrived on the listener bound to `local` (the
    /// request's destination address, if the socket reported it, and `interface`, the one it
    /// came in on).
    ///
    /// `accepting`: false once shutdown has begun (new requests are dropped; in single-port
    /// mode, datagrams of running transfers are still routed so that they can finish).
    #[allow(clippy::too_many_arguments)]
    pub fn on_datagram(
        &self,
        local: SocketAddr,
        interface: Option<u32>,
        peer: SocketAddr,
        datagram: &[u8],
        now: Instant,
        accepting: bool,
    ) -> Decision {
        if !accepting {
            self.admission.stop_accepting();
        }
        match self.admission.handle(now, local, peer, datagram) {
            Admitted::Accept(incoming, mut permit) => {
                self.stats.session_started();
                permit.active = Some(Arc::clone(&self.stats));
                let mut limits = self.config.session.limits;
                if let Some(fits) = self.path_blksize(peer, interface, now) {
                    limits.max_blksize = limits.max_blksize.min(fits);
                }
                let request = Request::new(incoming, local, limits);
                tracing::debug!(%peer, %local, file = %Printable(&request.filename),
                    kind = ?request.kind, options = ?request.options, "request");
                Decision::Accept(request, permit)
            }
            Admitted::Route => Decision::Route,
            Admitted::Reply(reply, reason) => self.reject(now, peer, reason, reply),
            Admitted::Drop(reason) => self.drop_request(now, peer, reason),
        }
    }

    /// The largest block that fits the path to `peer` through `interface`, under the MTU
    /// policy; `None`: no clamp.
    fn path_blksize(&self, peer: SocketAddr, interface: Option<u32>, now: Instant) -> Option<u16> {
        let ipv6 = peer.ip().to_canonical().is_ipv6();
        let mtu = match self.config.mtu {
            MtuPolicy::Off => return None,
            MtuPolicy::Fixed(mtu) => mtu,
            MtuPolicy::Interface => self.interface_mtu(interface?, now)?,
        };
        Some(MtuPolicy::blksize_for(mtu, ipv6))
    }

    /// Interface `index`'s MTU, read at most every [`MtuPolicy::REFRESH`].
    fn interface_mtu(&self, index: u32, now: Instant) -> Option<u32> {
        let mut mtus = self.mtus.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, mtu)) = mtus.get(&index) {
            if now.saturating_duration_since(*at) < MtuPolicy::REFRESH {
                return *mtu;
            }
        }
        let mtu = crate::udp::interface_mtu(index);
        if mtus.len() >= 4096 {
            mtus.clear();
        }
        mtus.insert(index, (now, mtu));
        mtu
    }

    /// Drop a datagram at a listening port without an answer: count it, log it (rate-limited).
    fn drop_request(&self, now: Instant, peer: SocketAddr, reason: &'static str) -> Decision {
        self.stats.request_dropped(reason);
        // Retransmitted requests are routine; everything else is worth a (rate-limited) line.
        if reason != "duplicate" {
            self.log_limit.note(now, reason, |suppressed| {
                tracing::info!(%peer, reason, suppressed, "request dropped");
            });
        }
        Decision::Ignore
    }

    /// Refuse a request with an ERROR from the listening port (the admission table has taken
    /// it from the reply budget).
    fn reject(
        &self,
        now: Instant,
        peer: SocketAddr,
        reason: &'static str,
        reply: ErrorReply,
    ) -> Decision {
        self.stats.request_rejected(reason);
        self.stats.error_sent(reply.code);
        self.log_limit.note(now, reason, |suppressed| {
            tracing::info!(%peer, reason, suppressed, error = %Printable(&reply.message), "request refused");
        });
        Decision::Reply(reply)
    }

    /// No transfer socket could be opened for an accepted `request` (descriptors or ports
    /// exhausted): report it, and return the ERROR to send from the listener, if the reply
    /// budget allows one.
    pub fn no_transfer_socket(
        &self,
        request: &Request,
        error: &std::io::Error,
    ) -> Option<ErrorReply> {
        tracing::warn!(%error, "cannot open a transfer socket");
        self.stats.request_rejected("no_transfer_socket");
        let refusal = HandlerError::server_busy();
        let now = Instant::now();
        self.refused(request, &refusal, now);
        self.admission.may_reply(now).then(|| refusal.reply())
    }

    #[cfg(feature = "async")]
    /// Serve an accepted `request` over `io`, given the handler's `answer` (the source's size
    /// for reads, and per-request limits): send its refusal, or drive the session to the end
    /// (`io` carries the handler's source or sink). Reports the outcome either way.
    pub(crate) async fn serve<R: crate::runtime::Runtime, D: crate::runtime::Data>(
        &self,
        request: &Request,
        answer: Result<(Option<u64>, Option<OptionLimits>), HandlerError>,
        io: &mut crate::runtime::Io<R, D>,
        started: Instant,
    ) {
        let (size, limits) = match answer {
            Ok(answer) => answer,
            Err(error) => {
                io.send(request.peer, &error.reply().to_vec()).await;
                return self.refused(request, &error, started);
            }
        };
        // The ring from the thread's spares: a seekable source's gives it back between sends.
        let ring = crate::ring::SpareRing::default();
        let Some(mut session) = self.start_session_in(request, size, limits, started, ring) else {
            // A SpareRing grows to anything: not a path.
            let error = HandlerError::server_error();
            io.send(request.peer, &error.reply().to_vec()).await;
            return self.refused(request, &error, started);
        };
        session.set_source_seekable(io.data_is_seekable());
        // Bytes reported while the transfer runs (the final report counts the rest).
        let counted = std::sync::atomic::AtomicU64::new(0);
        let progress = |bytes: u64| {
            let before = counted.swap(bytes, std::sync::atomic::Ordering::Relaxed);
            self.stats
                .transfer_progress(request.kind, bytes.saturating_sub(before));
        };
        let how = crate::drive::Drive {
            source_timeout: Some(self.config.source_timeout),
            budget: Some(&self.budget),
            progress: Some(&progress),
            ..crate::drive::Drive::default()
        };
        crate::drive::drive(&mut session, io, how, |event| {
            if let tftp_proto::Event::Finished(stats) = event {
                let counted = counted.load(std::sync::atomic::Ordering::Relaxed);
                self.session_finished_after(request, stats.clone(), counted);
            }
        })
        .await;
    }

    /// Start the session for an accepted request whose handler answered with a source of
    /// `size` bytes (reads; `None` if unknown or for writes) and optionally tightened limits.
    pub fn start_session(
        &self,
        request: &Request,
        size: Option<u64>,
        limits: Option<OptionLimits>,
        now: Instant,
    ) -> ServerSession {
        let config = self.session_config(request, limits);
        ServerSession::new(&request.incoming(), &config, size, now)
    }

    /// The session configuration for `request`: the server's, under the request's limits
    /// (the server's fitted to the path, see [`MtuPolicy`]) or the handler's, which replace
    /// them.
    fn session_config(
        &self,
        request: &Request,
        limits: Option<OptionLimits>,
    ) -> tftp_proto::Config {
        let mut config = self.config.session.clone();
        config.limits = limits.unwrap_or(request.limits);
        config
    }

    /// [`ServerCore::start_session`] with the window ring in `storage` (see
    /// [`tftp_proto::storage`]), which must be able to grow to whatever the options need
    /// (`capacity() == usize::MAX`); `None` if it cannot.
    pub fn start_session_in<B: tftp_proto::storage::Storage>(
        &self,
        request: &Request,
        size: Option<u64>,
        limits: Option<OptionLimits>,
        now: Instant,
        storage: B,
    ) -> Option<ServerSession<Instant, B>> {
        if storage.capacity() != usize::MAX {
            return None;
        }
        let config = self.session_config(request, limits);
        ServerSession::with_storage(&request.incoming(), &config, size, now, storage).ok()
    }

    /// The handler refused `request` with `error` (sent by the adapter): report it (the
    /// statistics, the session callback). Logged at debug level only: the handler says why at
    /// info level, rate-limited (as [`crate::fs::Root::refuse`] does), so a refusal is not
    /// logged twice and a flood of them does not flood the log.
    pub fn refused(&self, request: &Request, error: &HandlerError, started: Instant) {
        tracing::debug!(peer = %request.peer, file = %Printable(&request.filename), code = error.code.0, error = %Printable(&error.message), "request refused");
        self.finish(SessionReport::refused(request, error, started), 0);
    }

    /// A session for `request` finished with `stats`: log, count and call back.
    pub fn session_finished(&self, request: &Request, stats: SessionStats) {
        self.session_finished_after(request, stats, 0);
    }

    /// A session for `request` finished with `stats`, `counted` of its bytes already counted
    /// while it ran ([`StatsCollector::transfer_progress`]): log, count the rest and call back.
    pub fn session_finished_after(&self, request: &Request, stats: SessionStats, counted: u64) {
        let report = SessionReport::new(request, stats);
        let s = &report.stats;
        match &s.outcome {
            Some(outcome @ (Outcome::Completed | Outcome::SizeProbe)) => tracing::info!(
                peer = %report.peer, file = %Printable(&report.filename), kind = ?report.kind,
                bytes = s.bytes, blksize = s.options.blksize, windowsize = s.options.windowsize,
                retransmissions = s.retransmissions, ms = s.duration().as_millis() as u64,
                outcome = ?outcome, "session finished"),
            Some(Outcome::Failed(e)) => tracing::warn!(
                peer = %report.peer, file = %Printable(&report.filename), kind = ?report.kind,
                bytes = s.bytes, error = %Printable(&e.to_string()), "session failed"),
            None => tracing::warn!(
                peer = %report.peer, file = %Printable(&report.filename), kind = ?report.kind,
                bytes = s.bytes, "session ended without an outcome"),
        }
        self.finish(report, counted);
    }

    fn finish(&self, report: SessionReport, counted: u64) {
        self.stats.session_finished_after(&report, counted);
        if let Some(cb) = &self.on_session {
            cb(&report);
        }
    }

    /// Read and reset the interval counters, and hand them to the stats callback if any.
    /// Adapters call this every `config.stats_interval`.
    pub fn report_interval(&self, now: Instant) -> ServerStats {
        let stats = self.stats.take_interval(now);
        if let Some(cb) = &self.on_stats {
            cb(&stats);
        }
        stats
    }

    /// Whether a stats callback is installed (adapters skip the timer otherwise).
    pub fn wants_stats(&self) -> bool {
        self.on_stats.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_port_listener_has_room_for_every_sessions_ack() {
        let mut config = ServerConfig::default();
        assert_eq!(listener_buffer(&config), 4 << 20);
        config.single_port = true;
        // The default 10,000 sessions: 2 KiB each.
        assert_eq!(config.admission.max_sessions, 10_000);
        assert_eq!(listener_buffer(&config), 10_000 * 2048);
        config.admission.max_sessions = 100;
        assert_eq!(listener_buffer(&config), 4 << 20);
        config.admission.max_sessions = usize::MAX;
        assert_eq!(listener_buffer(&config), 64 << 20);
    }

    #[test]
    fn a_listener_gets_its_buffer_past_rmem_max_when_privileged() {
        let asked = 24 << 20;
        let socket = bind_listener_sized("127.0.0.1:0".parse().unwrap(), asked).unwrap();
        let granted = crate::udp::set_receive_buffer(&socket, asked);
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let root = status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
        let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        // Root (as CI runs) gets it whatever net.core.rmem_max says; anyone else what it allows.
        let expected = if root { asked } else { asked.min(rmem_max) };
        assert_eq!(granted, 2 * expected, "root {root}, rmem_max {rmem_max}");
    }

    #[test]
    fn port_range_searches_start_anywhere() {
        // The old seed (`Instant::now().elapsed()`, about 0) started every search at the
        // same port.
        let starts: std::collections::BTreeSet<u32> = (0..50).map(|_| range_start(1000)).collect();
        assert!(starts.len() > 25, "{starts:?}");
        assert!(starts.iter().all(|&s| s < 1000));
        assert_eq!(range_start(1), 0);
    }
}
