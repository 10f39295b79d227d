//! The client: fetch into any `Write`, send from any `Read`, on the calling thread.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tftp_common::drive::{SessionIo, Wake, drive};
use tftp_common::{ClientError, HandlerError};
use tftp_proto::{ClientSession, Config, Event, Mode, OptionValues, SessionStats, TransferOptions};

type NegotiatedCallback = Arc<dyn Fn(&TransferOptions) + Send + Sync>;

/// A blocking TFTP client: one UDP socket per transfer, read timeouts for the retransmission
/// timer, driven on the calling thread by the session loop the async clients share
/// ([`tftp_common::drive`]).
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
    pub fn get(
        &self,
        server: SocketAddr,
        filename: &str,
        mode: Mode,
        options: OptionValues,
        mut dest: impl Write + Send,
    ) -> Result<SessionStats, ClientError> {
        let now = Instant::now();
        let session = ClientSession::get(server, filename, mode, options, &self.config, now)?;
        self.run(session, Data::Sink(&mut dest))
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
        let now = Instant::now();
        let session = ClientSession::put(server, filename, mode, options, &self.config, now)?;
        self.run(session, Data::Source(&mut source))
    }

    fn run(&self, mut session: ClientSession, data: Data<'_>) -> Result<SessionStats, ClientError> {
        let local = tftp_common::client::local_addr(session.peer());
        let mut io = Io(UdpSocket::bind(local)?, data);
        let stats = block_on(drive(&mut session, &mut io, true, |event| {
            if let (Event::Negotiated(o), Some(f)) = (event, &self.on_negotiated) {
                f(o);
            }
        }))
        .unwrap_or_else(|| session.stats().clone());
        if !session.is_closed() {
            // Dally in the background (see the type's docs).
            let mut io = Io(io.0, Data::None);
            std::thread::spawn(move || block_on(drive(&mut session, &mut io, false, |_| {})));
        }
        tftp_common::client::into_result(stats)
    }
}

enum Data<'a> {
    Source(&'a mut (dyn Read + Send)),
    Sink(&'a mut (dyn Write + Send)),
    None,
}

/// A transfer's socket and data, blocking: the shared loop's futures are always ready.
struct Io<'a>(UdpSocket, Data<'a>);

impl SessionIo for Io<'_> {
    async fn send(&mut self, to: SocketAddr, bytes: &[u8]) {
        if let Err(e) = self.0.send_to(bytes, to) {
            tracing::debug!(%to, error = %e, "send failed");
        }
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.1 {
            Data::Source(source) => source.read(buf),
            _ => Ok(0),
        }
    }

    async fn write(&mut self, data: &[u8], last: bool) -> Result<(), HandlerError> {
        let Data::Sink(sink) = &mut self.1 else {
            return Ok(());
        };
        sink.write_all(data)?;
        if last {
            sink.flush()?;
        }
        Ok(())
    }

    async fn wait(&mut self, deadline: Option<Instant>, buf: &mut [u8]) -> Wake {
        let now = Instant::now();
        match deadline {
            Some(d) if d <= now => return Wake::Deadline,
            d => {
                let _ = self.0.set_read_timeout(d.map(|d| d - now));
            }
        }
        match self.0.recv_from(buf) {
            Ok((n, from)) => Wake::Datagram(n, from),
            // A timeout, or an ICMP error (not the peer's words): let the session check its
            // deadline, which does nothing before it.
            Err(_) => Wake::Deadline,
        }
    }
}

/// Run a future that never waits: every `SessionIo` call above completes before returning.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}
