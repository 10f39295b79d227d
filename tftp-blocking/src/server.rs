//! The server: its listeners, its event loops and I/O pool, and its shutdown.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mio::Waker;
use tftp_common::server::ServerOptions;
use tftp_common::{ServerCore, StatsCollector};

use crate::event_loop::Worker;
use crate::handler::Handler;
use crate::pool::{Pool, lock};

/// A TFTP server around a [`Handler`] (fbtftp's `BaseServer`), on its own threads.
///
/// ```no_run
/// use tftp_blocking::{DirHandler, Server, ServerOptions};
///
/// let handler = DirHandler::new("/srv/tftp", Default::default())?;
/// let options = ServerOptions::new()
///     .listen("[::]:69".parse().unwrap())
///     .on_stats(|s| println!("{} sessions in the last minute", s.sessions_started));
/// let server = Server::bind(handler, options)?.workers(2);
/// let stop = server.shutdown_handle(); // e.g. for a signal handler thread
/// server.serve()
/// # ; Ok::<(), std::io::Error>(())
/// ```
pub struct Server<H> {
    pub(crate) handler: Arc<H>,
    pub(crate) core: Arc<ServerCore>,
    pub(crate) listeners: Vec<Arc<UdpSocket>>,
    workers: usize,
    io_threads: usize,
    pub(crate) shutdown: ShutdownHandle,
}

impl<H> std::fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("core", &self.core)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

/// Stops a running [`Server`] from any thread: it stops accepting, lets running transfers
/// finish for up to [`tftp_common::ServerConfig::shutdown_grace`], aborts the rest with ERROR
/// "Server shutting down", and [`Server::serve`] returns.
#[derive(Debug, Clone, Default)]
pub struct ShutdownHandle(pub(crate) Arc<(AtomicBool, Mutex<Vec<Arc<Waker>>>)>);

impl ShutdownHandle {
    /// Begin the graceful shutdown (idempotent).
    pub fn shutdown(&self) {
        self.0.0.store(true, Ordering::SeqCst);
        for waker in lock(&self.0.1).iter() {
            let _ = waker.wake();
        }
    }

    pub(crate) fn triggered(&self) -> bool {
        self.0.0.load(Ordering::SeqCst)
    }
}

impl<H: Handler> Server<H> {
    /// Bind the listeners of `options`. One event loop, up to 512 I/O threads (as tokio's
    /// blocking pool).
    pub fn bind(handler: H, options: ServerOptions) -> io::Result<Self> {
        let listeners = options.bind_all()?;
        if listeners.is_empty() {
            let e = "no address to listen on";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, e));
        }
        Ok(Server {
            handler: Arc::new(handler),
            core: ServerCore::new(&options),
            listeners,
            workers: 1,
            io_threads: 512,
            shutdown: ShutdownHandle::default(),
        })
    }

    /// Run `n` event loops, each on its own thread, all reading the listeners; a session
    /// stays on the loop that accepted it. Single-port mode always runs one loop (all its
    /// datagrams arrive on one socket).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// At most `n` threads for handler calls and data I/O (started on demand, stopped after
    /// 5 s idle). Each blocked call holds one; beyond `n`, calls (and the data of every
    /// transfer) wait for a free thread.
    pub fn io_threads(mut self, n: usize) -> Self {
        self.io_threads = n.max(1);
        self
    }

    /// The addresses the listeners are bound to.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.listeners.iter().map(|s| s.local_addr()).collect()
    }

    /// Running totals (for a metrics endpoint).
    pub fn stats(&self) -> &StatsCollector {
        self.core.stats()
    }

    /// A handle that shuts the server down once it serves.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Serve on this thread (plus `workers - 1` more) until a [`ShutdownHandle`] is triggered,
    /// then shut down gracefully, report the last partial statistics interval, and return.
    pub fn serve(self) -> io::Result<()> {
        let pool = Pool::new(self.io_threads);
        let n = if self.core.config.single_port {
            1
        } else {
            self.workers
        };
        let mut threads = Vec::new();
        let mut result = Ok(());
        for i in (0..n).rev() {
            let worker = match Worker::new(&self, &pool, i == 0) {
                Ok(worker) => worker,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            if i == 0 {
                result = worker.run();
            } else {
                let thread = std::thread::Builder::new().name("tftp-loop".into());
                match thread.spawn(|| worker.run()) {
                    Ok(t) => threads.push(t),
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        // Stop the other loops too if this one failed.
        self.shutdown.shutdown();
        for t in threads {
            let joined = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("loop panicked")));
            result = result.and(joined);
        }
        if self.core.wants_stats() {
            self.core.report_interval(Instant::now());
        }
        result
    }

    /// Serve until `shutdown` (run on a thread of its own, e.g. waiting for a signal or a
    /// channel) returns; then as [`Server::serve`] after a [`ShutdownHandle`].
    pub fn serve_until(self, shutdown: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let handle = self.shutdown_handle();
        std::thread::Builder::new()
            .name("tftp-shutdown".into())
            .spawn(move || {
                shutdown();
                handle.shutdown();
            })?;
        self.serve()
    }
}
