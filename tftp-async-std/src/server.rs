//! The server: listeners, one task per session, statistics, graceful shutdown.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use async_channel::{Receiver, Sender};
use async_executor::Executor;
use async_io::{Async, Timer};
use futures_lite::{FutureExt, StreamExt};
use tftp_common::server::{ServerOptions, bind_transfer};
use tftp_common::{Decision, HandlerError, Permit, Request, ServerCore, StatsCollector};
use tftp_proto::{ErrorCode, RequestKind};
use tracing::Instrument;

use crate::drive::{Data, Io, Routed, Transport, send_error};
use crate::handler::Handler;

type Routes = Arc<Mutex<HashMap<SocketAddr, Sender<Routed>>>>;

/// A TFTP server around a [`Handler`] (fbtftp's `BaseServer`).
///
/// Its sessions run on an executor inside the [`serve`](Self::serve) future, so they make
/// progress on whichever thread polls that future (async-std's, smol's, or a `block_on`).
/// File I/O in [`DirHandler`](crate::DirHandler) runs on the `blocking` thread pool.
///
/// Examples under async-std and smol are in the [crate documentation](crate).
pub struct Server<H> {
    handler: Arc<H>,
    core: Arc<ServerCore>,
    listeners: Vec<Arc<Async<UdpSocket>>>,
}

impl<H> fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Server");
        d.field("core", &self.core).finish_non_exhaustive()
    }
}

impl<H: Handler> Server<H> {
    /// Bind the listeners of `options` (needs no runtime).
    pub fn bind(handler: H, options: ServerOptions) -> io::Result<Self> {
        let listeners = (options.bind_all()?.into_iter())
            .map(|s| Async::new(Arc::try_unwrap(s).or_else(|s| s.try_clone())?).map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        if listeners.is_empty() {
            let kind = io::ErrorKind::InvalidInput;
            return Err(io::Error::new(kind, "no address to listen on"));
        }
        let core = ServerCore::new(&options);
        Ok(Server {
            handler: Arc::new(handler),
            core,
            listeners,
        })
    }

    /// The addresses the listeners are bound to.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.listeners
            .iter()
            .map(|s| s.get_ref().local_addr())
            .collect()
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
    /// and return. Dropping the future instead drops every session at once.
    pub async fn serve_until(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let executor = Arc::new(Executor::new());
        // Signals: a channel closes when its last sender is dropped. Each session holds a
        // `live` sender and listens on `kill`.
        let (live, all_ended) = async_channel::bounded::<()>(1);
        let (kill, killed) = async_channel::bounded::<()>(1);
        let (stop, stopped) = async_channel::bounded::<()>(1);
        for socket in &self.listeners {
            let listener = Listener {
                socket: Arc::clone(socket),
                local: socket.get_ref().local_addr()?,
                handler: Arc::clone(&self.handler),
                core: Arc::clone(&self.core),
                routes: Routes::default(),
                // Weak: tasks must not keep their executor alive if this future is dropped.
                executor: Arc::downgrade(&executor),
                live: live.clone(),
                killed: killed.clone(),
            };
            executor
                .spawn(listener.run(stopped.clone(), live.clone()))
                .detach();
        }
        drop(live);
        let core = Arc::clone(&self.core);
        let stats = core.wants_stats().then(|| {
            executor.spawn(async move {
                let mut ticks = Timer::interval(core.config.stats_interval);
                while ticks.next().await.is_some() {
                    core.report_interval(Instant::now());
                }
            })
        });
        let main = async {
            shutdown.await;
            let active = self.core.stats().active_sessions();
            tracing::info!(active, "shutting down");
            drop(stop);
            // Nothing is sent on `live`: `recv` fails once every session has ended; the end
            // of the grace period says `Ok`.
            let grace = async {
                Timer::after(self.core.config.shutdown_grace).await;
                Ok(())
            };
            if all_ended.recv().or(grace).await.is_ok() {
                drop(kill);
                let _ = all_ended.recv().await;
            }
            // The statistics outlive the sessions, then report the last partial interval.
            if let Some(stats) = stats {
                stats.cancel().await;
                self.core.report_interval(Instant::now());
            }
        };
        executor.run(main).await;
        Ok(())
    }
}

struct Listener<H> {
    socket: Arc<Async<UdpSocket>>,
    local: SocketAddr,
    handler: Arc<H>,
    core: Arc<ServerCore>,
    routes: Routes,
    executor: Weak<Executor<'static>>,
    /// Held by every session: the server waits until all are dropped.
    live: Sender<()>,
    killed: Receiver<()>,
}

enum Wake {
    Datagram(io::Result<(usize, SocketAddr)>),
    Stop,
    Tick,
}

impl<H: Handler> Listener<H> {
    /// Until `stopped` closes: accept requests. Then, in single-port mode, keep routing
    /// datagrams to the running sessions until they are done. `_live` keeps the server's
    /// shutdown waiting for this listener.
    async fn run(self, stopped: Receiver<()>, _live: Sender<()>) {
        let mut buf = vec![0u8; 65536];
        let mut accepting = true;
        loop {
            if !accepting && lock(&self.routes).is_empty() {
                return;
            }
            let datagram = async { Wake::Datagram(self.socket.recv_from(&mut buf).await) };
            let other = async {
                if accepting {
                    let _ = stopped.recv().await;
                    Wake::Stop
                } else {
                    Timer::after(std::time::Duration::from_millis(50)).await;
                    Wake::Tick
                }
            };
            let (n, peer) = match datagram.or(other).await {
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
                Decision::Reply(reply) => send_error(&self.socket, peer, &reply).await,
                Decision::Accept(request, permit) => self.start(request, permit).await,
            }
        }
    }

