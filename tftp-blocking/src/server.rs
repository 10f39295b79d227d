//! The server: its listeners bound, its event loops run by the thread that calls
//! [`Server::serve`] (and `workers - 1` more), its shutdown.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, mpsc};

use tftp_server::budget::WindowBudget;
use tftp_server::server::ServerOptions;
use tftp_server::{ServerCore, StatsCollector};

use crate::event_loop::{Loop, Shared, Stop};
use crate::handler::Handler;
use crate::pool::{Inbox, Pool};
use crate::reactor::Poller;

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
    handler: Arc<H>,
    core: Arc<ServerCore>,
    listeners: Vec<UdpSocket>,
    workers: usize,
    io_threads: usize,
    shutdown: ShutdownHandle,
}

impl<H> std::fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("core", &self.core)
            .field("workers", &self.workers)
            .field("io_threads", &self.io_threads)
            .finish_non_exhaustive()
    }
}

/// Stops a running [`Server`] from any thread: it stops accepting, lets running transfers
/// finish for up to [`tftp_server::ServerConfig::shutdown_grace`], aborts the rest with ERROR
/// "Server shutting down", and [`Server::serve`] returns. A shutdown before `serve` makes it
/// return at once.
#[derive(Debug, Clone, Default)]
pub struct ShutdownHandle(Arc<Stop>);

impl ShutdownHandle {
    /// Begin the graceful shutdown (idempotent).
    pub fn shutdown(&self) {
        self.0.shutdown();
    }
}

/// One event loop a CPU, at least one.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl<H: Handler> Server<H> {
    /// Bind the listeners of `options` (std sockets in non-blocking mode; nothing runs until
    /// [`Server::serve`]). One event loop a CPU ([`Server::workers`], as `tftpd --threads 0`),
    /// up to 512 blocking calls at once ([`Server::io_threads`], as tokio's blocking pool).
    pub fn bind(handler: H, options: ServerOptions) -> io::Result<Self> {
        let listeners = (options.bind_all()?.into_iter())
            .map(|s| Arc::try_unwrap(s).or_else(|s| s.try_clone()))
            .collect::<io::Result<Vec<_>>>()?;
        if listeners.is_empty() {
            let kind = io::ErrorKind::InvalidInput;
            return Err(io::Error::new(kind, "no address to listen on"));
        }
        Ok(Server {
            handler: Arc::new(handler),
            core: ServerCore::new(&options),
            listeners,
            workers: default_workers(),
            io_threads: 512,
            shutdown: ShutdownHandle::default(),
        })
    }

    /// Run `n` event loops, each on its own thread (the one that calls [`Server::serve`] and
    /// `n - 1` more), each with its own epoll instance. Listener `i` is served by loop
    /// `i % n`. With a transfer port per session (the default), sessions are dealt to the
    /// loops in turn and stay on theirs; in single-port mode a session runs on its
    /// listener's loop, since it shares that socket.
    ///
    /// By default one loop a CPU this process may run on
    /// ([`std::thread::available_parallelism`], which honours its CPU affinity). On two CPUs,
    /// one transfer at windowsize 64 and blksize 65464 took ×0.88 and ×0.94 of one loop's CPU
    /// per MB in two interleaved runs, at ×1.07 and ×1.00 its MB/s.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// At most `n` handler calls, chunk reads, chunk writes and completions of this server run
    /// at once, each on a thread of this server's I/O pool (threads are started on demand and
    /// exit after 10 s idle: the CPU count, at least 4, at once; more only while the oldest
    /// waiting call has waited 2 ms). Beyond `n`, calls (and the data of their transfers) wait
    /// for a free thread.
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
        let mut pollers = Vec::new();
        let mut inboxes = Vec::new();
        for _ in 0..self.workers {
            let poller = Poller::new()?;
            let (tx, rx) = mpsc::channel();
            inboxes.push(Inbox {
                tx,
                waker: poller.waker(),
            });
            pollers.push((poller, rx));
        }
        let stop = Arc::clone(&self.shutdown.0);
        {
            let mut wakers = stop.wakers.lock().unwrap_or_else(|p| p.into_inner());
            wakers.extend(inboxes.iter().map(|i| Arc::clone(&i.waker)));
        }
        let shared = Shared {
            handler: self.handler,
            budget: WindowBudget::new(self.core.config.window_memory),
            core: Arc::clone(&self.core),
            pool: Pool::new(self.io_threads),
            stop,
            inboxes,
            live: AtomicUsize::new(0),
            next_loop: AtomicUsize::new(0),
        };
        let mut listeners: Vec<Vec<UdpSocket>> = (0..self.workers).map(|_| Vec::new()).collect();
        for (i, socket) in self.listeners.into_iter().enumerate() {
            listeners[i % self.workers].push(socket);
        }
        let shared = &shared;
        let result = std::thread::scope(|scope| {
            let mut loops = Vec::new();
            for (me, ((poller, inbox), listeners)) in pollers.into_iter().zip(listeners).enumerate()
            {
                loops.push(Loop::new(shared, me, poller, inbox, listeners)?);
            }
            let mut threads = Vec::new();
            let mut loops = loops.into_iter();
            let first = loops.next();
            for event_loop in loops {
                let thread = std::thread::Builder::new().name("tftp-loop".into());
                // A loop that fails stops the others: they end once the sessions have.
                let run = move || event_loop.run().inspect_err(|_| shared.stop.shutdown());
                match thread.spawn_scoped(scope, run) {
                    Ok(t) => threads.push(t),
                    Err(e) => {
                        shared.stop.shutdown();
                        return Err(e);
                    }
                }
            }
            let mut result = match first {
                Some(event_loop) => event_loop.run().inspect_err(|_| shared.stop.shutdown()),
                None => Ok(()),
            };
            for t in threads {
                let joined = t
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("event loop panicked")));
                result = result.and(joined);
            }
            result
        });
        // The statistics outlive the sessions, then report the last partial interval.
        if self.core.wants_stats() {
            self.core.report_interval(std::time::Instant::now());
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
