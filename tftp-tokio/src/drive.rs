//! The adapter loop: move datagrams, timers and data between tokio and a tftp-proto session.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use tftp_common::HandlerError;
use tftp_proto::{ErrorCode, Event, Output, Session, SessionStats};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::handler::Completion;

/// Where a session's datagrams come from and go to.
pub(crate) enum Transport {
    /// Its own socket (RFC 1350 transfer ID).
    Socket(UdpSocket),
    /// The listening socket, shared; datagrams routed here by the listener (single-port mode).
    Routed(Arc<UdpSocket>, mpsc::Receiver<(Vec<u8>, SocketAddr)>),
}

impl Transport {
    pub(crate) async fn send(&self, to: SocketAddr, bytes: &[u8]) {
        let socket = match self {
            Transport::Socket(s) => s,
            Transport::Routed(s, _) => s,
        };
        // A failed send is a lost datagram: the retransmission timer covers it.
        if let Err(e) = socket.send_to(bytes, to).await {
            tracing::debug!(%to, error = %e, "send failed");
        }
    }

    /// The next datagram; `None` when a routed session was replaced or the router is gone.
    async fn recv(&mut self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        match self {
            Transport::Socket(s) => loop {
                match s.recv_from(buf).await {
                    Ok(r) => return Some(r),
                    // ICMP errors surface here on some systems; they are not the peer's words.
                    Err(e) if e.kind() != io::ErrorKind::WouldBlock => {
                        tracing::debug!(error = %e, "recv failed");
                    }
                    Err(_) => {}
                }
            },
            Transport::Routed(_, rx) => {
                let (bytes, from) = rx.recv().await?;
                let n = bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                Some((n, from))
            }
        }
    }
}

/// The session's data: a source to send from, a sink to store into, or nothing (dallying).
pub(crate) enum Data<'a> {
    Source(Pin<&'a mut (dyn AsyncRead + Send)>),
    /// A sink, whether to shut it down after the last block, and what to run then.
    Sink(
        Pin<&'a mut (dyn AsyncWrite + Send)>,
        bool,
        Option<Completion>,
    ),
    None,
}

/// Drive `session` until it closes, or (with `until_finished`) until its outcome is known.
/// `kill` aborts it with "Server shutting down". Returns the final statistics.
pub(crate) async fn drive<R>(
    session: &mut Session<R>,
    transport: &mut Transport,
    data: &mut Data<'_>,
    kill: Option<&CancellationToken>,
    until_finished: bool,
    mut on_event: impl FnMut(&Event),
) -> Option<SessionStats> {
    let mut buf = Vec::new();
    let mut finished = None;
    loop {
        let deadline = loop {
            let now = Instant::now();
            match session.poll_output(now) {
                Output::Transmit(t) => transport.send(t.destination, t.contents).await,
                Output::Fill(mut fill) => {
                    let result = match data {
                        Data::Source(reader) => reader.as_mut().read(fill.buf()).await,
                        _ => Ok(0),
                    };
                    match result {
                        Ok(0) => fill.finish(),
                        Ok(n) => {
                            let _ = fill.advance(n);
                        }
                        Err(e) => {
                            let error = HandlerError::from(&e);
                            tracing::warn!(error = %e, "data source failed");
                            session.abort(Instant::now(), error.code, &error.message);
                        }
                    }
                }
                Output::Store(mut store) => {
                    let last = store.is_last();
                    let result = match data {
                        Data::Sink(sink, close, complete) => {
                            store_block(sink.as_mut(), *close, complete, store.data(), last).await
                        }
                        _ => Ok(()),
                    };
                    match result {
                        Ok(()) => store.stored(),
                        Err(error) => {
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
        buf.resize(usize::from(session.options().blksize) + 5, 0);
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        let killed = async {
            match kill {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = transport.recv(&mut buf) => match received {
                Some((n, from)) => session.handle_datagram(Instant::now(), from, &buf[..n]),
                None => session.abandon(Instant::now()),
            },
            () = sleep => session.handle_timeout(Instant::now()),
            () = killed => session.abort(Instant::now(), ErrorCode::NOT_DEFINED, "Server shutting down"),
        }
    }
}

async fn store_block(
    mut sink: Pin<&mut (dyn AsyncWrite + Send)>,
    close: bool,
    complete: &mut Option<Completion>,
    data: &[u8],
    last: bool,
) -> Result<(), HandlerError> {
    let io = async {
        sink.write_all(data).await?;
        if last {
            sink.flush().await?;
            if close {
                sink.shutdown().await?;
            }
        }
        Ok::<(), io::Error>(())
    };
    io.await.map_err(|e| {
        tracing::warn!(error = %e, "data sink failed");
        HandlerError::from(&e)
    })?;
    match complete.take_if(|_| last) {
        Some(complete) => complete().await,
        None => Ok(()),
    }
}
