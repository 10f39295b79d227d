//! The server: [`tftp_common::serve`] on async-io, its sessions on an executor run by the
//! thread that calls [`Server::serve`] (and `workers - 1` more), its shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use async_channel::{Receiver, Sender};
use async_executor::Executor;
use async_lock::Semaphore;
use tftp_common::server::ServerOptions;
use tftp_common::{StatsCollector, serve};

use crate::data::Pool;
use crate::handler::{Bridge, Handler};
use tftp_common::async_io::AsyncIo;

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
    inner: serve::Server<AsyncIo, Bridge<H>>,
    /// Without permits until it serves: then [`Server::io_threads`].
    pool: Pool,
    workers: usize,
    io_threads: usize,
    shutdown: ShutdownHandle,
    stopped: Receiver<()>,
}

impl<H> std::fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("inner", &self.inner)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

/// Stops a running [`Server`] from any thread: it stops accepting, lets running transfers
/// finish for up to [`tftp_common::ServerConfig::shutdown_grace`], aborts the rest with ERROR
/// "Server shutting down", and [`Server::serve`] returns. A shutdown before `serve` makes it
/// return at once.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(Sender<()>);

impl Default for ShutdownHandle {
    /// A handle of no server.
    fn default() -> Self {
        ShutdownHandle(async_channel::bounded(1).0)
    }
}

impl ShutdownHandle {
    /// Begin the graceful shutdown (idempotent).
    pub fn shutdown(&self) {
        // Nothing is ever sent: closing the channel is the signal.
        self.0.close();
    }
}

impl<H: Handler> Server<H> {
    /// Bind the listeners of `options` (on async-io's reactor; nothing runs until
    /// [`Server::serve`]). One thread for the sessions ([`Server::workers`]), up to 512 blocking
    /// calls at once ([`Server::io_threads`], as tokio's blocking pool).
    pub fn bind(handler: H, options: ServerOptions) -> io::Result<Self> {
        let (handler, pool) = (Arc::new(handler), Pool(Arc::new(Semaphore::new(0))));
        let bridge = Bridge {
            handler,
            pool: pool.clone(),
        };
        let inner = serve::Server::bind(bridge, options)?;
        let (tx, stopped) = async_channel::bounded(1);
        Ok(Server {
            inner,
            pool,
            workers: 1,
            io_threads: 512,
            shutdown: ShutdownHandle(tx),
            stopped,
        })
    }

    /// Run the sessions on `n` threads: the one that calls [`Server::serve`] and `n - 1` more,
    /// all running one executor (a session moves to whichever thread is free). Each waits on
    /// the same epoll reactor; one of them polls it for all.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// At most `n` handler calls, chunk reads, chunk writes and completions of this server run
    /// at once, each on a thread of the `blocking` crate's pool (shared by the process, started
    /// on demand, stopped when idle, at most 500 threads unless `BLOCKING_MAX_THREADS` says
    /// otherwise). Beyond `n`, calls (and the data of every transfer) wait for a free one.
    pub fn io_threads(mut self, n: usize) -> Self {
        self.io_threads = n.max(1);
        self
    }

    /// The addresses the listeners are bound to.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.inner.local_addrs()
    }

    /// Running totals (for a metrics endpoint).
    pub fn stats(&self) -> &StatsCollector {
        self.inner.stats()
    }

    /// A handle that shuts the server down once it serves.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Serve on this thread (plus `workers - 1` more) until a [`ShutdownHandle`] is triggered,
    /// then shut down gracefully, report the last partial statistics interval, and return.
    pub fn serve(self) -> io::Result<()> {
        self.pool.0.add_permits(self.io_threads);
        let executor = Arc::new(Executor::new());
        let rt = AsyncIo::Server(Arc::downgrade(&executor));
        let result = std::thread::scope(|scope| {
            // The other workers run the executor until this one is done, or fails to start
            // them: `done` is dropped either way.
            let (done, finished) = async_channel::bounded::<()>(1);
            for _ in 1..self.workers {
                let (executor, finished) = (&executor, finished.clone());
                let worker = move || async_io::block_on(executor.run(finished.recv()));
                let thread = std::thread::Builder::new().name("tftp-worker".into());
                thread.spawn_scoped(scope, worker)?;
            }
            let stopped = self.stopped;
            let stop = async move {
                let _ = stopped.recv().await;
            };
            let served = async_io::block_on(executor.run(self.inner.serve_until(rt, stop)));
            drop(done);
            served
        });
        // Held until here: its channel closes, the shutdown signal, once no sender is left.
        drop(self.shutdown);
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
