//! The server: listeners, one task per session, statistics, graceful shutdown
//! ([`tftp_server::serve`] on tokio).

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tftp_server::server::ServerOptions;
use tftp_server::{StatsCollector, serve};

use crate::handler::{Bridge, Handler};
use crate::runtime::Tokio;

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
pub struct Server<H>(serve::Server<Tokio, Bridge<H>>);

impl<H> std::fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<H: Handler> Server<H> {
    /// Bind the listeners of `options` (must be called inside a tokio runtime).
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
    /// and return. Dropping the future instead aborts every session at once, with an ERROR.
    pub async fn serve_until(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        self.0.serve_until(Tokio, shutdown).await
    }
}
