//! The client: fetch into any `AsyncWrite`, send from any `AsyncRead` (futures-io traits).

use std::fmt;
use std::net::{SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use async_io::Async;
use futures_lite::{AsyncRead, AsyncWrite};
use tftp_common::ClientError;
use tftp_common::drive::drive;
use tftp_proto::{ClientSession, Config, Event, Mode, OptionValues, SessionStats, TransferOptions};

use crate::drive::{Data, Io, Transport};

type NegotiatedCallback = Arc<dyn Fn(&TransferOptions) + Send + Sync>;

/// A TFTP client.
///
/// A transfer returns as soon as its outcome is known. Unlike tftp-tokio's client, it does
/// not dally after the last ACK of a download (RFC 1350 §6): that would need a task that
/// outlives the call, and this crate has no runtime to spawn it on. If that ACK is lost, the
/// server retransmits in vain and reports a timeout, though the client has the whole file.
///
/// Examples under async-std and smol are in the [crate documentation](crate).
#[derive(Clone, Default)]
pub struct Client {
    config: Config,
    on_negotiated: Option<NegotiatedCallback>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Client");
        d.field("config", &self.config).finish_non_exhaustive()
    }
}

impl Client {
    /// A client with the default configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// A client with `config` (timeouts, retries, rollover, size limit).
    pub fn with_config(config: Config) -> Self {
        let on_negotiated = None;
        Client {
            config,
            on_negotiated,
        }
    }

    /// Call `f` once the transfer parameters are known (e.g. `tsize`, for a progress bar).
    pub fn on_negotiated(mut self, f: impl Fn(&TransferOptions) + Send + Sync + 'static) -> Self {
        self.on_negotiated = Some(Arc::new(f));
        self
    }

    /// Read `filename` from `server` into `dest`. Ask for `tsize: Some(0)` to learn the size.
    pub async fn get<W: AsyncWrite + Send + Unpin>(
        &self,
        server: SocketAddr,
        filename: &str,
        mode: Mode,
        options: OptionValues,
        mut dest: W,
    ) -> Result<SessionStats, ClientError> {
        let now = Instant::now();
        let session = ClientSession::get(server, filename, mode, options, &self.config, now)?;
        let dest: Pin<&mut W> = Pin::new(&mut dest);
        self.run(session, Data::Sink(dest, false, None)).await
    }

    /// Write `source` to `server` as `filename`. Set `tsize` to the size if known.
    pub async fn put<R: AsyncRead + Send + Unpin>(
        &self,
        server: SocketAddr,
        filename: &str,
        mode: Mode,
        options: OptionValues,
        mut source: R,
    ) -> Result<SessionStats, ClientError> {
        let now = Instant::now();
        let session = ClientSession::put(server, filename, mode, options, &self.config, now)?;
        let source: Pin<&mut R> = Pin::new(&mut source);
        self.run(session, Data::Source(source)).await
    }

    async fn run(
        &self,
        mut session: ClientSession,
        data: Data<'_>,
    ) -> Result<SessionStats, ClientError> {
        let local = tftp_common::client::local_addr(session.peer());
        let transport = Transport::Socket(Async::<UdpSocket>::bind(local)?);
        let mut io = Io {
            transport,
            data,
            kill: None,
        };
        let stats = drive(&mut session, &mut io, true, |event| {
            if let (Event::Negotiated(o), Some(f)) = (event, &self.on_negotiated) {
                f(o);
            }
        })
        .await
        .unwrap_or_else(|| session.stats().clone());
        tftp_common::client::into_result(stats)
    }
}
