//! tokio I/O for the shared session loop ([`tftp_common::drive`]).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use tftp_common::HandlerError;
use tftp_common::drive::{SessionIo, Wake};
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
            Transport::Routed(s, _) => &**s,
        };
        if let Err(e) = socket.send_to(bytes, to).await {
            tracing::debug!(%to, error = %e, "send failed");
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

/// A session's I/O on tokio.
pub(crate) struct Io<'a> {
    pub(crate) transport: Transport,
    pub(crate) data: Data<'a>,
    pub(crate) kill: Option<CancellationToken>,
}

impl SessionIo for Io<'_> {
    async fn send(&mut self, to: SocketAddr, bytes: &[u8]) {
        self.transport.send(to, bytes).await;
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.data {
            Data::Source(reader) => reader.as_mut().read(buf).await,
            _ => Ok(0),
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
                    sink.shutdown().await?;
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
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        let kill = self.kill.clone();
        let killed = async {
            match kill {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = self.transport.recv(buf) => match received {
                Some((n, from)) => Wake::Datagram(n, from),
                None => Wake::Gone,
            },
            () = sleep => Wake::Deadline,
            () = killed => Wake::Kill,
        }
    }
}