    async fn start(&self, request: Request, permit: Permit) {
        let peer = request.peer;
        let transport = if self.core.config.single_port {
            let (tx, rx) = async_channel::bounded(64);
            lock(&self.routes).insert(peer, tx);
            Transport::Routed(Arc::clone(&self.socket), rx)
        } else {
            let range = self.core.config.port_range.as_ref();
            match bind_transfer(self.local.ip(), range).and_then(Async::new) {
                Ok(socket) => Transport::Socket(socket),
                Err(e) => {
                    let reply = self.core.no_transfer_socket(&request, &e);
                    return send_error(&self.socket, peer, &reply).await;
                }
            }
        };
        let Some(executor) = self.executor.upgrade() else {
            return;
        };
        let span =
            tracing::info_span!("session", %peer, file = %request.filename, kind = ?request.kind);
        let (handler, core) = (Arc::clone(&self.handler), Arc::clone(&self.core));
        let (routes, live, killed) = (
            Arc::clone(&self.routes),
            self.live.clone(),
            self.killed.clone(),
        );
        let task = async move {
            session(&*handler, &core, &request, transport, killed).await;
            let mut routes = lock(&routes);
            if routes.get(&peer).is_some_and(|tx| tx.is_closed()) {
                routes.remove(&peer);
            }
            drop((permit, live));
        };
        executor.spawn(task.instrument(span)).detach();
    }
}

async fn session<H: Handler>(
    handler: &H,
    core: &ServerCore,
    request: &Request,
    transport: Transport,
    killed: Receiver<()>,
) {
    let started = Instant::now();
    // A handler still deciding when the grace period ends is answered for.
    let shutting_down = || async {
        let _ = killed.recv().await;
        HandlerError::new(ErrorCode::NOT_DEFINED, "Server shutting down")
    };
    let (mut reader, mut writer);
    let (answer, data) = match request.kind {
        RequestKind::Read => match handler
            .read(request)
            .or(async { Err(shutting_down().await) })
            .await
        {
            Ok(r) => {
                reader = r.reader;
                (Ok((r.size, r.limits)), Data::Source(reader.as_mut()))
            }
            Err(e) => (Err(e), Data::None),
        },
        RequestKind::Write => match handler
            .write(request)
            .or(async { Err(shutting_down().await) })
            .await
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
        },
    };
    let mut io = Io {
        transport,
        data,
        kill: Some(killed.clone()),
    };
    core.serve(request, answer, &mut io, started).await;
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
