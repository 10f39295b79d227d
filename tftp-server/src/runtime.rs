//! What an async adapter supplies, and the session I/O built from it.
//!
//! As in quinn's `runtime` module, an adapter implements two small traits — [`Runtime`]
//! (tasks, timers, its clock) and [`AsyncUdp`] (a socket); the server ([`crate::Server`]),
//! client ([`crate::Client`]) and handler ([`crate::Handler`]) are written once over them. Signals between tasks use
//! executor-agnostic `event-listener` and `async-channel`, so nothing here needs a particular
//! executor.

use std::future::{Future, pending};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use std::time::Instant;

use async_channel::Receiver;

use futures_lite::FutureExt;
use tftp_proto::OptionLimits;

use crate::drive::{Filled, Wake};
use crate::request::HandlerError;
pub(crate) use crate::signal::Signal;
use crate::signal::{Fired, Listening};
pub use crate::udp::{send_gso, send_gso_from};

/// Tasks and timers of an async runtime.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// Its UDP socket.
    type Socket: AsyncUdp;
    /// The I/O traits its users' readers and writers implement, which a
    /// [`Client`](crate::Client) on it takes: [`FuturesIo`](crate::FuturesIo) or
    /// [`TokioIo`](crate::TokioIo).
    type IoTraits;

    /// Run `task` in the background. A runtime without an executor at hand may drop it (then
    /// a client does not dally after its last ACK).
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static);

    /// A timer: completes at its deadline. A session keeps one for its life and moves it with
    /// [`Runtime::reset`], instead of arming a new one for every wait: a lock-step transfer
    /// moves its deadline with every datagram, and a runtime that can move a deadline later
    /// without touching its timer wheel (tokio) then does no timer work per datagram. Polled
    /// after it fired, a timer may stay pending until it is reset.
    type Timer: Future<Output = ()> + Send + 'static;

    /// A timer that fires at `deadline` (await it to sleep until then).
    fn timer(&self, deadline: Instant) -> Self::Timer;

    /// Make `timer` fire at `deadline` (again, if it fired already).
    fn reset(timer: Pin<&mut Self::Timer>, deadline: Instant);

    /// The runtime's clock: every deadline a server computes starts here, so a runtime with a
    /// virtual clock (tokio's paused time) moves shutdown grace, statistics intervals and
    /// session timers on it.
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// Serve: call `serve` with a handle whose [`Runtime::spawn`] runs tasks for as long as
    /// the returned future runs (a runtime with a global executor just calls it; one
    /// without starts an executor inside the future).
    fn scope<F>(serve: impl FnOnce(Self) -> F + Send) -> impl Future<Output = F::Output> + Send
    where
        F: Future + Send,
        F::Output: Send;

    /// A handle for a client: the background task it spawns is its dally after the last
    /// ACK of a download.
    fn client() -> Self;
}

