//! async-io I/O for the shared session loop ([`tftp_common::drive`]).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use async_channel::Receiver;
use async_io::{Async, Timer};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt};
use tftp_common::HandlerError;
use tftp_common::drive::{SessionIo, Wake};
use tftp_proto::ErrorReply;

use crate::handler::Completion;

/// A datagram routed to a session by the listener (single-port mode).
pub(crate) type Routed = (Vec<u8>, SocketAddr);

/// Where a session's datagrams come from and go to.
pub(crate) enum Transport {
    /// Its own socket (RFC 1350 transfer ID).
    Socket(Async<UdpSocket>),
    /// The listening socket, shared; datagrams routed here by the listener (single-port mode).
    Routed(Arc<Async<UdpSocket>>, Receiver<Routed>),
}

/// Send a datagram; a failure is a loss (the peer or the retransmission timer covers it).
pub(crate) async fn send_to(socket: &Async<UdpSocket>, to: SocketAddr, bytes: &[u8]) {
    if let Err(e) = socket.send_to(bytes, to).await {
        tracing::debug!(%to, error = %e, "send failed");
    }
}

/// Send an ERROR packet.
pub(crate) async fn send_error(socket: &Async<UdpSocket>, to: SocketAddr, reply: &ErrorReply) {
    let mut out = [0u8; 516];
    let n = reply.encode(&mut out);
    send_to(socket, to, &out[..n]).await;
}

impl Transport {
    pub(crate) fn socket(&self) -> &Async<UdpSocket> {
        match self {
            Transport::Socket(s) => s,
            Transport::Routed(s, _) => s,
        }
    }

    async fn recv(&mut self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        match self {
            Transport::Socket(s) => loop {
                match s.recv_from(buf).await {
                    Ok(r) => return Some(r),
                    // ICMP errors surface here on some systems; they are not the peer's words.
                    Err(e) => tracing::debug!(error = %e, "recv failed"),
                }
            },
            Transport::Routed(_, rx) => {
                let (bytes, from) = rx.recv().await.ok()?;
                let n = bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                Some((n, from))
            }
        }
    }
}

/// The session's data: a source to send from, a sink to store into, or nothing (a refusal).
pub(crate) enum Data<'a> {
    Source(Pin<&'a mut (dyn AsyncRead + Send)>),
    /// A sink, whether to close it after the last block, and what to run then.
    Sink(
        Pin<&'a mut (dyn AsyncWrite + Send)>,
        bool,
        Option<Completion>,
    ),
    None,
}

/// A session's I/O on async-io. `kill` closes when the server aborts its sessions.
pub(crate) struct Io<'a> {
    pub(crate) transport: Transport,
    pub(crate) data: Data<'a>,
    pub(crate) kill: Option<Receiver<()>>,
}

impl SessionIo for Io<'_> {
    async fn send(&mut self, to: SocketAddr, bytes: &[u8]) {
        send_to(self.transport.socket(), to, bytes).await;
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.data {
            Data::Source(reader) => reader.read(buf).await,
            Data::Sink(..) | Data::None => Ok(0),
        }
    }

    async fn write(&mut self, data: &[u8], last: bool) -> Result<(), HandlerError> {
        let Data::Sink(sink, close, complete) = &mut self.data else {
            return Ok(());
        };
        let io = async {
            sink.write_all(data).await?;
            if last {
                sink.flush().await?;
                if *close {
                    sink.close().await?;
                }
            }
            Ok::<(), io::Error>(())
        };
        io.await.map_err(|e| HandlerError::from(&e))?;
        match complete.take_if(|_| last) {
            Some(complete) => complete().await,
            None => Ok(()),
        }
    }

    async fn wait(&mut self, deadline: Option<Instant>, buf: &mut [u8]) -> Wake {
        let Io {
            transport, kill, ..
        } = self;
        let killed = async {
            match kill {
                Some(kill) => {
                    let _ = kill.recv().await;
                    Wake::Kill
                }
                None => std::future::pending().await,
            }
        };
        let received = async {
            match transport.recv(buf).await {
                Some((n, from)) => Wake::Datagram(n, from),
                None => Wake::Gone,
            }
        };
        let timer = deadline.map_or_else(Timer::never, Timer::at);
        let expired = async {
            timer.await;
            Wake::Deadline
        };
        killed.or(received).or(expired).await
    }
}
