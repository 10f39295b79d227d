//! The client: fetch into any `Write`, send from any `Read`, on the calling thread, on one std
//! socket.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use tftp_proto::{
    ClientSession, Config, Event, Mode, OptionValues, Output, SessionStats, TransferOptions,
};
use tftp_server::client::{ClientCore, into_result, local_addr};
use tftp_server::{ClientError, HandlerError};

/// A blocking TFTP client: one UDP socket per transfer, driven on the calling thread (a
/// `recv` whose timeout is the session's next deadline). The reader or writer is called on
/// that thread.
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

/// The caller's end of a transfer.
enum Data<'a> {
    Reader(&'a mut (dyn Read + Send)),
    Writer(&'a mut (dyn Write + Send)),
    /// Dallying after the outcome: nothing more to read or store.
    None,
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
        let now = Instant::now();
        let session = ClientSession::get(server, filename, mode, options, &self.0.config, now)?;
        self.run(session, Data::Writer(&mut dest))
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
        let session = ClientSession::put(server, filename, mode, options, &self.0.config, now)?;
        self.run(session, Data::Reader(&mut source))
    }

    /// Drive `session` until its outcome is known; then let it dally on a thread of its own.
    fn run(&self, mut session: ClientSession, data: Data<'_>) -> Result<SessionStats, ClientError> {
        let socket = UdpSocket::bind(local_addr(session.peer()))?;
        let on_negotiated = |event: &Event| {
            if let (Event::Negotiated(o), Some(f)) = (event, &self.0.on_negotiated) {
                f(o);
            }
        };
        let stats = drive(&mut session, &socket, data, true, on_negotiated)?
            .unwrap_or_else(|| session.stats().clone());
        if !session.is_closed() {
            let dally = move || {
                let _ = drive(&mut session, &socket, Data::None, false, |_| {});
            };
            // Without a thread the session just ends: a repeated last block goes unanswered.
            let _ = std::thread::Builder::new()
                .name("tftp-dally".into())
                .spawn(dally);
        }
        into_result(stats)
    }
}

/// Drive `session` on `socket` until it closes, or (`until_finished`) its outcome is known.
/// Returns the final statistics.
fn drive(
    session: &mut ClientSession,
    socket: &UdpSocket,
    mut data: Data<'_>,
    until_finished: bool,
    mut on_event: impl FnMut(&Event),
) -> io::Result<Option<SessionStats>> {
    // Any datagram fits, so an oversized one is reported with its real length.
    let mut buf = vec![0u8; 65_536];
    let mut finished = None;
    let mut timeout = None;
    loop {
        let deadline = loop {
            let now = Instant::now();
            match session.poll_output(now) {
                Output::Transmit(t) => {
                    for datagram in t.datagrams() {
                        // A lost send is a lost datagram: the session retransmits.
                        let _ = socket.send_to(datagram, t.destination);
                    }
                }
                Output::Fill(mut fill) => {
                    let read = match &mut data {
                        Data::Reader(reader) => reader.read(fill.buf()),
                        Data::Writer(_) | Data::None => Ok(0),
                    };
                    match read {
                        Ok(0) => fill.finish(),
                        Ok(n) => {
                            let _ = fill.advance(n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let error = HandlerError::from(&e);
                            session.abort(now, error.code, &error.message);
                        }
                    }
                }
                Output::Store(mut store) => {
                    let last = store.is_last();
                    let written = match &mut data {
                        Data::Writer(writer) => writer
                            .write_all(store.data())
                            .and_then(|()| if last { writer.flush() } else { Ok(()) }),
                        Data::Reader(_) | Data::None => Ok(()),
                    };
                    match written {
                        Ok(()) => store.stored(),
                        Err(e) => {
                            let error = HandlerError::from(&e);
                            session.abort(now, error.code, &error.message);
                        }
                    }
                }
                Output::Event(event) => {
                    on_event(&event);
                    if let Event::Finished(stats) = event {
                        if until_finished {
                            return Ok(Some(stats));
                        }
                        finished = Some(stats);
                    }
                }
                Output::Wait(deadline) => break deadline,
                Output::Closed => return Ok(finished),
            }
        };
        let now = Instant::now();
        let wait = match deadline {
            Some(at) if at <= now => {
                session.handle_timeout(now);
                continue;
            }
            // At least 1 ms: a zero timeout means none to the socket.
            Some(at) => Some((at - now).max(Duration::from_millis(1))),
            None => None,
        };
        if wait != timeout {
            socket.set_read_timeout(wait)?;
            timeout = wait;
        }
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => session.handle_datagram(Instant::now(), from, &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                session.handle_timeout(Instant::now());
            }
            // ICMP errors from an earlier send surface here: not the peer's words.
            Err(e) => tracing::debug!(error = %e, "recv failed"),
        }
    }
}
