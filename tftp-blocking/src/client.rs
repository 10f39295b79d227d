//! The client: fetch into any `Write`, send from any `Read`, on the calling thread.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

use tftp_common::{ClientError, HandlerError};
use tftp_proto::{
    ClientSession, Config, Event, Mode, OptionValues, Outcome, Output, SessionStats,
    TransferOptions,
};

type NegotiatedCallback = Arc<dyn Fn(&TransferOptions) + Send + Sync>;

/// A blocking TFTP client: one UDP socket per transfer, read timeouts for the retransmission
/// timer.
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
        mut dest: impl Write,
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
        mut source: impl Read,
    ) -> Result<SessionStats, ClientError> {
        let now = Instant::now();
        let session = ClientSession::put(server, filename, mode, options, &self.config, now)?;
        self.run(session, Data::Source(&mut source))
    }

    fn run(&self, mut session: ClientSession, data: Data<'_>) -> Result<SessionStats, ClientError> {
        let local: SocketAddr = match session.peer() {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local)?;
        let stats = drive(&mut session, &socket, data, |o| {
            if let Some(f) = &self.on_negotiated {
                f(o);
            }
        });
        if !session.is_closed() {
            // Dally in the background (see the type's docs).
            std::thread::spawn(move || drive(&mut session, &socket, Data::None, |_| {}));
        }
        match stats.outcome {
            Outcome::Failed(e) => Err(e.into()),
            Outcome::Completed | Outcome::SizeProbe => Ok(stats),
        }
    }
}

enum Data<'a> {
    Source(&'a mut dyn Read),
    Sink(&'a mut dyn Write),
    None,
}

/// Drive `session` until its outcome is known ([`Event::Finished`]) or it closes.
fn drive(
    session: &mut ClientSession,
    socket: &UdpSocket,
    mut data: Data<'_>,
    negotiated: impl Fn(&TransferOptions),
) -> SessionStats {
    let mut buf = vec![0u8; 65536];
    loop {
        let now = Instant::now();
        let failed = match session.poll_output(now) {
            Output::Transmit(t) => {
                if let Err(e) = socket.send_to(t.contents, t.destination) {
                    tracing::debug!(to = %t.destination, error = %e, "send failed");
                }
                None
            }
            Output::Fill(mut fill) => {
                let Data::Source(source) = &mut data else {
                    fill.finish();
                    continue;
                };
                match source.read(fill.buf()) {
                    Ok(0) => {
                        fill.finish();
                        None
                    }
                    Ok(n) => {
                        let _ = fill.advance(n);
                        None
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
                    Err(e) => Some(e),
                }
            }
            Output::Store(mut store) => {
                let last = store.is_last();
                let written = match &mut data {
                    Data::Sink(w) => w
                        .write_all(store.data())
                        .and_then(|()| if last { w.flush() } else { Ok(()) }),
                    _ => Ok(()),
                };
                written.map(|()| store.stored()).err()
            }
            Output::Event(Event::Negotiated(o)) => {
                negotiated(&o);
                None
            }
            Output::Event(Event::Finished(stats)) => return stats,
            Output::Event(_) => None,
            Output::Wait(deadline) => {
                match deadline {
                    Some(d) if d <= now => session.handle_timeout(now),
                    d => {
                        let _ = socket.set_read_timeout(d.map(|d| d - now));
                        match socket.recv_from(&mut buf) {
                            Ok((n, from)) => {
                                session.handle_datagram(Instant::now(), from, &buf[..n])
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                                ) =>
                            {
                                session.handle_timeout(Instant::now());
                            }
                            // ICMP errors surface here on some systems; they are not the peer's.
                            Err(e) => tracing::debug!(error = %e, "recv failed"),
                        }
                    }
                }
                None
            }
            Output::Closed => return session.stats().clone(),
        };
        if let Some(e) = failed {
            tracing::warn!(error = %e, "local data I/O failed");
            let error = HandlerError::from(&e);
            session.abort(Instant::now(), error.code, &error.message);
        }
    }
}
