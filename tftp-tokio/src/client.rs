//! The client: fetch into any `AsyncWrite`, send from any `AsyncRead`
//! ([`tftp_server::client::ClientCore`] on tokio).

use std::net::SocketAddr;

use tftp_server::ClientError;
use tftp_server::client::ClientCore;
use tftp_proto::{Config, Mode, OptionValues, SessionStats, TransferOptions};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::runtime::{Data, Tokio};

/// A TFTP client.
///
/// A download returns once the last block is stored and acknowledged; the session then
/// dallies in a background task, re-acknowledging the last block if the server repeats it
/// (its ACK was lost, RFC 1350 §6).
///
/// ```no_run
/// use tftp_tokio::{Client, Mode, OptionValues};
///
/// # async fn run() -> Result<(), tftp_tokio::ClientError> {
/// let options = OptionValues { blksize: Some(1468), windowsize: Some(8), tsize: Some(0), ..Default::default() };
/// let mut file = tokio::fs::File::create("pxelinux.0").await?;
/// let stats = Client::new()
///     .get("192.0.2.1:69".parse().unwrap(), "pxelinux.0", Mode::Octet, options, &mut file)
///     .await?;
/// println!("{} bytes", stats.bytes);
/// # Ok(()) }
/// ```
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
            .get(&Tokio, server, filename, mode, options, dest)
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
            .put(&Tokio, server, filename, mode, options, source)
            .await
    }
}
