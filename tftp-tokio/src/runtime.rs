//! tokio under the shared server and client ([`tftp_common::runtime`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Instant;

use tftp_common::runtime::{self, AsyncUdp, Runtime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Tasks on the ambient tokio runtime, tokio timers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tokio;

impl Runtime for Tokio {
    type Socket = Udp;

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(task);
    }

    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send {
        tokio::time::sleep_until(deadline.into())
    }
}

pub(crate) struct Udp(tokio::net::UdpSocket);

impl AsyncUdp for Udp {
    fn from_std(socket: std::net::UdpSocket) -> io::Result<Self> {
        tokio::net::UdpSocket::from_std(socket).map(Udp)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.0.send_to(buf, to).await
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.0.recv_from(buf).await
    }
}

/// A session's data: a source to send from, or a sink to store into and whether to shut it
/// down after the last block.
pub(crate) enum Data<'a> {
    Source(Pin<Box<dyn AsyncRead + Send + 'a>>),
    Sink(Pin<Box<dyn AsyncWrite + Send + 'a>>, bool),
}

impl runtime::Data for Data<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Data::Source(source) => source.read(buf).await,
            Data::Sink(..) => Ok(0),
        }
    }

    async fn write(&mut self, data: &[u8], last: bool) -> io::Result<()> {
        let Data::Sink(sink, close) = self else {
            return Ok(());
        };
        sink.write_all(data).await?;
        if last {
            sink.flush().await?;
            if *close {
                sink.shutdown().await?;
            }
        }
        Ok(())
    }
}
