//! Many datagrams a system call: [`RecvBatch`] reads what is queued on a socket with one
//! `recvmmsg`, [`SendQueue`] sends what was queued for it with one `sendmmsg` (Linux's
//! `recvmmsg(2)`, `sendmmsg(2)`; one datagram a call elsewhere).
//!
//! For a socket that carries many transfers: a single-port server's listener (dnsmasq's
//! `--tftp-single-port`, [`crate::ServerConfig::single_port`]). At a thousand transfers at
//! once the system calls are most of what a server spends beyond the kernel's own packet
//! work: one `recvmmsg` takes the ACKs of many clients, one `sendmmsg` their next DATA.
//! Measured with `tftp-floor --concurrent --single-port` (the least such a server can spend:
//! `benches/`), 1,000 clients × 1 MiB from one address: ×0.72 of dnsmasq's CPU per MB and
//! ×1.23 its sessions/s, where one socket a transfer with one `recvfrom` and one `sendmsg` a
//! packet (`--concurrent --connected`) reached ×0.90 and ×0.88.
//!
//! Both keep the [`crate::udp`] module's addressing: datagrams report the local address they
//! were sent to (on a socket prepared with [`crate::udp::prepare_listener`]), and are sent
//! from a chosen one (`IP_PKTINFO`, `IPV6_PKTINFO`). Safe code: `nix` lays out the headers.

#![forbid(unsafe_code)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;

use crate::udp::Received;

/// Datagrams read from a socket by one [`RecvBatch::recv`]: up to `count` of them, each into
/// a slot of `slot` bytes (a longer datagram is cut to it, as `recv_from` cuts it).
///
/// Holds the kernel's headers, which point into the batch itself: it is not [`Send`], so a
/// thread makes its own (an event loop: one for all its sockets).
///
/// ```
/// use std::net::UdpSocket;
/// use tftp_server::batch::RecvBatch;
///
/// let server = UdpSocket::bind("127.0.0.1:0")?;
/// server.set_nonblocking(true)?;
/// let client = UdpSocket::bind("127.0.0.1:0")?;
/// client.send_to(b"\0\x04\0\x01", server.local_addr()?)?;
/// client.send_to(b"\0\x04\0\x02", server.local_addr()?)?;
/// # std::thread::sleep(std::time::Duration::from_millis(20));
/// let mut batch = RecvBatch::new(32, 1500);
/// assert_eq!(batch.recv(&server)?, 2);
/// let (received, datagram) = batch.get(1).unwrap();
/// assert_eq!((received.peer, datagram), (client.local_addr()?, &b"\0\x04\0\x02"[..]));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct RecvBatch {
    buf: Vec<u8>,
    slot: usize,
    /// Bytes from a slot's start to the next's (see [`stride`]).
    stride: usize,
    count: usize,
    got: Vec<(usize, Received)>,
    #[cfg(target_os = "linux")]
    headers: nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("count", &self.count)
            .field("slot", &self.slot)
            .field("received", &self.got.len())
            .finish()
    }
}

impl RecvBatch {
    /// Datagrams a batch holds at most: a larger `count` is cut to it.
    pub const MAX: usize = 64;

    /// Room for `count` datagrams (at least 1, at most [`RecvBatch::MAX`]) of up to `slot`
    /// bytes each (at least 1). The slots are allocated zeroed and left to the kernel's lazy
    /// paging: a batch of ACKs touches one page a slot.
    pub fn new(count: usize, slot: usize) -> Self {
        let (count, slot) = (count.clamp(1, Self::MAX), slot.max(1));
        let stride = stride(slot);
        RecvBatch {
            buf: vec![0; count * stride],
            slot,
            stride,
            count,
            got: Vec::with_capacity(count),
            #[cfg(target_os = "linux")]
            headers: nix::sys::socket::MultiHeaders::preallocate(
                count,
                Some(nix::cmsg_space!(
                    nix::libc::in_pktinfo,
                    nix::libc::in6_pktinfo
                )),
            ),
        }
    }

