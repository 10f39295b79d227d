//! The session loop shared by the async adapters: drain the session's outputs, then wait for
//! a datagram, the deadline, or a kill. An adapter supplies only the I/O ([`SessionIo`]),
//! whatever its runtime.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use tftp_proto::{ErrorCode, Event, Output, Session, SessionStats};

use crate::request::HandlerError;

/// What ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A datagram of this length from this address is in the buffer.
    Datagram(usize, SocketAddr),
    /// The deadline passed.
    Deadline,
    /// The datagram source is gone (a single-port route was replaced): drop the transfer
    /// silently.
    Gone,
    /// The server is shutting down past its grace period: abort with an ERROR.
    Kill,
}

/// The I/O of one session, in some runtime.
pub trait SessionIo {
    /// Send a datagram. Failures are losses (the retransmission timer covers them).
    fn send(&mut self, to: SocketAddr, bytes: &[u8]) -> impl Future<Output = ()>;
    /// Send `bytes`, several datagrams of `segment_size` bytes back to back (the last may be
    /// shorter; see [`tftp_proto::Transmit::segment_size`]). By default one by one; an
    /// adapter with UDP GSO sends them with one system call.
    fn send_batch(
        &mut self,
        to: SocketAddr,
        bytes: &[u8],
        segment_size: usize,
    ) -> impl Future<Output = ()> {
        async move {
            for datagram in bytes.chunks(segment_size.max(1)) {
                self.send(to, datagram).await;
            }
        }
    }
    /// Read source bytes (sending side); `Ok(0)` is the end.
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>>;
    /// Store a received block (receiving side); with `last`, also finish the upload (flush,
    /// move into place) before returning.
    fn write(&mut self, data: &[u8], last: bool) -> impl Future<Output = Result<(), HandlerError>>;
    /// Wait for a datagram (into `buf`), the deadline, or a kill.
    fn wait(&mut self, deadline: Option<Instant>, buf: &mut [u8]) -> impl Future<Output = Wake>;
}

/// Drive `session` until it closes, or (with `until_finished`) until its outcome is known.
/// Returns the final statistics (from [`Event::Finished`]).
pub async fn drive<R, I: SessionIo>(
    session: &mut Session<R>,
    io: &mut I,
    until_finished: bool,
    mut on_event: impl FnMut(&Event),
) -> Option<SessionStats> {
    let mut buf = Vec::new();
    let mut finished = None;
    loop {
        let deadline = loop {
            match session.poll_output(Instant::now()) {
                Output::Transmit(t) => match t.segment_size {
                    Some(size) => io.send_batch(t.destination, t.contents, size).await,
                    None => io.send(t.destination, t.contents).await,
                },
                Output::Fill(mut fill) => match io.read(fill.buf()).await {
                    Ok(0) => fill.finish(),
                    Ok(n) => {
                        let _ = fill.advance(n);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "data source failed");
                        let error = HandlerError::from(&e);
                        session.abort(Instant::now(), error.code, &error.message);
                    }
                },
                Output::Store(mut store) => {
                    let last = store.is_last();
                    match io.write(store.data(), last).await {
                        Ok(()) => store.stored(),
                        Err(error) => {
                            tracing::warn!(%error, "data sink failed");
                            session.abort(Instant::now(), error.code, &error.message);
                        }
                    }
                }
                Output::Event(event) => {
                    on_event(&event);
                    if let Event::Finished(stats) = event {
                        if until_finished {
                            return Some(stats);
                        }
                        finished = Some(stats);
                    }
                }
                Output::Wait(deadline) => break deadline,
                Output::Closed => return finished,
            }
        };
        // Room for the largest datagram the peer may send, plus one byte to detect oversize.
        buf.resize(usize::from(session.options().blksize) + 5, 0);
        match io.wait(deadline, &mut buf).await {
            Wake::Datagram(n, from) => session.handle_datagram(Instant::now(), from, &buf[..n]),
            Wake::Deadline => session.handle_timeout(Instant::now()),
            Wake::Gone => session.abandon(Instant::now()),
            Wake::Kill => session.abort(
                Instant::now(),
                ErrorCode::NOT_DEFINED,
                "Server shutting down",
            ),
        }
    }
}
