//! Connected transfer sockets, and the second socket that keeps strangers answered.
//!
//! A transfer socket `connect()`ed to its peer (as tftpd-hpa's are) costs the kernel less per
//! packet: each send uses the route the connect found instead of looking it up again, and
//! each datagram from the peer is matched to the socket before routing (early demux). That is
//! 4% of a lock-step server's CPU per packet on loopback (`benches/e2e/ab.sh`), more where
//! routing tables are longer.
//!
//! But a connected socket receives from its peer only: the kernel answers anyone else with
//! an ICMP "port unreachable", where RFC 1350 §4 wants a datagram from a wrong port answered
//! with an ERROR ("Unknown transfer ID") and the transfer left undisturbed, and where the
//! server counts every such stray (`SessionStats::stray_packets`). So a connected transfer
//! gets a **catcher**: a second, unconnected socket bound to the same address and port
//! (`SO_REUSEPORT`). The kernel gives a datagram to the socket that matches it best: the
//! peer's (its address and port) to the connected socket, everyone else's to the catcher,
//! which the adapter reads into the same session as before.
//!
//! A catcher is a second descriptor. A server takes them only from descriptors its
//! `max_sessions` transfers can never need ([`Spare`]): under a tight descriptor limit its
//! transfers stay unconnected, as many as before, rather than fewer connected ones.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// The descriptors catchers may take: what the descriptor limit leaves beyond one per
/// session (see [`crate::descriptors`]).
#[derive(Debug, Clone, Default)]
pub struct Spare(Arc<AtomicUsize>);

impl Spare {
    /// `count` descriptors for catchers.
    pub fn new(count: usize) -> Self {
        Spare(Arc::new(AtomicUsize::new(count)))
    }

    /// How many are left.
    pub fn left(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn take(&self) -> bool {
        let dec = |n: usize| n.checked_sub(1);
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, dec)
            .is_ok()
    }

    fn give_back(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    /// Connect transfer socket `socket` (bound by
    /// [`bind_transfer_on`](crate::server::bind_transfer_on), nothing sent or received on it
    /// yet) to `peer`, with a catcher for everyone else's datagrams to its port. `None`, and
    /// `socket` as it was (unconnected: it receives from everyone), when no descriptor is
    /// spare or the system refuses.
    pub fn connect(&self, socket: &UdpSocket, peer: SocketAddr) -> Option<Catcher> {
        if !self.take() {
            return None;
        }
        match connect(socket, peer) {
            Ok(socket) => Some(Catcher {
                socket,
                held: Held(self.clone()),
            }),
            Err(e) => {
                self.give_back();
                tracing::debug!(%peer, error = %e, "transfer socket left unconnected");
                None
            }
        }
    }
}

/// The unconnected socket on a connected transfer's port: datagrams from anyone but the
/// transfer's peer arrive here. Gives its descriptor back to the [`Spare`] when dropped.
///
/// `S` is the socket's type: a std one (non-blocking) as [`Spare::connect`] makes it, or a
/// runtime's after [`Catcher::register`].
#[derive(Debug)]
pub struct Catcher<S = UdpSocket> {
    socket: S,
    held: Held,
}

/// A descriptor taken from a [`Spare`], given back when dropped.
#[derive(Debug)]
struct Held(Spare);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.give_back();
    }
}

impl<S> Catcher<S> {
    /// The socket.
    pub fn socket(&self) -> &S {
        &self.socket
    }

    /// The same catcher with its socket turned into another type by `register` (a runtime's
    /// registration, such as tokio's `UdpSocket::from_std`). If that fails, the socket is
    /// gone and the descriptor given back.
    pub fn register<T>(self, register: impl FnOnce(S) -> io::Result<T>) -> io::Result<Catcher<T>> {
        let Catcher { socket, held } = self;
        Ok(Catcher {
            socket: register(socket)?,
            held,
        })
    }
}

