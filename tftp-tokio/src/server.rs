//! The server: listeners, one task per session, statistics, graceful shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tftp_common::server::{ServerOptions, bind_transfer};
use tftp_common::{Decision, HandlerError, Permit, Request, ServerCore, StatsCollector};
use tftp_proto::RequestKind;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::drive::{Data, Io, Transport};
use crate::handler::Handler;

type Routes = Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<(Vec<u8>, SocketAddr)>>>>;

/// A TFTP server around a [`Handler`] (fbtftp's `BaseServer`).
///
/// ```no_run
/// use tftp_tokio::{Handler, HandlerError, ReadResponse, Request, Server, ServerOptions};
///
/// struct Hello;
/// impl Handler for Hello {
///     async fn read(&self, _: &Request) -> Result<ReadResponse, HandlerError> {
///         Ok(ReadResponse::from_bytes(b"hello\n".to_vec()))
///     }
/// }
///
/// # async fn run() -> std::io::Result<()> {
/// let handler = Hello;
/// let options = ServerOptions::new()
///     .listen("[::]:69".parse().unwrap())
///     .on_stats(|s| println!("{} sessions in the last minute", s.sessions_started));
/// Server::bind(handler, options)?.serve_until(async { let _ = tokio::signal::ctrl_c().await; }).await
/// # }
/// ```
pub struct Server<H> {
    handler: Arc<H>,
    core: Arc<ServerCore>,
    listeners: Vec<Arc<UdpSocket>>,
}

impl<H> std::fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> Server<H> {
    /// Bind the listeners of `options` (must be called inside a tokio runtime).
    pub fn bind(handler: H, options: ServerOptions) -> io::Result<Self> {
        let listeners = options
            .bind_all()?
            .into_iter()
            .map(|s| {
                let s = Arc::try_unwrap(s).or_else(|s| s.try_clone())?;
                UdpSocket::from_std(s).map(Arc::new)
            })
            .collect::<io::Result<Vec<_>>>()?;
        if listeners.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no address to listen on",
            ));
        }
        Ok(Server {
            handler: Arc::new(handler),
            core: ServerCore::new(&options),
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
        self.serve_until(std::future::pending()).await
    }

    /// Serve until `shutdown` completes; then stop accepting, let running transfers finish
    /// for up to [`tftp_common::ServerConfig::shutdown_grace`], abort the rest with an ERROR,
    /// and return.
    pub async fn serve_until(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let stop = CancellationToken::new();
        let kill = CancellationToken::new();
        let tracker = TaskTracker::new();
        for socket in &self.listeners {
            let listener = Listener {
                socket: Arc::clone(socket),
                local: socket.local_addr()?,
                handler: Arc::clone(&self.handler),
                core: Arc::clone(&self.core),
                routes: Routes::default(),
                tracker: tracker.clone(),
                kill: kill.clone(),
            };
            tracker.spawn(listener.run(stop.clone()));
        }
        // The statistics task outlives the sessions, then reports the last partial interval.
        let stats_stop = CancellationToken::new();
        let stats = self.core.wants_stats().then(|| {
            let (core, stop) = (Arc::clone(&self.core), stats_stop.clone());
            tokio::spawn(async move {
                let period = core.config.stats_interval;
                let mut ticks = tokio::time::interval_at((Instant::now() + period).into(), period);
                loop {
                    tokio::select! {
                        _ = ticks.tick() => { core.report_interval(Instant::now()); }
                        () = stop.cancelled() => break,
                    }
                }
                core.report_interval(Instant::now());
            })
        });
        shutdown.await;
        tracing::info!(
            active = self.core.stats().active_sessions(),
            "shutting down"
        );
        stop.cancel();
        tracker.close();
        let grace = self.core.config.shutdown_grace;
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            kill.cancel();
            tracker.wait().await;
        }
        stats_stop.cancel();
        if let Some(task) = stats {
            let _ = task.await;
        }
        Ok(())
    }
}

struct Listener<H> {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    handler: Arc<H>,
    core: Arc<ServerCore>,
    routes: Routes,
    tracker: TaskTracker,
    kill: CancellationToken,
}

