//! async-io under the shared server and client (feature `async-io`): its epoll reactor for
//! the sockets and timers, an `async-executor` for a server's sessions. Used by
//! `tftp-async-std` and `tftp-blocking`; it depends on no particular executor runtime.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Weak;
use std::time::Instant;

use crate::runtime::{self, AsyncUdp, Runtime};
use async_executor::Executor;
use async_io::{Async, Timer};

/// Where a task goes: the executor of a serving server (weak: tasks must not keep it alive
/// once it stops serving), or, for a client dallying after its last ACK, a detached thread of
/// its own.
#[derive(Debug, Clone)]
pub enum AsyncIo {
    /// A server's executor.
    Server(Weak<Executor<'static>>),
    /// A client: tasks (the dally) on a short-lived thread.
    Client,
}

impl Runtime for AsyncIo {
    type Socket = Udp;
    type IoTraits = crate::FuturesIo;

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        match self {
            AsyncIo::Server(executor) => {
                if let Some(executor) = executor.upgrade() {
                    executor.spawn(task).detach();
                }
            }
            AsyncIo::Client => {
                let thread = std::thread::Builder::new().name("tftp-dally".into());
                if let Err(e) = thread.spawn(move || async_io::block_on(task)) {
                    tracing::debug!(error = %e, "cannot start a thread to dally on");
                }
            }
        }
    }

    type Timer = Deadline;

    fn timer(&self, deadline: Instant) -> Deadline {
        Deadline(Timer::at(deadline))
    }

    fn reset(mut timer: Pin<&mut Deadline>, deadline: Instant) {
        timer.0.set_at(deadline);
    }

    /// The server's sessions run on an executor inside the returned future, so they make
    /// progress on whichever thread polls it (async-std's, smol's, or a `block_on`).
    async fn scope<F>(serve: impl FnOnce(Self) -> F + Send) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        let executor = std::sync::Arc::new(Executor::new());
        let runtime = AsyncIo::Server(std::sync::Arc::downgrade(&executor));
        executor.run(serve(runtime)).await
    }

    fn client() -> Self {
        AsyncIo::Client
    }
}

/// A non-blocking std socket on async-io's reactor.
#[derive(Debug)]
pub struct Udp(Async<UdpSocket>);

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

    async fn send_connected(&self, buf: &[u8], _to: SocketAddr) -> io::Result<usize> {
        self.0.send(buf).await
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.0.recv_from(buf).await
    }

    async fn recv_from_to(&self, buf: &mut [u8]) -> io::Result<crate::udp::Received> {
        self.0.read_with(|s| crate::udp::recv_from_to(s, buf)).await
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
        (self.0)
            .write_with(|s| crate::udp::send_from_to(s, buf, to, from))
            .await
    }

    /// A window in one `sendmsg` with UDP GSO where the kernel offers it.
    async fn send_segments(&self, contents: &[u8], size: usize, to: SocketAddr) -> io::Result<()> {
        self.send_segments_from(contents, size, to, None).await
    }

    /// With `from`, the source address rides in the same `sendmsg` as the segment size.
    async fn send_segments_from(
        &self,
        contents: &[u8],
        size: usize,
        to: SocketAddr,
        from: Option<IpAddr>,
    ) -> io::Result<()> {
        let gso = self
            .0
            .write_with(|s| runtime::send_gso_from(s.as_fd(), contents, size, to, from));
        match gso.await {
            Ok(_) => Ok(()),
            Err(_) => runtime::send_one_by_one(self, contents, size, to, from).await,
        }
    }
}

/// An async-io timer as a future of `()`.
#[derive(Debug)]
pub struct Deadline(Timer);

impl Future for Deadline {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}
