//! The server of the async adapters, written once over a [`Runtime`]: listeners, one task per
//! session, statistics, graceful shutdown.

use std::collections::HashMap;
use std::future::{Future, pending};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_channel::Sender;
use futures_lite::FutureExt;
use tftp_proto::{ErrorCode, RequestKind};
use tracing::Instrument;

use crate::admission::Permit;
use crate::handler::{Data, Handler};
use crate::request::{HandlerError, Request};
use crate::runtime::{AsyncUdp, Io, Routed, Runtime, Signal, Transport};
use crate::server::{Decision, ServerCore, ServerOptions};
use crate::stats::StatsCollector;

type Routes = Arc<Mutex<HashMap<SocketAddr, Sender<Routed>>>>;

/// A TFTP server around a [`Handler`] (fbtftp's `BaseServer`) on runtime `R`: the async
/// adapters name it `Server<H>` with their runtime filled in.
///
/// Binding needs no running runtime; [`Server::serve`] runs the listeners, one task per
/// session, and the statistics ticker on `R`.
pub struct Server<R: Runtime, H> {
    handler: Arc<H>,
    core: Arc<ServerCore>,
    listeners: Vec<Arc<R::Socket>>,
}

impl<R: Runtime, H> std::fmt::Debug for Server<R, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Server");
        d.field("core", &self.core).finish_non_exhaustive()
    }
}

impl<R: Runtime, H: Handler> Server<R, H> {
    /// Bind the listeners of `options` and register them with `R`'s reactor.
    pub fn bind(handler: H, options: ServerOptions) -> io::Result<Self> {
        let listeners = (options.bind_all()?.into_iter())
            .map(|s| R::Socket::from_std(Arc::try_unwrap(s).or_else(|s| s.try_clone())?))
            .map(|s| s.map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        if listeners.is_empty() {
            let kind = io::ErrorKind::InvalidInput;
            return Err(io::Error::new(kind, "no address to listen on"));
        }
        let (handler, core) = (Arc::new(handler), ServerCore::new(&options));
        Ok(Server {
            handler,
            core,
            listeners,
        })
    }

    /// The addresses the listeners are bound to.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.listeners.iter().map(|s| s.local_addr()).collect()
    }

    /// Running totals (for a metrics endpoint).
    pub fn stats(&self) -> &StatsCollector {
        self.core.stats()
    }

    /// Serve forever.
    pub async fn serve(self) -> io::Result<()> {
        self.serve_until(pending()).await
    }

    /// Serve until `shutdown` completes; then stop accepting (a single-port listener keeps
    /// routing to its sessions), let running transfers finish for up to
    /// [`crate::ServerConfig::shutdown_grace`], abort the rest with an ERROR, and return.
    ///
    /// Dropping the future instead aborts every session at once: they see the kill signal
    /// fire.
    pub async fn serve_until(self, shutdown: impl Future<Output = ()> + Send) -> io::Result<()> {
        R::scope(move |rt| self.run(rt, shutdown)).await
    }

    async fn run(self, rt: R, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        // Signals fire when dropped, so dropping this future stops and kills too. The `live`
        // channel closes when its last sender, held by listeners and sessions, is dropped.
        let (live, all_ended) = async_channel::bounded::<()>(1);
        let (kill, killed) = Signal::new();
        let (stop, stopped) = Signal::new();
        for socket in &self.listeners {
            let listener = Listener {
                rt: rt.clone(),
                socket: Arc::clone(socket),
                local: socket.local_addr()?,
                handler: Arc::clone(&self.handler),
                core: Arc::clone(&self.core),
                routes: Routes::default(),
                live: live.clone(),
                killed: Arc::clone(&killed),
            };
            rt.spawn(listener.run(Arc::clone(&stopped)));
        }
        drop(live);
        let core = &self.core;
        let main = async {
            shutdown.await;
            tracing::info!(active = core.stats().active_sessions(), "shutting down");
            drop(stop);
            // Nothing is sent on `live`: `recv` fails once every holder has ended; the end of
            // the grace period says `Ok`.
            let grace = async {
                sleep(&rt, core.config.shutdown_grace).await;
                Ok(())
            };
            if all_ended.recv().or(grace).await.is_ok() {
                drop(kill);
                let _ = all_ended.recv().await;
            }
        };
        let ticker = async {
            if !core.wants_stats() {
                return pending().await;
            }
            let period = core.config.stats_interval;
            let mut next = rt.now() + period;
            loop {
                rt.timer(next).await;
                core.report_interval(rt.now());
                next += period;
            }
        };
        main.or(ticker).await;
        // The statistics outlive the sessions, then report the last partial interval.
        if core.wants_stats() {
            core.report_interval(rt.now());
        }
        Ok(())
    }
}

