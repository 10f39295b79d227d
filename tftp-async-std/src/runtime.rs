//! async-io under the shared server and client ([`tftp_common::runtime`]).

use std::future::Future;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::Weak;
use std::time::Instant;

use async_executor::Executor;
use async_io::{Async, Timer};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tftp_common::runtime::{self, AsyncUdp, Runtime};

/// Tasks on the executor inside a [`Server::serve`](crate::Server::serve) future (weak: tasks
/// must not keep it alive once that future is dropped; a task spawned after is dropped), or,
/// for the client, which has no executor, on a thread of their own; async-io timers.
#[derive(Debug, Clone, Default)]
pub(crate) struct AsyncIo(pub(crate) Option<Weak<Executor<'static>>>);

impl Runtime for AsyncIo {
    type Socket = Udp;

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        match &self.0 {
            Some(executor) => {
                if let Some(executor) = executor.upgrade() {
                    executor.spawn(task).detach();
                }
            }
            // The client's dally after a download: short, and it must outlive the call.
            None => drop(std::thread::spawn(move || async_io::block_on(task))),
        }
    }

    async fn sleep_until(&self, deadline: Instant) {
        Timer::at(deadline).await;
    }
}

pub(crate) struct Udp(Async<UdpSocket>);

impl AsyncUdp for Udp {
    fn from_std(socket: UdpSocket) -> io::Result<Self> {
        Async::new(socket).map(Udp)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }

    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.0.send_to(buf, to).await
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.0.recv_from(buf).await
    }

    async fn send_segments(&self, contents: &[u8], size: usize, to: SocketAddr) -> io::Result<()> {
        use std::os::fd::AsFd;
        let gso = self
            .0
            .write_with(|s| runtime::send_gso(s.as_fd(), contents, size, to));
        if gso.await.is_err() {
            for datagram in contents.chunks(size.max(1)) {
                self.0.send_to(datagram, to).await?;
            }
        }
        Ok(())
    }
}

/// A session's data: a source to send from, or a sink to store into and whether to close it
/// after the last block.
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
                sink.close().await?;
            }
        }
        Ok(())
    }
}