impl<H: Handler> Listener<H> {
    async fn run(self, stop: CancellationToken) {
        let mut buf = vec![0u8; 65536];
        let mut accepting = true;
        loop {
            // After shutdown, a single-port listener still routes datagrams to the sessions it
            // carries until they are done; a per-port listener has nothing left to do.
            if !accepting && lock(&self.routes).is_empty() {
                return;
            }
            let (n, peer) = tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok(r) => r,
                    Err(e) => { tracing::debug!(error = %e, "listener recv failed"); continue; }
                },
                () = stop.cancelled(), if accepting => { accepting = false; continue; }
                () = tokio::time::sleep(std::time::Duration::from_millis(50)), if !accepting => continue,
            };
            let route = lock(&self.routes).get(&peer).cloned();
            let now = Instant::now();
            match (self.core).on_datagram(
                self.local,
                peer,
                &buf[..n],
                now,
                route.is_some(),
                accepting,
            ) {
                Decision::Ignore => {}
                // A full queue is a lost datagram; the peer retransmits.
                Decision::Route => drop(route.map(|tx| tx.try_send((buf[..n].to_vec(), peer)))),
                Decision::Reply(reply) => drop(self.socket.send_to(&reply.to_vec(), peer).await),
                Decision::Accept(request, permit) => self.start(request, permit).await,
            }
        }
    }

    async fn start(&self, request: Request, permit: Permit) {
        let peer = request.peer;
        let transport = if self.core.config.single_port {
            let (tx, rx) = mpsc::channel(64);
            lock(&self.routes).insert(peer, tx);
            Transport::Routed(Arc::clone(&self.socket), rx)
        } else {
            let range = self.core.config.port_range.as_ref();
            match bind_transfer(self.local.ip(), range).and_then(UdpSocket::from_std) {
                Ok(socket) => Transport::Socket(socket),
                Err(e) => {
                    let reply = self.core.no_transfer_socket(&request, &e);
                    let _ = self.socket.send_to(&reply.to_vec(), peer).await;
                    return;
                }
            }
        };
        let span =
            tracing::info_span!("session", %peer, file = %request.filename, kind = ?request.kind);
        let (handler, core, kill) = (
            Arc::clone(&self.handler),
            Arc::clone(&self.core),
            self.kill.clone(),
        );
        let routes = Arc::clone(&self.routes);
        self.tracker.spawn(
            async move {
                session(&*handler, &core, &request, transport, kill).await;
                let mut routes = lock(&routes);
                if routes.get(&peer).is_some_and(|tx| tx.is_closed()) {
                    routes.remove(&peer);
                }
                drop(permit);
            }
            .instrument(span),
        );
    }
}

async fn session<H: Handler>(
    handler: &H,
    core: &ServerCore,
    request: &Request,
    transport: Transport,
    kill: CancellationToken,
) {
    let started = Instant::now();
    let (mut reader, mut writer);
    let (answer, data) = match request.kind {
        RequestKind::Read => {
            match tokio::select! { r = handler.read(request) => r, () = kill.cancelled() => shutting_down() }
            {
                Ok(r) => {
                    reader = r.reader;
                    (Ok((r.size, r.limits)), Data::Source(reader.as_mut()))
                }
                Err(e) => (Err(e), Data::None),
            }
        }
        RequestKind::Write => {
            match tokio::select! { w = handler.write(request) => w, () = kill.cancelled() => shutting_down() }
            {
                Ok(w) => {
                    writer = w;
                    let complete = writer.complete.take();
                    (
                        Ok((None, writer.limits)),
                        Data::Sink(writer.writer.as_mut(), true, complete),
                    )
                }
                Err(e) => (Err(e), Data::None),
            }
        }
    };
    let mut io = Io {
        transport,
        data,
        kill: Some(kill),
    };
    core.serve(request, answer, &mut io, started).await;
}

/// A handler still deciding when the grace period ends gets this answer.
fn shutting_down<T>() -> Result<T, HandlerError> {
    Err(HandlerError::new(
        tftp_proto::ErrorCode::NOT_DEFINED,
        "Server shutting down",
    ))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}