async fn sleep<R: Runtime>(rt: &R, duration: Duration) {
    match rt.now().checked_add(duration) {
        Some(deadline) => rt.timer(deadline).await,
        None => pending().await,
    }
}

struct Listener<R: Runtime, H> {
    rt: R,
    socket: Arc<R::Socket>,
    local: SocketAddr,
    handler: Arc<H>,
    core: Arc<ServerCore>,
    routes: Routes,
    /// Held by the listener and every session: the server waits until all are dropped.
    live: Sender<()>,
    killed: Arc<Signal>,
}

enum Wake {
    Datagram(io::Result<crate::udp::Received>),
    Stop,
    Tick,
}

impl<R: Runtime, H: Handler> Listener<R, H> {
    /// Until `stopped` closes: accept requests. Then, in single-port mode, keep routing
    /// datagrams to the running sessions until they are done.
    async fn run(self, stopped: Arc<Signal>) {
        let mut buf = vec![0u8; 65536];
        let mut accepting = true;
        loop {
            if !accepting && lock(&self.routes).is_empty() {
                return;
            }
            let datagram = async { Wake::Datagram(self.socket.recv_from_to(&mut buf).await) };
            let other = async {
                if accepting {
                    stopped.fired().await;
                    Wake::Stop
                } else {
                    sleep(&self.rt, Duration::from_millis(50)).await;
                    Wake::Tick
                }
            };
            let received = match datagram.or(other).await {
                Wake::Datagram(Ok(r)) => r,
                Wake::Datagram(Err(e)) => {
                    tracing::debug!(error = %e, "listener recv failed");
                    continue;
                }
                Wake::Stop => {
                    accepting = false;
                    continue;
                }
                Wake::Tick => continue,
            };
            let peer = received.peer;
            let route = lock(&self.routes).get(&peer).cloned();
            let now = self.rt.now();
            let datagram = &buf[..received.len.min(buf.len())];
            // The address that was asked (RFC 1122 §4.1.3.5: answer from it), and where
            // answers from the shared socket must say so: only a wildcard listener has a
            // choice.
            let asked = received.local_ip.unwrap_or(self.local.ip());
            let local = SocketAddr::new(asked, self.local.port());
            let from = received
                .local_ip
                .filter(|_| self.local.ip().is_unspecified());
            let interface = received.interface;
            match (self.core).on_datagram(local, interface, peer, datagram, now, accepting) {
                Decision::Ignore => {}
                // A full queue is a lost datagram; the peer retransmits.
                Decision::Route => drop(route.map(|tx| tx.try_send((datagram.to_vec(), peer)))),
                Decision::Reply(reply) => self.reply(&reply.to_vec(), peer, from).await,
                Decision::Accept(request, permit) => {
                    self.start(request, permit, from, interface).await
                }
            }
        }
    }

    /// Send `bytes` to `peer` from the listening socket (from address `from` if given).
    async fn reply(&self, bytes: &[u8], peer: SocketAddr, from: Option<IpAddr>) {
        if let Err(e) = self.socket.send_from_to(bytes, peer, from).await {
            tracing::debug!(%peer, error = %e, "listener send failed");
        }
    }

