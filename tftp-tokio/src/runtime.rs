//! tokio under the shared server and client ([`tftp_server::runtime`]).

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Mutex;
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
///
/// Receiving asks the kernel for two datagrams at a time ([`udp::recv_pair`]): when only one
/// was queued the socket is known drained, and its readiness is cleared there and then.
/// tokio's own `recv_from` leaves a socket marked readable after every datagram, so the next
/// receive of a lock-step transfer (one ACK per DATA) first failed with `EAGAIN`: a system call
/// per datagram, about one in seven of the server's per-packet work. A second datagram, when
/// one came, is kept for the next receive.
#[derive(Debug)]
pub struct Udp {
    socket: tokio::net::UdpSocket,
    /// Its address family (for [`udp::recv_pair`]).
    family: udp::Family,
    /// A datagram received with the one before it and not yet taken, and its sender.
    stashed: Mutex<Stash>,
}

/// A datagram kept for the next receive; its buffer is reused (allocated at the first pair,
/// grown to the largest receive buffer asked for).
#[derive(Debug, Default)]
struct Stash {
    bytes: Vec<u8>,
    held: Option<(usize, SocketAddr)>,
}

thread_local! {
    /// Where a second datagram lands (see [`Udp`]): one buffer per runtime thread, as large
    /// as the largest receive buffer asked for on it.
    static SPARE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Udp {
    /// The stashed datagram, copied into `buf` (truncated to it, as `recv_from` truncates).
    fn take_stashed(&self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        let mut stash = self.stashed.lock().unwrap_or_else(|p| p.into_inner());
        let (len, from) = stash.held.take()?;
        let n = len.min(buf.len());
        buf[..n].copy_from_slice(&stash.bytes[..n]);
        Some((n, from))
    }

    /// One receive, without blocking: the first datagram into `buf`; a second one stashed.
    /// Fails with `WouldBlock` when the queue is empty, *and* when it was emptied by this
    /// receive (so that `try_io` clears the readiness, with the tick it observed before):
    /// then `got` holds the datagram.
    fn try_recv(
        &self,
        buf: &mut [u8],
        got: &mut Option<(usize, SocketAddr)>,
    ) -> io::Result<(usize, SocketAddr)> {
        let pair = SPARE.with_borrow_mut(|spare| {
            if spare.len() < buf.len() {
                spare.resize(buf.len(), 0);
            }
            let pair = udp::recv_pair(&self.socket, self.family, buf, &mut spare[..buf.len()])?;
            if let Some((n, from)) = pair.second {
                let mut stash = self.stashed.lock().unwrap_or_else(|p| p.into_inner());
                stash.bytes.clear();
                stash.bytes.extend_from_slice(&spare[..n]);
                stash.held = Some((n, from));
            }
            Ok::<_, io::Error>(pair)
        })?;
        if pair.drained {
            *got = Some(pair.first);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(pair.first)
    }
}

impl AsyncUdp for Udp {
    fn from_std(socket: std::net::UdpSocket) -> io::Result<Self> {
        let family = udp::Family::of(socket.local_addr()?);
        let socket = tokio::net::UdpSocket::from_std(socket)?;
        let stashed = Mutex::default();
        Ok(Udp {
            socket,
            family,
            stashed,
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.socket.send_to(buf, to).await
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        if let Some(stashed) = self.take_stashed(buf) {
            return Ok(stashed);
        }
        loop {
            self.socket.readable().await?;
            let mut got = None;
            match (self.socket).try_io(Interest::READABLE, || self.try_recv(buf, &mut got)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Some(got) = got {
                        return Ok(got);
                    }
                }
                other => return other,
            }
        }
    }

    async fn recv_from_to(&self, buf: &mut [u8]) -> io::Result<udp::Received> {
        loop {
            self.socket.readable().await?;
            match (self.socket).try_io(Interest::READABLE, || udp::recv_from_to(&self.socket, buf))
            {
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
            return self.socket.send_to(buf, to).await;
        }
        loop {
            self.socket.writable().await?;
            match (self.socket).try_io(Interest::WRITABLE, || {
                udp::send_from_to(&self.socket, buf, to, from)
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
            self.socket.writable().await?;
            let sent = self.socket.try_io(Interest::WRITABLE, || {
                runtime::send_gso_from(self.socket.as_fd(), contents, size, to, from)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::time::Duration;

    /// Datagrams come out in order whether they were received alone or two at a time (the
    /// second kept for the next receive), and one sent after the socket was drained (its
    /// readiness cleared) still wakes the receiver.
    #[tokio::test]
    async fn datagrams_in_order_and_none_missed_after_draining() {
        let std = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        std.set_nonblocking(true).unwrap();
        let udp = Udp::from_std(std).unwrap();
        let to = udp.local_addr().unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let from = client.local_addr().unwrap();
        let mut buf = [0u8; 32];
        for round in 0..3u8 {
            // Three at once: a pair (one stashed), then the third alone (drained).
            for i in 0..3u8 {
                client.send_to(&[round, i], to).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            for i in 0..3u8 {
                let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
                assert_eq!((&buf[..n], peer), (&[round, i][..], from));
            }
            // Nothing queued now; a datagram sent later must wake the receive.
            let sender = client.try_clone().unwrap();
            let late = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                sender.send_to(b"late", to).unwrap();
            });
            let received = tokio::time::timeout(Duration::from_secs(5), udp.recv_from(&mut buf));
            let (n, _) = received
                .await
                .expect("a later datagram was missed")
                .unwrap();
            assert_eq!(&buf[..n], b"late");
            late.join().unwrap();
        }
    }
}
