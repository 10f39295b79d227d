//! The server: listeners, one task per session, statistics, graceful shutdown
//! ([`tftp_server::serve`] on async-io, its tasks on an executor of its own).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use async_executor::Executor;
use tftp_server::server::ServerOptions;
use tftp_server::{StatsCollector, serve};

use crate::handler::{Bridge, Handler};
use tftp_server::async_io::AsyncIo;

/// A TFTP server around a [`Handler`] (fbtftp's `BaseServer`).
///
/// Its sessions run on an executor inside the [`serve`](Self::serve) future, so they make
/// progress on whichever thread polls that future (async-std's, smol's, or a `block_on`).
/// File I/O in [`DirHandler`](crate::DirHandler) runs on the `blocking` thread pool.
///
/// Examples under async-std and smol are in the [crate documentation](crate).
pub struct Server<H>(serve::Server<AsyncIo, Bridge<H>>);

impl<H> std::fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<H: Handler> Server<H> {
    /// Bind the listeners of `options` (needs no runtime).
    pub fn bind(handler: H, options: ServerOptions) -> io::Result<Self> {
        serve::Server::bind(Bridge(handler), options).map(Server)
    }

    /// The addresses the listeners are bound to.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.0.local_addrs()
    }

    /// Running totals (for a metrics endpoint).
    pub fn stats(&self) -> &StatsCollector {
        self.0.stats()
    }

    /// Serve forever.
    pub async fn serve(self) -> io::Result<()> {
        self.serve_until(std::future::pending()).await
    }

    /// Serve until `shutdown` completes; then stop accepting, let running transfers finish
    /// for up to [`tftp_server::ServerConfig::shutdown_grace`], abort the rest with an ERROR,
    /// and return. Dropping the future instead drops every session at once.
    pub async fn serve_until(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let executor = Arc::new(Executor::new());
        let runtime = AsyncIo::Server(Arc::downgrade(&executor));
        executor.run(self.0.serve_until(runtime, shutdown)).await
    }
}