    async fn start(
        &self,
        request: Request,
        permit: Permit,
        from: Option<IpAddr>,
        interface: Option<u32>,
    ) {
        let peer = request.peer;
        let transport = if self.core.config.single_port {
            let (tx, rx) = async_channel::bounded(64);
            lock(&self.routes).insert(peer, tx);
            Transport::Routed(Arc::clone(&self.socket), rx, from)
        } else {
            let range = self.core.config.port_range.as_ref();
            // On the asked address: the transfer's replies come from it.
            let asked = request.local.ip();
            let mut bound = crate::server::bind_transfer_on(asked, interface, range);
            if let Err(e) = &bound {
                if asked != self.local.ip() && e.kind() != io::ErrorKind::AddrInUse {
                    // The address went away meanwhile: the listener's own, as before.
                    tracing::debug!(%asked, error = %e, "cannot bind a transfer socket on the asked address");
                    bound = crate::server::bind_transfer(self.local.ip(), range);
                }
            }
            // Connected to the peer, with a catcher for strangers, where a spare descriptor
            // allows (see [`crate::connect`]).
            let registered = bound.and_then(|socket| {
                let catcher = self.core.connect_transfer(&socket, peer);
                let socket = R::Socket::from_std(socket)?;
                Ok(match catcher.map(|c| c.register(R::Socket::from_std)) {
                    Some(Ok(catcher)) => Transport::Connected(socket, catcher, peer),
                    // Connected without its catcher: strangers get the kernel's ICMP
                    // instead of an ERROR; the transfer is unaffected.
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "cannot register a catcher");
                        Transport::Socket(socket)
                    }
                    None => Transport::Socket(socket),
                })
            });
            match registered {
                Ok(transport) => transport,
                Err(e) => {
                    if let Some(reply) = self.core.no_transfer_socket(&request, &e) {
                        self.reply(&reply.to_vec(), peer, from).await;
                    }
                    return;
                }
            }
        };
        let span =
            // Debug level: entered on every poll, so at the default level it costs nothing; the
            // session's outcome is logged at info level with the same fields.
            tracing::debug_span!("session", %peer, file = %crate::request::Printable(&request.filename), kind = ?request.kind);
        let (handler, core) = (Arc::clone(&self.handler), Arc::clone(&self.core));
        let (routes, live) = (Arc::clone(&self.routes), self.live.clone());
        let io = Io {
            rt: self.rt.clone(),
            transport,
            data: None,
            complete: None,
            kill: Some(Arc::clone(&self.killed)),
            kill_listener: None,
            gone: Some(permit.replaced()),
            gone_listener: None,
            timer: None,
        };
        let task = async move {
            session(&*handler, &core, &request, io).await;
            let mut routes = lock(&routes);
            if routes.get(&peer).is_some_and(|tx| tx.is_closed()) {
                routes.remove(&peer);
            }
            drop((permit, live));
        };
        self.rt.spawn(task.instrument(span));
    }
}

/// Ask the handler (a handler still deciding when the grace period ends is answered for),
/// then serve the request over `io`.
async fn session<R: Runtime, H: Handler>(
    handler: &H,
    core: &ServerCore,
    request: &Request,
    mut io: Io<R, Data<'static>>,
) {
    let started = io.rt.now();
    let shutting_down = async {
        if let Some(kill) = &io.kill {
            kill.fired().await;
        }
        Err(HandlerError::new(
            ErrorCode::NOT_DEFINED,
            "Server shutting down",
        ))
    };
    // A handler that panics fails its own request with "Server error" (and a report), like
    // any refusal, instead of leaving the client to time out.
    let asked = async {
        let call = async {
            match request.kind {
                RequestKind::Read => handler.read(request).await.map(|r| r.into_answer()),
                RequestKind::Write => handler.write(request).await.map(|w| w.into_answer()),
            }
        };
        match std::panic::AssertUnwindSafe(call).catch_unwind().await {
            Ok(answer) => answer,
            Err(_) => {
                tracing::error!(file = %crate::request::Printable(&request.filename), "handler panicked");
                Err(HandlerError::server_error())
            }
        }
    };
    let answer = asked.or(shutting_down).await;
    let answer = answer.map(|answer| {
        (io.data, io.complete) = (Some(answer.data), answer.complete);
        (answer.size, answer.limits)
    });
    core.serve(request, answer, &mut io, started).await;
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
