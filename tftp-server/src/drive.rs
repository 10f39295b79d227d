//! The session loop shared by the async adapters: drain the session's outputs, then wait for
//! a datagram, the deadline, or a kill. The I/O is a [`Runtime`]'s socket, timers and clock
//! and the handler's source or sink ([`Io`]).
//!
//! A slow source never wedges a session: while the loop waits for source bytes it keeps
//! receiving the peer's datagrams (its ERROR ends the transfer at once), honours the kill
//! signal, and gives the source [`Drive::source_timeout`] per block before it aborts.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tftp_proto::storage::Storage;
use tftp_proto::{ErrorCode, Event, Output, Session, SessionStats};

use crate::budget::WindowBudget;
use crate::request::HandlerError;
use crate::runtime::{Data, Io, Runtime};
use crate::stats::Progress;

/// What ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A datagram of this length from this address is in the buffer.
    Datagram(usize, SocketAddr),
    /// The deadline passed.
    Deadline,
    /// The datagram source is gone (a new request from the same client port replaced this
    /// transfer): drop the transfer silently.
    Gone,
    /// The server is shutting down past its grace period: abort with an ERROR.
    Kill,
}

/// What ended a wait for source bytes.
#[derive(Debug)]
pub enum Filled {
    /// The source answered: bytes read into the block, `Ok(0)` at its end, or its error.
    Read(io::Result<usize>),
    /// Something else came first (the read was dropped before it took any byte).
    Woken(Wake),
}

/// How [`drive`] runs a session, beyond the protocol.
#[derive(Clone, Copy, Default)]
pub struct Drive<'a> {
    /// Return as soon as the outcome is known (a client; the caller dallies in the
    /// background), instead of when the session closes.
    pub until_finished: bool,
    /// Receive into a 65,535-byte buffer, so an oversized datagram is reported with its real
    /// length (a client: one session, one buffer). Otherwise the buffer is
    /// [`Session::max_datagram_len`] bytes, which keeps thousands of server sessions small.
    pub full_buffer: bool,
    /// How long the source may take to supply one block before the transfer is aborted with
    /// "Data source timed out". `None`: no limit.
    pub source_timeout: Option<Duration>,
    /// The memory that windows of all sessions may take together; a session whose window does
    /// not fit when data starts to flow is aborted with "Server busy".
    pub budget: Option<&'a WindowBudget>,
    /// Called with the session's byte count ([`SessionStats::bytes`]) when a count is due
    /// ([`Progress::due`]: at most once a second while it changes and the transfer runs), so
    /// that a long transfer shows in the counters before it ends.
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl std::fmt::Debug for Drive<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drive")
            .field("until_finished", &self.until_finished)
            .field("full_buffer", &self.full_buffer)
            .field("source_timeout", &self.source_timeout)
            .field("budget", &self.budget)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Drive `session` until it closes, or (with [`Drive::until_finished`]) until its outcome is
/// known. Returns the final statistics (from [`Event::Finished`]).
pub(crate) async fn drive<P, B: Storage, R: Runtime, D: Data>(
    session: &mut Session<P, Instant, B>,
    io: &mut Io<R, D>,
    how: Drive<'_>,
    mut on_event: impl FnMut(&Event),
) -> Option<SessionStats> {
    let mut buf = Vec::new();
    let mut finished = None;
    let mut reservation = None;
    // The block the source is working on, and when it must have delivered it.
    let mut source_deadline: Option<(u64, Instant)> = None;
    let mut progress = Progress::new(io.now());
    loop {
        let deadline = loop {
            let deadline = session.poll_timeout();
            let now = io.now();
            // Room for the largest datagram the peer may send, plus one byte to see oversize.
            let want = if how.full_buffer {
                65_536
            } else {
                session.max_datagram_len()
            };
            if buf.len() != want {
                buf.resize(want, 0);
            }
            if let (None, Some(budget)) = (&reservation, how.budget) {
                let bytes = session.window_memory();
                if bytes > 0 {
                    reservation = budget.reserve(bytes);
                    if reservation.is_none() {
                        tracing::warn!(bytes, "window memory budget exhausted");
                        let busy = crate::request::SERVER_BUSY;
                        session.abort(now, ErrorCode::NOT_DEFINED, busy);
                    }
                }
            }
            match session.poll_output(now) {
                Output::Transmit(t) => match t.segment_size {
                    Some(size) => io.send_batch(t.destination, t.contents, size).await,
                    None => io.send(t.destination, t.contents).await,
                },
                Output::Fill(mut fill) => {
                    let block = fill.block();
                    let limit = match (source_deadline, how.source_timeout) {
                        (Some((b, at)), _) if b == block => Some(at),
                        (_, Some(timeout)) => now.checked_add(timeout),
                        (_, None) => None,
                    };
                    source_deadline = limit.map(|at| (block, at));
                    let wake_at = earliest(deadline, limit);
                    let offset = fill.offset();
                    match io.read(fill.buf(), offset, wake_at, &mut buf).await {
                        Filled::Read(Ok(0)) => fill.finish(),
                        Filled::Read(Ok(n)) => {
                            let _ = fill.advance(n);
                        }
                        Filled::Read(Err(e)) => {
                            tracing::warn!(error = %e, "data source failed");
                            let error = HandlerError::from(&e);
                            session.abort(io.now(), error.code, &error.message);
                        }
                        Filled::Woken(Wake::Deadline) if limit.is_some_and(|at| io.now() >= at) => {
                            tracing::warn!(block, "data source timed out");
                            let message = "Data source timed out";
                            session.abort(io.now(), ErrorCode::NOT_DEFINED, message);
                        }
                        Filled::Woken(wake) => on_wake(session, io.now(), wake, &buf),
                    }
                }
                Output::Store(mut store) => {
                    let last = store.is_last();
                    match io.write(store.data(), last).await {
                        Ok(()) => store.stored(),
                        Err(error) => {
                            tracing::warn!(%error, "data sink failed");
                            session.abort(io.now(), error.code, &error.message);
                        }
                    }
                }
                Output::Event(event) => {
                    on_event(&event);
                    if let Event::Finished(stats) = event {
                        if how.until_finished {
                            return Some(stats);
                        }
                        finished = Some(stats);
                    }
                }
                Output::Wait(deadline) => break deadline,
                Output::Closed => return finished,
            }
        };
        let wake = io.wait(deadline, &mut buf).await;
        on_wake(session, io.now(), wake, &buf);
        if let Some(report) = how.progress {
            let (bytes, runs) = (session.stats().bytes, session.outcome().is_none());
            if progress.due(io.now(), bytes, runs).is_some() {
                report(bytes);
            }
        }
    }
}

fn on_wake<R, B: Storage>(
    session: &mut Session<R, Instant, B>,
    now: Instant,
    wake: Wake,
    buf: &[u8],
) {
    match wake {
        Wake::Datagram(n, from) => session.handle_datagram(now, from, &buf[..n.min(buf.len())]),
        Wake::Deadline => session.handle_timeout(now),
        Wake::Gone => session.abandon(now),
        Wake::Kill => session.abort(now, ErrorCode::NOT_DEFINED, "Server shutting down"),
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
