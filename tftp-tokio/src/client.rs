//! The client: fetch into any `AsyncWrite`, send from any `AsyncRead`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use tftp_common::ClientError;
use tftp_proto::{ClientSession, Config, Event, Mode, OptionValues, SessionStats, TransferOptions};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UdpSocket;

use crate::drive::{Data, Io, Transport};
use tftp_common::drive::drive;

type NegotiatedCallback = Arc<dyn Fn(&TransferOptions) + Send + Sync>;

/// A TFTP client.
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
pub struct Client {
    config: Config,
    on_negotiated: Option<NegotiatedCallback>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with the default configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// A client with `config` (timeouts, retries, rollover, size limit).
    pub fn with_config(config: Config) -> Self {
        Client {
            config,
            on_negotiated: None,
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
        let session = ClientSession::get(
            server,
            filename,
            mode,
            options,
            &self.config,
            Instant::now(),
        )?;
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
        let session = ClientSession::put(
            server,
            filename,
            mode,
            options,
            &self.config,
            Instant::now(),
        )?;
        let source: Pin<&mut R> = Pin::new(&mut source);
        self.run(session, Data::Source(source)).await
    }

    async fn run(
        &self,
        mut session: ClientSession,
        data: Data<'_>,
    ) -> Result<SessionStats, ClientError> {
        let local = tftp_common::client::local_addr(session.peer());
        let transport = Transport::Socket(UdpSocket::bind(local).await?);
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
        if !session.is_closed() {
            // Dally in the background: re-acknowledge a repeated last block (RFC 1350 §6).
            let mut io = Io {
                transport: io.transport,
                data: Data::None,
                kill: None,
            };
            tokio::spawn(async move {
                drive(&mut session, &mut io, false, |_| {}).await;
            });
        }
        tftp_common::client::into_result(stats)
    }
}
