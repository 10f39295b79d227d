//! The client: fetch into any `AsyncWrite`, send from any `AsyncRead` (futures-io traits;
//! [`tftp_server::client::ClientCore`] on async-io).

use std::net::SocketAddr;

use futures_lite::{AsyncRead, AsyncWrite};
use tftp_server::ClientError;
use tftp_server::client::ClientCore;
use tftp_proto::{Config, Mode, OptionValues, SessionStats, TransferOptions};

use crate::runtime::Data;
use tftp_server::async_io::AsyncIo;

/// A TFTP client.
///
/// A transfer returns as soon as its outcome is known. After the last ACK of a download it
/// keeps answering a repeated last block for a while (dallying, RFC 1350 §6) on a short-lived
/// thread of its own, since this crate has no runtime to spawn a task on.
///
/// Examples under async-std and smol are in the [crate documentation](crate).
#[derive(Clone, Default)]
pub struct Client(ClientCore);

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Client {
    /// A client with the default configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// A client with `config` (timeouts, retries, rollover, size limit).
    pub fn with_config(config: Config) -> Self {
        Client(ClientCore::new(config))
    }

    /// Call `f` once the transfer parameters are known (e.g. `tsize`, for a progress bar).
    pub fn on_negotiated(self, f: impl Fn(&TransferOptions) + Send + Sync + 'static) -> Self {
        Client(self.0.on_negotiated(f))
    }

    /// Read `filename` from `server` into `dest`. Ask for `tsize: Some(0)` to learn the size.
    pub async fn get<W: AsyncWrite + Send + Unpin>(
        &self,
        server: SocketAddr,
        filename: &str,
        mode: Mode,
        options: OptionValues,
        dest: W,
    ) -> Result<SessionStats, ClientError> {
        let dest = Data::Sink(Box::pin(dest), false);
        self.0
            .get(&AsyncIo::Client, server, filename, mode, options, dest)
            .await
    }

    /// Write `source` to `server` as `filename`. Set `tsize` to the size if known.
    pub async fn put<R: AsyncRead + Send + Unpin>(
        &self,
        server: SocketAddr,
        filename: &str,
        mode: Mode,
        options: OptionValues,
        source: R,
    ) -> Result<SessionStats, ClientError> {
        let source = Data::Source(Box::pin(source));
        self.0
            .put(&AsyncIo::Client, server, filename, mode, options, source)
            .await
    }
}