/// A non-blocking UDP socket registered with a runtime's reactor.
pub trait AsyncUdp: Send + Sync + Sized + 'static {
    /// Register `socket` (already in non-blocking mode).
    fn from_std(socket: std::net::UdpSocket) -> io::Result<Self>;
    /// The address it is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
    /// Send one datagram.
    fn send_to(&self, buf: &[u8], to: SocketAddr)
    -> impl Future<Output = io::Result<usize>> + Send;
    /// Send one datagram on a socket `connect()`ed to `to` (a transfer's, see
    /// [`crate::connect`]): without an address, so that the kernel uses the connection's
    /// route. By default as [`AsyncUdp::send_to`] (correct, at the cost of a route lookup).
    fn send_connected(
        &self,
        buf: &[u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send {
        self.send_to(buf, to)
    }
    /// Receive one datagram.
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;
    /// Receive one datagram with the local address it was sent to and the interface it came
    /// in on (a listener prepared with [`crate::udp::prepare_listener`]). By default without
    /// them, as [`AsyncUdp::recv_from`]; implement it with [`crate::udp::recv_from_to`] under
    /// the runtime's readiness.
    fn recv_from_to(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<crate::udp::Received>> + Send {
        async move {
            let (len, peer) = self.recv_from(buf).await?;
            Ok(crate::udp::Received {
                len,
                peer,
                local_ip: None,
                interface: None,
            })
        }
    }
    /// Send one datagram from local address `from` (one of this host's; `None`: the routing
    /// table's pick, as [`AsyncUdp::send_to`]). By default it ignores `from`; implement it
    /// with [`crate::udp::send_from_to`] under the runtime's readiness.
    fn send_from_to(
        &self,
        buf: &[u8],
        to: SocketAddr,
        from: Option<IpAddr>,
    ) -> impl Future<Output = io::Result<usize>> + Send {
        let _ = from;
        self.send_to(buf, to)
    }
    /// Send `contents` as datagrams of `segment_size` bytes (the last may be shorter). By
    /// default one by one; implement it with [`send_gso`] under the runtime's readiness to
    /// send them with one system call.
    fn send_segments(
        &self,
        contents: &[u8],
        segment_size: usize,
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<()>> + Send {
        send_one_by_one(self, contents, segment_size, to, None)
    }
    /// [`AsyncUdp::send_segments`] from local address `from` (single-port mode on a wildcard
    /// listener). By default one by one with [`AsyncUdp::send_from_to`]; implement it with
    /// [`send_gso_from`] under the runtime's readiness.
    fn send_segments_from(
        &self,
        contents: &[u8],
        segment_size: usize,
        to: SocketAddr,
        from: Option<IpAddr>,
    ) -> impl Future<Output = io::Result<()>> + Send {
        async move {
            if from.is_none() {
                return self.send_segments(contents, segment_size, to).await;
            }
            send_one_by_one(self, contents, segment_size, to, from).await
        }
    }
}

/// Send `contents` as datagrams of `segment_size` bytes (the last may be shorter), one
/// [`AsyncUdp::send_from_to`] each: what [`AsyncUdp::send_segments`] does without GSO, and
/// an adapter's fallback when the kernel refuses a GSO batch.
pub async fn send_one_by_one<S: AsyncUdp>(
    socket: &S,
    contents: &[u8],
    segment_size: usize,
    to: SocketAddr,
    from: Option<IpAddr>,
) -> io::Result<()> {
    for datagram in contents.chunks(segment_size.max(1)) {
        socket.send_from_to(datagram, to, from).await?;
    }
    Ok(())
}

/// A session's data in an adapter's I/O traits: a source to send from, or a sink to store into.
pub trait Data: Send {
    /// Read source bytes; `Ok(0)` is the end (a sink has none). Cancel-safe: dropped before it
    /// completes, it has consumed no byte (the session goes on receiving the peer's datagrams
    /// while a source is slow, and drops the read when one arrives).
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;
    /// Whether [`Data::read_at`] can read any part of the source again (a local file, bytes
    /// in memory). The session is then told so (`Session::set_source_seekable`): it keeps one
    /// batch of blocks rather than its window, and asks again for a block it must resend.
    fn is_seekable(&self) -> bool {
        false
    }
    /// Read source bytes from `offset`, counted from the source's start (a seekable source
    /// may be asked for bytes it gave before); the same cancel-safety as [`Data::read`]. A
    /// source that is not seekable is only ever asked for the offset it is at, and the
    /// default reads on.
    fn read_at(
        &mut self,
        offset: u64,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send {
        let _ = offset;
        self.read(buf)
    }
    /// Write all of `data` (a source ignores it); with `last`, flush too (and close a
    /// server's sink).
    fn write(&mut self, data: &[u8], last: bool) -> impl Future<Output = io::Result<()>> + Send;
}

/// What runs after the last block of an upload is written and flushed, before the final ACK
/// (e.g. move the file into place). An error fails the upload with that TFTP error.
pub type Completion =
    Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>> + Send>;

/// A handler's answer to an accepted request, whatever its runtime.
pub(crate) struct Answer<D> {
    /// The source (reads) or sink (writes).
    pub data: D,
    /// The source's size, if known (answers `tsize`).
    pub size: Option<u64>,
    /// Per-request option limits, replacing the server's.
    pub limits: Option<OptionLimits>,
    /// Run after the last block of an upload.
    pub complete: Option<Completion>,
}

impl<D> std::fmt::Debug for Answer<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Answer");
        d.field("size", &self.size).field("limits", &self.limits);
        d.finish_non_exhaustive()
    }
}

impl<D> Answer<D> {
    /// `data`, of `size` if known, under the server's limits, with nothing to complete.
    pub(crate) fn new(data: D, size: Option<u64>) -> Self {
        let (limits, complete) = (None, None);
        Answer {
            data,
            size,
            limits,
            complete,
        }
    }
}

/// No data: a refusal, or a client dallying after its transfer.
pub(crate) struct NoData;

impl Data for NoData {
    async fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Ok(0)
    }
    async fn write(&mut self, _: &[u8], _: bool) -> io::Result<()> {
        Ok(())
    }
}

/// A datagram routed to a session by its listener (single-port mode).
pub(crate) type Routed = (Vec<u8>, SocketAddr);

/// Where a session's datagrams come from and go to.
pub(crate) enum Transport<S> {
    /// Its own socket (RFC 1350 transfer ID).
    Socket(S),
    /// Its own socket connected to the peer, and the catcher that receives everyone else's
    /// datagrams to its port (see [`crate::connect`]), and the peer.
    Connected(S, crate::connect::Catcher<S>, SocketAddr),
    /// The listening socket, shared; datagrams routed here by the listener (single-port
    /// mode). Sent from the address the request was sent to, if the listener is a wildcard
    /// one (`None`: the socket's own address).
    Routed(Arc<S>, Receiver<Routed>, Option<IpAddr>),
}

impl<S: AsyncUdp> Transport<S> {
    /// The socket to send on, and the source address to send from.
    fn sender(&self) -> (&S, Option<IpAddr>) {
        match self {
            Transport::Socket(s) | Transport::Connected(s, ..) => (s, None),
            Transport::Routed(s, _, from) => (s, *from),
        }
    }

    async fn recv(&mut self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        match self {
            Transport::Socket(s) => Some(recv_datagram(s, buf).await),
            Transport::Connected(s, catcher, _) => {
                // A stranger's datagram matters only by its opcode (the session answers the
                // few an old transfer's peer would send, RFC 1350 §4, and counts them all).
                let mut stray = [0u8; 64];
                let peer = async { (recv_datagram(s, buf).await, false) };
                let stranger = async { (recv_datagram(catcher.socket(), &mut stray).await, true) };
                let ((n, from), caught) = futures_lite::future::or(peer, stranger).await;
                if caught {
                    let n = n.min(stray.len()).min(buf.len());
                    buf[..n].copy_from_slice(&stray[..n]);
                }
                Some((n, from))
            }
            Transport::Routed(_, rx, _) => {
                let (bytes, from) = rx.recv().await.ok()?;
                let n = bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                Some((n, from))
            }
        }
    }
}

/// Receive one datagram on `socket` into `buf`, logging and skipping errors: ICMP errors for
/// earlier sends surface here (always on a connected socket, on some systems on others);
/// they are not the peer's words.
async fn recv_datagram<S: AsyncUdp>(socket: &S, buf: &mut [u8]) -> (usize, SocketAddr) {
    loop {
        match socket.recv_from(buf).await {
            Ok(received) => return received,
            Err(e) => tracing::debug!(error = %e, "recv failed"),
        }
    }
}

/// A session's I/O on runtime `R`. `kill` fires when the server aborts its sessions.
pub(crate) struct Io<R: Runtime, D> {
    pub(crate) rt: R,
    pub(crate) transport: Transport<R::Socket>,
    pub(crate) data: Option<D>,
    pub(crate) complete: Option<Completion>,
    pub(crate) kill: Option<Arc<Signal>>,
    /// Registered with `kill` at the first wait and kept: registering anew for every packet
    /// cost a lock and a list insertion per wait.
    pub(crate) kill_listener: Option<Listening>,
    /// Fires when a new request from the same client port replaces this transfer.
    pub(crate) gone: Option<Arc<Signal>>,
    pub(crate) gone_listener: Option<Listening>,
    /// The session's timer, and the deadline it is armed for (`None`: it fired).
    pub(crate) timer: SessionTimer<R>,
}

/// See [`Io::timer`].
pub(crate) type SessionTimer<R> = Option<(Pin<Box<<R as Runtime>::Timer>>, Option<Instant>)>;

/// Complete once `signal` (if any) has fired, keeping the listener registered across calls.
fn fired<'a>(signal: &'a Option<Arc<Signal>>, listening: &'a mut Option<Listening>) -> Fired<'a> {
    Fired { signal, listening }
}

/// Wait for a datagram on `transport` (into `buf`), the deadline, a kill or a replacement.
async fn wait_parts<R: Runtime>(
    rt: &R,
    timer: &mut SessionTimer<R>,
    transport: &mut Transport<R::Socket>,
    signals: [(&Option<Arc<Signal>>, &mut Option<Listening>); 2],
    deadline: Option<Instant>,
    buf: &mut [u8],
) -> Wake {
    let [(kill, kill_listener), (gone, gone_listener)] = signals;
    let killed = async {
        fired(kill, kill_listener).await;
        Wake::Kill
    };
    let replaced = async {
        fired(gone, gone_listener).await;
        Wake::Gone
    };
    let received = async {
        match transport.recv(buf).await {
            Some((n, from)) => Wake::Datagram(n, from),
            None => Wake::Gone,
        }
    };
    let expired = async {
        match deadline {
            Some(deadline) => {
                let (timer, armed) =
                    timer.get_or_insert_with(|| (Box::pin(rt.timer(deadline)), Some(deadline)));
                if *armed != Some(deadline) {
                    R::reset(timer.as_mut(), deadline);
                    *armed = Some(deadline);
                }
                timer.as_mut().await;
                *armed = None;
            }
            None => pending().await,
        }
        Wake::Deadline
    };
    // The common case first: a datagram or the deadline.
    received.or(expired).or(killed).or(replaced).await
}

/// The I/O of one session: its runtime's socket, timers and clock, and the handler's
/// source or sink.
impl<R: Runtime, D: Data> Io<R, D> {
    /// The clock the session's deadlines are on.
    pub(crate) fn now(&self) -> Instant {
        self.rt.now()
    }

    pub(crate) async fn send(&mut self, to: SocketAddr, bytes: &[u8]) {
        let sent = match &self.transport {
            Transport::Connected(socket, _, peer) if *peer == to => {
                match socket.send_connected(bytes, to).await {
                    // An ICMP error (port unreachable, possibly forged) for an earlier send
                    // is reported on the next call, this one, which then did not send: once
                    // more, or a lock-step transfer would wait a whole timeout.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        socket.send_connected(bytes, to).await
                    }
                    sent => sent,
                }
            }
            transport => match transport.sender() {
                (socket, None) => socket.send_to(bytes, to).await,
                (socket, from) => socket.send_from_to(bytes, to, from).await,
            },
        };
        if let Err(e) = sent {
            tracing::debug!(%to, error = %e, "send failed");
        }
    }

    pub(crate) async fn send_batch(&mut self, to: SocketAddr, bytes: &[u8], segment_size: usize) {
        let sent = match self.transport.sender() {
            (socket, None) => socket.send_segments(bytes, segment_size, to).await,
            (socket, from) => {
                socket
                    .send_segments_from(bytes, segment_size, to, from)
                    .await
            }
        };
        if let Err(e) = sent {
            tracing::debug!(%to, error = %e, "send failed");
        }
    }

    /// Whether the session's data is a seekable source ([`Data::is_seekable`]).
    pub(crate) fn data_is_seekable(&self) -> bool {
        self.data.as_ref().is_some_and(Data::is_seekable)
    }

    pub(crate) async fn read(
        &mut self,
        block: &mut [u8],
        offset: u64,
        deadline: Option<Instant>,
        buf: &mut [u8],
    ) -> Filled {
        let Io {
            rt,
            timer,
            transport,
            data,
            kill,
            kill_listener,
            gone,
            gone_listener,
            ..
        } = self;
        let read = async {
            Filled::Read(match data {
                // A source that panics fails its own transfer ("Server error"), no other.
                Some(data) => std::panic::AssertUnwindSafe(data.read_at(offset, block))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| Err(io::Error::other("the data source panicked"))),
                None => Ok(0),
            })
        };
        let signals = [(&*kill, kill_listener), (&*gone, gone_listener)];
        let woken =
            async { Filled::Woken(wait_parts(rt, timer, transport, signals, deadline, buf).await) };
        // The source first: a ready source never waits behind the socket.
        read.or(woken).await
    }

    pub(crate) async fn write(&mut self, data: &[u8], last: bool) -> Result<(), HandlerError> {
        let Io {
            data: sink,
            complete,
            kill,
            kill_listener,
            ..
        } = self;
        let store = async {
            if let Some(sink) = sink {
                sink.write(data, last).await?;
            }
            match complete.take_if(|_| last) {
                Some(complete) => complete().await,
                None => Ok(()),
            }
        };
        // A sink or completion that panics fails its own upload ("Server error"), no other.
        let store = async {
            std::panic::AssertUnwindSafe(store)
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(HandlerError::server_error()))
        };
        // A sink that stalls must not hold shutdown past its grace period.
        let killed = async {
            fired(kill, kill_listener).await;
            Err(HandlerError::new(
                tftp_proto::ErrorCode::NOT_DEFINED,
                "Server shutting down",
            ))
        };
        store.or(killed).await
    }

    pub(crate) async fn wait(&mut self, deadline: Option<Instant>, buf: &mut [u8]) -> Wake {
        let Io {
            rt,
            timer,
            transport,
            kill,
            kill_listener,
            gone,
            gone_listener,
            ..
        } = self;
        let signals = [(&*kill, kill_listener), (&*gone, gone_listener)];
        wait_parts(rt, timer, transport, signals, deadline, buf).await
    }
}