    /// Read the datagrams queued on `socket`, without blocking: how many (none queued is
    /// [`io::ErrorKind::WouldBlock`]). The previous batch is forgotten. A datagram whose
    /// sender is not an IP address (it cannot be, on a UDP socket) is skipped, uncounted.
    pub fn recv(&mut self, socket: &impl AsFd) -> io::Result<usize> {
        self.recv_with(socket, |_, _| true)
    }

    /// [`RecvBatch::recv`], reporting the local address and interface
    /// ([`Received::local_ip`], [`Received::interface`]) only of the datagrams for which
    /// `addressed(sender, datagram)` says true; the others have `None` there. For a caller
    /// that knows which datagrams it answers from a chosen address (a single-port
    /// listener's requests) and which it only routes (its transfers' ACKs): decoding the
    /// kernel's control messages was about 7% of such a server's own instructions a
    /// datagram (callgrind, 200 transfers at once).
    ///
    /// ```
    /// use std::net::UdpSocket;
    /// use tftp_server::batch::RecvBatch;
    ///
    /// let server = UdpSocket::bind("127.0.0.1:0")?;
    /// tftp_server::udp::prepare_listener(&server)?;
    /// server.set_nonblocking(true)?;
    /// let client = UdpSocket::bind("127.0.0.1:0")?;
    /// client.send_to(b"\0\x01boot\0octet\0", server.local_addr()?)?;
    /// client.send_to(b"\0\x04\0\x01", server.local_addr()?)?;
    /// # std::thread::sleep(std::time::Duration::from_millis(20));
    /// let mut batch = RecvBatch::new(32, 1500);
    /// // Only requests (opcode 1 or 2) need to know the address they were sent to.
    /// assert_eq!(batch.recv_with(&server, |_, d| matches!(d, [0, 1 | 2, ..]))?, 2);
    /// assert!(batch.get(0).unwrap().0.local_ip.is_some());
    /// assert_eq!(batch.get(1).unwrap().0.local_ip, None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_with(
        &mut self,
        socket: &impl AsFd,
        addressed: impl FnMut(SocketAddr, &[u8]) -> bool,
    ) -> io::Result<usize> {
        self.got.clear();
        self.recv_into(socket, addressed)?;
        Ok(self.got.len())
    }

    #[cfg(target_os = "linux")]
    fn recv_into(
        &mut self,
        socket: &impl AsFd,
        mut addressed: impl FnMut(SocketAddr, &[u8]) -> bool,
    ) -> io::Result<()> {
        use nix::sys::socket::{MsgFlags, recvmmsg};
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;

        let RecvBatch {
            buf,
            slot,
            stride,
            count,
            headers,
            got,
        } = self;
        // On the stack (`count` is at most `MAX`): a call allocates nothing. One slice a slot:
        // `buf` holds `count` of them.
        let mut slices: [[IoSliceMut<'_>; 1]; RecvBatch::MAX] =
            std::array::from_fn(|_| [IoSliceMut::new(&mut [])]);
        for (slice, chunk) in slices.iter_mut().zip(buf.chunks_mut(*stride)) {
            *slice = [IoSliceMut::new(&mut chunk[..*slot])];
        }
        let fd = socket.as_fd().as_raw_fd();
        // Non-blocking: a signal cannot interrupt it midway (`EINTR` is reported as
        // `Interrupted`, for the caller's next turn).
        let flags = MsgFlags::MSG_DONTWAIT;
        let results = recvmmsg(fd, headers, slices[..*count].iter_mut(), flags, None)?;
        for (i, msg) in results.enumerate() {
            let Some(peer) = crate::udp::socket_addr(msg.address.as_ref()) else {
                continue;
            };
            // The datagram as `get` will cut it: the slot's bytes (one slot, one slice).
            let datagram = msg.iovs().next().unwrap_or_default();
            let received = match addressed(peer, datagram) {
                true => crate::udp::received(msg.bytes, peer, msg.cmsgs().into_iter().flatten()),
                false => crate::udp::received(msg.bytes, peer, std::iter::empty()),
            };
            got.push((i, received));
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn recv_into(
        &mut self,
        socket: &impl AsFd,
        _addressed: impl FnMut(SocketAddr, &[u8]) -> bool,
    ) -> io::Result<()> {
        for i in 0..self.count {
            let at = i * self.stride;
            match crate::udp::recv_from_to(socket, &mut self.buf[at..at + self.slot]) {
                Ok(received) => self.got.push((i, received)),
                Err(e) if i > 0 && e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Datagrams of the last [`RecvBatch::recv`].
    pub fn len(&self) -> usize {
        self.got.len()
    }

    /// True if the last [`RecvBatch::recv`] read nothing (or there was none).
    pub fn is_empty(&self) -> bool {
        self.got.is_empty()
    }

    /// Datagram `i` of the last [`RecvBatch::recv`]: what the kernel said of it, and its bytes.
    pub fn get(&self, i: usize) -> Option<(&Received, &[u8])> {
        let (at, received) = self.got.get(i)?;
        let start = at * self.stride;
        let len = received.len.min(self.slot);
        Some((received, self.buf.get(start..start + len)?))
    }
}

/// The distance between the starts of two receive slots of `slot` bytes: `slot` rounded up to
/// a cache line, and a line more if that is a multiple of a page. Slots a multiple of 4 KiB
/// apart (64 KiB ones: a single-port listener's, any datagram fits) start in the same cache
/// set, and a batch of tens of datagrams would evict one another's first line (the one a
/// datagram's header and an ACK are in) from an 8-way L1 and a 16-way L2.
fn stride(slot: usize) -> usize {
    let lines = slot.next_multiple_of(64);
    match lines % 4096 {
        0 => lines + 64,
        _ => lines,
    }
}

/// Datagrams waiting to go out of one socket with one `sendmmsg` ([`SendQueue::flush`]),
/// each to its own peer, from its own local address if given (see
/// [`crate::udp::send_from_to`]). Made for a socket ([`SendQueue::for_socket`]): its address
/// family is learnt once, not at every flush. Datagrams are copied in; nothing is sent until
/// a flush, which keeps their order. Plain memory: [`Send`], so it may live in a structure
/// that moves to another thread.
///
/// ```
/// use std::net::UdpSocket;
/// use tftp_server::batch::SendQueue;
///
/// let server = UdpSocket::bind("127.0.0.1:0")?;
/// let client = UdpSocket::bind("127.0.0.1:0")?;
/// let mut queue = SendQueue::for_socket(&server)?;
/// queue.push(b"\0\x03\0\x01hello", client.local_addr()?, None);
/// queue.push(b"\0\x03\0\x02", client.local_addr()?, None);
/// assert_eq!(queue.flush(&server)?, 2);
/// let mut buf = [0; 16];
/// assert_eq!(client.recv(&mut buf)?, 9);
/// assert_eq!(client.recv(&mut buf)?, 4);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct SendQueue {
    /// The socket's family is IPv6: IPv4 addresses go as IPv4-mapped.
    v6: bool,
    bytes: Vec<u8>,
    queued: Vec<Queued>,
    /// Queued datagrams before this one were sent (or dropped).
    next: usize,
}

#[derive(Debug, Clone, Copy)]
struct Queued {
    start: usize,
    end: usize,
    to: SocketAddr,
    from: Option<IpAddr>,
}

impl SendQueue {
    /// Datagrams one `sendmmsg` sends at most, and what [`SendQueue::is_full`] counts to.
    pub const BATCH: usize = 64;
    /// Queued bytes past which [`SendQueue::is_full`] says so (a few windows of big blocks).
    pub const BYTES: usize = 256 * 1024;

    /// An empty queue for `socket` (an IPv4 or IPv6 UDP socket), or for any socket of its
    /// address family.
    pub fn for_socket(socket: &impl AsFd) -> io::Result<Self> {
        Ok(SendQueue {
            v6: crate::udp::is_v6(socket)?,
            bytes: Vec::new(),
            queued: Vec::new(),
            next: 0,
        })
    }

    /// Queue `datagram` for `to`, from local address `from` if given.
    pub fn push(&mut self, datagram: &[u8], to: SocketAddr, from: Option<IpAddr>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(datagram);
        let end = self.bytes.len();
        self.queued.push(Queued {
            start,
            end,
            to,
            from: from.filter(|ip| !ip.is_unspecified()),
        });
    }

    /// Datagrams waiting.
    pub fn len(&self) -> usize {
        self.queued.len() - self.next
    }

    /// True if nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Enough is queued for a flush now: [`SendQueue::BATCH`] datagrams or
    /// [`SendQueue::BYTES`] bytes.
    pub fn is_full(&self) -> bool {
        self.len() >= Self::BATCH || self.bytes.len() >= Self::BYTES
    }

    /// Forget what waits (what a failed flush left): how many datagrams that was.
    pub fn clear(&mut self) -> usize {
        let dropped = self.len();
        self.bytes.clear();
        self.queued.clear();
        self.next = 0;
        dropped
    }

    /// Send what waits on `socket` without blocking, in order, [`SendQueue::BATCH`] a call:
    /// how many datagrams left. A datagram the kernel refuses (its destination unreachable
    /// from this socket's family, a source address not of this host) is dropped and the
    /// rest go on, as a loss the sender's retransmission covers; `WouldBlock` (the send
    /// buffer full) returns with the rest still queued, for a later flush or
    /// [`SendQueue::clear`].
    pub fn flush(&mut self, socket: &impl AsFd) -> io::Result<usize> {
        let v6 = self.v6;
        let mut sent = 0;
        while self.next < self.queued.len() {
            // A run of datagrams from the same source: one call carries one control message.
            let from = self.queued[self.next].from;
            let run = self.queued[self.next..]
                .iter()
                .take(Self::BATCH)
                .take_while(|q| q.from == from)
                .count();
            match self.send_run(socket, v6, run, from) {
                Ok(n) => {
                    self.next += n;
                    sent += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
                Err(e) => {
                    tracing::debug!(to = %self.queued[self.next].to, error = %e, "send failed");
                    self.next += 1;
                }
            }
        }
        self.clear();
        Ok(sent)
    }

    /// One call for the `run` datagrams from `self.next` on, all from `from`: how many the
    /// kernel took (at least one), or the first one's error. The kernel's headers and the
    /// destinations are the thread's ([`SendHeaders`]), the data's slices on the stack: a
    /// call allocates nothing.
    #[cfg(target_os = "linux")]
    fn send_run(
        &self,
        socket: &impl AsFd,
        v6: bool,
        run: usize,
        from: Option<IpAddr>,
    ) -> io::Result<usize> {
        use nix::libc::{in_addr, in_pktinfo, in6_addr, in6_pktinfo};
        use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmmsg};
        use std::io::IoSlice;
        use std::os::fd::AsRawFd;

        let source = from
            .map(|ip| crate::udp::in_family(SocketAddr::new(ip, 0), v6))
            .transpose()?;
        let queued = &self.queued[self.next..self.next + run];
        SEND_HEADERS.with_borrow_mut(|headers| {
            let SendHeaders {
                plain,
                v4: with_v4_source,
                v6: with_v6_source,
                addrs,
            } = headers.get_or_insert_with(SendHeaders::new);
            addrs.clear();
            for q in queued {
                match crate::udp::in_family(q.to, v6) {
                    Ok(to) => addrs.push(Some(SockaddrStorage::from(to))),
                    // Cut the run here: that one fails alone.
                    Err(e) if addrs.is_empty() => return Err(e),
                    Err(_) => break,
                }
            }
            let mut slices = [[IoSlice::new(&[])]; SendQueue::BATCH];
            for (slice, q) in slices.iter_mut().zip(&queued[..addrs.len()]) {
                *slice = [IoSlice::new(&self.bytes[q.start..q.end])];
            }
            let slices = &slices[..addrs.len()];
            let v4_info;
            let v6_info;
            // Headers whose control buffer fits exactly the message sent (none, or one
            // `IP_PKTINFO` or `IPV6_PKTINFO`): the kernel reads all of it.
            let (headers, cmsg) = match source {
                None => (plain, None),
                Some(SocketAddr::V4(a)) => {
                    v4_info = in_pktinfo {
                        ipi_ifindex: 0,
                        ipi_spec_dst: in_addr {
                            s_addr: u32::from(*a.ip()).to_be(),
                        },
                        ipi_addr: in_addr { s_addr: 0 },
                    };
                    (
                        with_v4_source,
                        Some(ControlMessage::Ipv4PacketInfo(&v4_info)),
                    )
                }
                Some(SocketAddr::V6(a)) => {
                    v6_info = in6_pktinfo {
                        ipi6_addr: in6_addr {
                            s6_addr: a.ip().octets(),
                        },
                        ipi6_ifindex: 0,
                    };
                    (
                        with_v6_source,
                        Some(ControlMessage::Ipv6PacketInfo(&v6_info)),
                    )
                }
            };
            let fd = socket.as_fd().as_raw_fd();
            let mut tries = 0;
            loop {
                let flags = MsgFlags::MSG_DONTWAIT;
                match sendmmsg(fd, &mut *headers, slices, &*addrs, cmsg.as_slice(), flags) {
                    Err(nix::errno::Errno::EINTR) if tries < crate::udp::EINTR_RETRIES => {
                        tries += 1
                    }
                    Err(e) => return Err(e.into()),
                    Ok(results) => return Ok(results.count().max(1)),
                }
            }
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn send_run(
        &self,
        socket: &impl AsFd,
        _v6: bool,
        _run: usize,
        from: Option<IpAddr>,
    ) -> io::Result<usize> {
        let q = self.queued[self.next];
        crate::udp::send_from_to(socket, &self.bytes[q.start..q.end], q.to, from).map(|_| 1)
    }
}

/// What [`SendQueue::send_run`] hands the kernel, kept by each thread that sends: the
/// `sendmmsg` headers for [`SendQueue::BATCH`] datagrams, one set for each control message a
/// run can carry (their control buffers are sized at allocation, and the kernel reads the
/// whole of one), and the destinations in the kernel's form. Thread-local so that a
/// [`SendQueue`] stays plain memory ([`Send`]); the headers hold pointers and are not.
#[cfg(target_os = "linux")]
struct SendHeaders {
    plain: nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
    v4: nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
    v6: nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
    addrs: Vec<Option<nix::sys::socket::SockaddrStorage>>,
}

#[cfg(target_os = "linux")]
impl SendHeaders {
    fn new() -> Self {
        use nix::libc::{in_pktinfo, in6_pktinfo};
        use nix::sys::socket::MultiHeaders;
        SendHeaders {
            plain: MultiHeaders::preallocate(SendQueue::BATCH, None),
            v4: MultiHeaders::preallocate(SendQueue::BATCH, Some(nix::cmsg_space!(in_pktinfo))),
            v6: MultiHeaders::preallocate(SendQueue::BATCH, Some(nix::cmsg_space!(in6_pktinfo))),
            addrs: Vec::with_capacity(SendQueue::BATCH),
        }
    }
}

#[cfg(target_os = "linux")]
thread_local! {
    static SEND_HEADERS: std::cell::RefCell<Option<SendHeaders>> =
        const { std::cell::RefCell::new(None) };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::net::{Ipv4Addr, UdpSocket};
    use std::time::Duration;

    /// A single-port listener's batch (64 slots of 64 KiB, as tftp-blocking reads them): no
    /// two slots start in the same cache set of a 4 KiB-way cache (32 KiB 8-way L1, and every
    /// larger one), and every slot still holds `slot` bytes, whole cache lines from the first.
    #[test]
    fn receive_slots_start_in_different_cache_sets() {
        const COUNT: usize = 64;
        for slot in [1, 4, 516, 1500, 4096, 65_536, 65_507] {
            let batch = RecvBatch::new(COUNT, slot);
            assert!(batch.stride >= slot && batch.stride % 64 == 0, "{slot}");
            assert!(
                batch.buf.len() >= (COUNT - 1) * batch.stride + slot,
                "{slot}"
            );
            let sets: std::collections::HashSet<usize> =
                (0..COUNT).map(|i| (i * batch.stride) % 4096 / 64).collect();
            // Slots of a page or more: each in a set of its own; smaller ones share a page.
            if slot >= 4096 {
                assert_eq!(sets.len(), COUNT, "{slot}");
            }
        }
    }

    fn client() -> UdpSocket {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c
    }

    /// Wait until `socket` has something to read (the datagrams were sent by another socket
    /// of this host: they are queued by the time `send_to` returns, but be patient).
    fn readable(socket: &UdpSocket) {
        socket.set_nonblocking(false).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 1];
        socket.peek_from(&mut b).unwrap();
        socket.set_nonblocking(true).unwrap();
    }

    #[test]
    fn a_batch_reports_each_datagram_its_sender_and_the_address_asked() {
        let server = UdpSocket::bind("0.0.0.0:0").unwrap();
        crate::udp::prepare_listener(&server).unwrap();
        let port = server.local_addr().unwrap().port();
        let (a, b) = (client(), client());
        a.send_to(b"\x00\x04\x00\x01", ("127.0.0.1", port)).unwrap();
        b.send_to(b"\x00\x04\x00\x02", ("127.0.0.3", port)).unwrap();
        a.send_to(&[9u8; 100], ("127.0.0.1", port)).unwrap();
        readable(&server);
        let mut batch = RecvBatch::new(8, 16);
        assert_eq!(batch.recv(&server).unwrap(), 3);
        let (r, d) = batch.get(0).unwrap();
        assert_eq!(
            (r.peer, d),
            (a.local_addr().unwrap(), &b"\x00\x04\x00\x01"[..])
        );
        assert_eq!(r.local_ip, Some(Ipv4Addr::new(127, 0, 0, 1).into()));
        assert!(r.interface.is_some());
        let (r, _) = batch.get(1).unwrap();
        assert_eq!(r.peer, b.local_addr().unwrap());
        assert_eq!(r.local_ip, Some(Ipv4Addr::new(127, 0, 0, 3).into()));
        // Cut to the slot, as `recv_from` cuts a datagram to its buffer.
        let (r, d) = batch.get(2).unwrap();
        assert_eq!((r.len, d), (16, &[9u8; 16][..]));
        assert!(batch.get(3).is_none());
        // Nothing more: WouldBlock, and the last batch is forgotten.
        let e = batch.recv(&server).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(batch.is_empty());
    }

    #[test]
    fn a_batch_decodes_the_address_asked_only_where_it_is_wanted() {
        let server = UdpSocket::bind("0.0.0.0:0").unwrap();
        crate::udp::prepare_listener(&server).unwrap();
        let port = server.local_addr().unwrap().port();
        let (a, b) = (client(), client());
        a.send_to(&[1; 40], ("127.0.0.1", port)).unwrap();
        b.send_to(b"\x00\x04\x00\x07", ("127.0.0.3", port)).unwrap();
        readable(&server);
        let mut batch = RecvBatch::new(8, 16);
        let mut seen = Vec::new();
        let n = batch
            .recv_with(&server, |peer, datagram| {
                seen.push((peer, datagram.to_vec()));
                peer == b.local_addr().unwrap()
            })
            .unwrap();
        assert_eq!(n, 2);
        // What the choice saw is what `get` gives: the datagram cut to its slot.
        let a_peer = a.local_addr().unwrap();
        let b_peer = b.local_addr().unwrap();
        assert_eq!(
            seen,
            [
                (a_peer, vec![1; 16]),
                (b_peer, b"\x00\x04\x00\x07".to_vec())
            ]
        );
        let (r, d) = batch.get(0).unwrap();
        assert_eq!((r.peer, r.len, d), (a_peer, 16, &[1u8; 16][..]));
        assert_eq!((r.local_ip, r.interface), (None, None));
        let (r, _) = batch.get(1).unwrap();
        assert_eq!(r.local_ip, Some(Ipv4Addr::new(127, 0, 0, 3).into()));
        assert!(r.interface.is_some());
    }

    #[test]
    fn a_batch_takes_at_most_its_count() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = server.local_addr().unwrap();
        let c = client();
        for i in 0..5u8 {
            c.send_to(&[i], to).unwrap();
        }
        readable(&server);
        let mut batch = RecvBatch::new(2, 4);
        let mut got = Vec::new();
        while let Ok(n) = batch.recv(&server) {
            assert!(n <= 2);
            got.extend((0..n).map(|i| batch.get(i).unwrap().1[0]));
        }
        assert_eq!(got, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_queue_keeps_the_order_and_each_datagram_s_source() {
        let server = UdpSocket::bind("0.0.0.0:0").unwrap();
        let c = client();
        let to = c.local_addr().unwrap();
        let mut queue = SendQueue::for_socket(&server).unwrap();
        let two = Some(Ipv4Addr::new(127, 0, 0, 2).into());
        let three = Some(Ipv4Addr::new(127, 0, 0, 3).into());
        for (i, from) in [two, two, None, three, two].into_iter().enumerate() {
            queue.push(&[i as u8], to, from);
        }
        assert_eq!(queue.len(), 5);
        assert_eq!(queue.flush(&server).unwrap(), 5);
        assert!(queue.is_empty());
        let mut buf = [0u8; 4];
        let mut got = Vec::new();
        for _ in 0..5 {
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!(n, 1);
            got.push((buf[0], from.ip().to_string()));
        }
        let sources: Vec<_> = got.iter().map(|(_, ip)| ip.as_str()).collect();
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        // Without a source, the routing table's pick: loopback's 127.0.0.1.
        assert_eq!(
            sources,
            [
                "127.0.0.2",
                "127.0.0.2",
                "127.0.0.1",
                "127.0.0.3",
                "127.0.0.2"
            ]
        );
    }

    #[test]
    fn a_queue_longer_than_a_batch_goes_out_whole() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = client();
        let to = c.local_addr().unwrap();
        let mut queue = SendQueue::for_socket(&server).unwrap();
        let n = SendQueue::BATCH * 2 + 7;
        for i in 0..n {
            queue.push(&(i as u16).to_be_bytes(), to, None);
            assert_eq!(queue.is_full(), i + 1 >= SendQueue::BATCH);
        }
        assert_eq!(queue.flush(&server).unwrap(), n);
        let mut buf = [0u8; 4];
        for i in 0..n {
            assert_eq!(c.recv(&mut buf).unwrap(), 2);
            assert_eq!(u16::from_be_bytes([buf[0], buf[1]]) as usize, i);
        }
    }

    #[test]
    fn a_queue_drops_what_the_kernel_refuses_and_sends_the_rest() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = client();
        let to = c.local_addr().unwrap();
        let mut queue = SendQueue::for_socket(&server).unwrap();
        queue.push(b"a", to, None);
        // IPv6 from an IPv4 socket; a source address this host does not have.
        queue.push(b"b", "[2001:db8::1]:69".parse().unwrap(), None);
        queue.push(b"c", to, None);
        queue.push(b"d", to, Some(Ipv4Addr::new(198, 18, 0, 1).into()));
        queue.push(b"e", to, None);
        assert_eq!(queue.flush(&server).unwrap(), 3);
        assert!(queue.is_empty());
        let mut buf = [0u8; 4];
        let mut got = Vec::new();
        for _ in 0..3 {
            assert_eq!(c.recv(&mut buf).unwrap(), 1);
            got.push(buf[0]);
        }
        assert_eq!(got, b"ace");
    }

    #[test]
    fn clear_forgets_what_waits() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut queue = SendQueue::for_socket(&server).unwrap();
        let to = "127.0.0.1:9".parse().unwrap();
        queue.push(&[0; 1000], to, None);
        queue.push(&[0; 10], to, None);
        assert_eq!(queue.clear(), 2);
        assert!(queue.is_empty() && !queue.is_full());
        for _ in 0..(SendQueue::BYTES / 65_000 + 1) {
            queue.push(&[0; 65_000], to, None);
        }
        assert!(queue.is_full());
    }
}
