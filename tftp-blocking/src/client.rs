//! The client: fetch into any `Write`, send from any `Read`, on the calling thread
//! ([`tftp_common::client::ClientCore`] on async-io).

use std::io::{Read, Write};
use std::net::SocketAddr;

use tftp_common::ClientError;
use tftp_common::client::ClientCore;
use tftp_proto::{Config, Mode, OptionValues, SessionStats, TransferOptions};

use crate::data::Data;
use tftp_common::async_io::AsyncIo;

/// A blocking TFTP client: one UDP socket per transfer on async-io's epoll reactor, driven on
/// the calling thread (`async_io::block_on`) by the client loop the async adapters share.
/// The reader or writer is called on that thread.
///
/// A download returns once the last block is stored and acknowledged. The session then dallies
/// on a detached thread for a few seconds, re-acknowledging the last block if the server
/// repeats it (its ACK was lost, RFC 1350 §6), so the caller need not wait.
///
/// ```no_run
/// use tftp_blocking::{Client, Mode, OptionValues};
///
/// let options = OptionValues { blksize: Some(1468), windowsize: Some(8), tsize: Some(0), ..Default::default() };
/// let file = std::fs::File::create("pxelinux.0")?;
/// let stats = Client::new()
///     .get("192.0.2.1:69".parse().unwrap(), "pxelinux.0", Mode::Octet, options, file)?;
/// println!("{} bytes", stats.bytes);
/// # Ok::<(), tftp_blocking::ClientError>(())
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
    pub fn get(
        &self,
        server: SocketAddr,
        filename: &str,
        mode: Mode,
        options: OptionValues,
        mut dest: impl Write + Send,
    ) -> Result<SessionStats, ClientError> {
        let dest = Data::Writer(Box::new(&mut dest));
        let get = self
            .0
            .get(&AsyncIo::Client, server, filename, mode, options, dest);
        async_io::block_on(get)
    }

    /// Write `source` to `server` as `filename`. Set `tsize` to the size if known.
    pub fn put(
        &self,
        server: SocketAddr,
        filename: &str,
        mode: Mode,
        options: OptionValues,
        mut source: impl Read + Send,
    ) -> Result<SessionStats, ClientError> {
        let source = Data::Reader(Box::new(&mut source));
        let put = self
            .0
            .put(&AsyncIo::Client, server, filename, mode, options, source);
        async_io::block_on(put)
    }
}
