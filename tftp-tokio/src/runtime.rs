//! tokio under the shared server and client ([`tftp_server::runtime`]).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Instant;

use tftp_server::runtime::{self, AsyncUdp, Runtime};
use tftp_server::udp;
use tokio::io::Interest;

/// tokio as a [`Runtime`]: sessions are tasks on the runtime the server is polled on, timers
/// and the clock are tokio's (so tokio's paused time moves them).
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

impl Runtime for Tokio {
    type Socket = Udp;
    type IoTraits = tftp_server::TokioIo;

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(task);
    }

    type Timer = tokio::time::Sleep;

    fn timer(&self, deadline: Instant) -> Self::Timer {
        tokio::time::sleep_until(deadline.into())
    }

    /// A later deadline only updates the timer's state; tokio moves it in its wheel when the
    /// earlier one comes.
    fn reset(timer: Pin<&mut Self::Timer>, deadline: Instant) {
        timer.reset(deadline.into());
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    async fn scope<F>(serve: impl FnOnce(Self) -> F + Send) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        serve(Tokio).await
    }

    fn client() -> Self {
        Tokio
    }
}

/// A tokio UDP socket.
#[derive(Debug)]
pub struct Udp(tokio::net::UdpSocket);

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

    async fn send_connected(&self, buf: &[u8], _to: SocketAddr) -> io::Result<usize> {
        self.0.send(buf).await
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.0.recv_from(buf).await
    }

    async fn recv_from_to(&self, buf: &mut [u8]) -> io::Result<udp::Received> {
        loop {
            self.0.readable().await?;
            match (self.0).try_io(Interest::READABLE, || udp::recv_from_to(&self.0, buf)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    async fn send_from_to(
        &self,
        buf: &[u8],
        to: SocketAddr,
        from: Option<IpAddr>,
    ) -> io::Result<usize> {
        if from.is_none() {
            return self.0.send_to(buf, to).await;
        }
        loop {
            self.0.writable().await?;
            match (self.0).try_io(Interest::WRITABLE, || {
                udp::send_from_to(&self.0, buf, to, from)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    async fn send_segments(&self, contents: &[u8], size: usize, to: SocketAddr) -> io::Result<()> {
        self.send_segments_from(contents, size, to, None).await
    }

    async fn send_segments_from(
        &self,
        contents: &[u8],
        size: usize,
        to: SocketAddr,
        from: Option<IpAddr>,
    ) -> io::Result<()> {
        use std::os::fd::AsFd;
        loop {
            self.0.writable().await?;
            let sent = self.0.try_io(Interest::WRITABLE, || {
                runtime::send_gso_from(self.0.as_fd(), contents, size, to, from)
            });
            match sent {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => break,
            }
        }
        runtime::send_one_by_one(self, contents, size, to, from).await
    }
}