fn connect(socket: &UdpSocket, peer: SocketAddr) -> io::Result<UdpSocket> {
    let local = socket.local_addr()?;
    let transfer = SockRef::from(socket);
    // Only now, after the bind: with SO_REUSEPORT set before it, an ephemeral bind may pick a
    // port another transfer's sockets share (the kernel counts a port whose sockets all
    // allow reuse, by the same user, as free). Set after it, the flag lets the catcher join
    // this port, while a later transfer's bind (without the flag) still sees it taken.
    transfer.set_reuse_port(true)?;
    let joined = (|| {
        let catcher = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
        if local.is_ipv6() {
            catcher.set_only_v6(transfer.only_v6()?)?;
        }
        catcher.set_reuse_port(true)?;
        catcher.set_nonblocking(true)?;
        catcher.bind(&local.into())?;
        // Last: if anything above failed, the transfer socket still receives from everyone.
        socket.connect(peer)?;
        Ok(UdpSocket::from(catcher))
    })();
    if joined.is_err() {
        let _ = transfer.set_reuse_port(false);
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn peer() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    }

    fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = [0u8; 64];
        let (n, from) = s.recv_from(&mut buf).ok()?;
        Some((buf[..n].to_vec(), from))
    }

    /// The kernel gives the peer's datagrams to the connected socket and everyone else's to
    /// the catcher; both reply from the transfer's port.
    #[test]
    fn the_peer_reaches_the_transfer_and_strangers_the_catcher() {
        let spare = Spare::new(1);
        let transfer = crate::server::bind_transfer("127.0.0.1".parse().unwrap(), None).unwrap();
        let port = transfer.local_addr().unwrap();
        let (client, stranger) = (peer(), peer());
        let catcher = spare.connect(&transfer, client.local_addr().unwrap());
        let catcher = catcher.expect("connected with a catcher");
        assert_eq!(spare.left(), 0);
        assert_eq!(transfer.peer_addr().unwrap(), client.local_addr().unwrap());
        for s in [&transfer, catcher.socket()] {
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        }
        for i in 0..20u8 {
            stranger.send_to(&[i, 1], port).unwrap();
            client.send_to(&[i, 0], port).unwrap();
        }
        for i in 0..20u8 {
            let from_client = recv(&transfer).unwrap();
            assert_eq!(from_client, (vec![i, 0], client.local_addr().unwrap()));
            let from_stranger = recv(catcher.socket()).unwrap();
            assert_eq!(from_stranger, (vec![i, 1], stranger.local_addr().unwrap()));
        }
        // Replies: to the peer without an address, to a stranger with one; both from the
        // transfer's port.
        transfer.send(b"data").unwrap();
        transfer
            .send_to(b"error", stranger.local_addr().unwrap())
            .unwrap();
        assert_eq!(recv(&client).unwrap(), (b"data".to_vec(), port));
        assert_eq!(recv(&stranger).unwrap(), (b"error".to_vec(), port));
        drop(catcher);
        assert_eq!(spare.left(), 1, "the descriptor is given back");
    }

    /// A transfer port with a catcher is still taken for every later transfer's bind (an
    /// ephemeral one, or one from a port range): no two transfers ever share a port.
    #[test]
    fn a_connected_port_is_not_handed_out_again() {
        let spare = Spare::new(64);
        let client = peer();
        let mut held = Vec::new();
        let mut ports = std::collections::HashSet::new();
        for _ in 0..64 {
            let t = crate::server::bind_transfer("127.0.0.1".parse().unwrap(), None).unwrap();
            let c = spare.connect(&t, client.local_addr().unwrap()).unwrap();
            assert!(ports.insert(t.local_addr().unwrap().port()));
            held.push((t, c));
        }
        let (first, _) = &held[0];
        let port = first.local_addr().unwrap().port();
        let range = port..=port;
        let again = crate::server::bind_transfer("127.0.0.1".parse().unwrap(), Some(&range));
        assert_eq!(again.unwrap_err().kind(), io::ErrorKind::AddrInUse);
    }

    /// A catcher registered with a runtime keeps its descriptor; one whose registration
    /// fails gives it back.
    #[test]
    fn register_keeps_or_gives_back_the_descriptor() {
        let spare = Spare::new(2);
        let client = peer();
        let to = client.local_addr().unwrap();
        let (a, b) = (
            crate::server::bind_transfer("127.0.0.1".parse().unwrap(), None).unwrap(),
            crate::server::bind_transfer("127.0.0.1".parse().unwrap(), None).unwrap(),
        );
        let kept = spare.connect(&a, to).unwrap().register(|s| Ok(Box::new(s)));
        let kept = kept.unwrap();
        assert!(kept.socket().local_addr().is_ok());
        assert_eq!(spare.left(), 1);
        let failed = spare
            .connect(&b, to)
            .unwrap()
            .register(|_| -> io::Result<()> { Err(io::Error::other("no reactor")) });
        assert!(failed.is_err());
        assert_eq!(
            spare.left(),
            1,
            "the failed registration's descriptor is back"
        );
        drop(kept);
        assert_eq!(spare.left(), 2);
    }

    /// Without a spare descriptor the socket stays as it was: unconnected.
    #[test]
    fn no_spare_descriptor_no_connection() {
        let spare = Spare::new(0);
        let transfer = crate::server::bind_transfer("127.0.0.1".parse().unwrap(), None).unwrap();
        assert!(
            spare
                .connect(&transfer, "127.0.0.1:9".parse().unwrap())
                .is_none()
        );
        assert!(transfer.peer_addr().is_err());
    }

    /// IPv6, and an IPv4 client of a dual-stack transfer socket (its mapped address).
    #[test]
    fn ipv6_and_mapped_ipv4() {
        let spare = Spare::new(2);
        let v6 = UdpSocket::bind("[::1]:0");
        if let Ok(client) = v6 {
            client
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let t = crate::server::bind_transfer("::1".parse().unwrap(), None).unwrap();
            let _c = spare.connect(&t, client.local_addr().unwrap()).unwrap();
            t.send(b"x").unwrap();
            assert_eq!(recv(&client).unwrap().0, b"x");
        }
        let client = peer();
        let mapped: std::net::IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let t = crate::server::bind_transfer(mapped, None).unwrap();
        let to = SocketAddr::new(
            "::ffff:127.0.0.1".parse().unwrap(),
            client.local_addr().unwrap().port(),
        );
        let _c = spare.connect(&t, to).unwrap();
        t.send(b"y").unwrap();
        assert_eq!(recv(&client).unwrap().0, b"y");
    }
}
