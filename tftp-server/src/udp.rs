//! UDP that knows its own addresses: which local address a datagram was sent to, and sending
//! from a chosen one.
//!
//! A server listening on a wildcard address (`[::]:69`) on a host with several addresses (a
//! primary and a service address, a VIP) must answer from the address it was asked at:
//! RFC 1122 §4.1.3.5 (and RFC 1350 §4, where a transfer is identified by both ends' addresses
//! and ports) — PXE and UEFI ROMs drop a reply from any other address, and a NAT drops it as an
//! unknown flow. A wildcard socket's `recv_from` does not say which address was asked, and its
//! `send_to` lets the routing table pick the source (the primary). The kernel tells and
//! obeys through ancillary data: `IP_PKTINFO` (Linux `ip(7)`) and `IPV6_PKTINFO` (RFC 3542
//! §6), as dnsmasq's TFTP server uses them.
//!
//! These are plain non-blocking calls on anything with a file descriptor, for use under any
//! readiness-based runtime (tokio's `try_io`, async-io's `read_with`/`write_with`): they fail
//! with [`io::ErrorKind::WouldBlock`] when there is nothing to do.
//!
//! Addresses keep the socket's family, as [`std::net::UdpSocket::recv_from`] reports peers
//! (the listener routes and the sessions compare peers in that form): on a dual-stack `[::]`
//! socket an IPv4 datagram's `peer` and `local_ip` are both IPv4-mapped IPv6
//! (`::ffff:198.18.0.2`); compare with [`IpAddr::to_canonical`], as admission and templates
//! do. [`send_from_to`] takes either form.
//!
//! The interface a datagram arrived on is reported too, and [`interface_mtu`] gives that
//! interface's MTU, so that a block size can be clamped to what fits unfragmented (dnsmasq
//! clamps `blksize` the same way; RFC 2348 lets the server answer with a smaller size).
//!
//! Why not `quinn-udp` (it reports `dst_ip` and sends from `src_ip`): it does not report the
//! interface index, and preparing a socket with it also turns on UDP GRO (the kernel may
//! then hand several datagrams of one peer over as one buffer, which a one-datagram-per-read
//! server would have to split), sets the don't-fragment bit (`IP_PMTUDISC_PROBE`,
//! `IPV6_DONTFRAG`: large blocks on a small-MTU path would fail instead of being fragmented)
//! and asks for TOS bytes. Here receiving goes through `nix`'s `recvmsg`, whose control
//! message decoding is safe, and sending writes its one control message into a byte buffer
//! for `socket2`'s `sendmsg`, as [`crate::runtime::send_gso`] does; no allocation per
//! datagram either way.

#![forbid(unsafe_code)]

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};
#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, getsockopt, recvmsg, setsockopt, sockopt,
};
use socket2::{Domain, MsgHdr, SockAddr, SockRef};

/// One datagram received by [`recv_from_to`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes written to the buffer (a longer datagram is truncated, as by `recv_from`).
    pub len: usize,
    /// The sender, in the socket's family (IPv4-mapped on a dual-stack socket).
    pub peer: SocketAddr,
    /// The local address the datagram was sent to, in the socket's family; the address to
    /// answer from. For IPv4 it is the kernel's `ipi_spec_dst`: the datagram's destination,
    /// or for a broadcast the address of the interface it came in on (a broadcast address
    /// cannot be a source). `None` if the socket was not prepared with [`prepare_listener`],
    /// or the kernel did not say (an IPv6 multicast destination is not reported either).
    pub local_ip: Option<IpAddr>,
    /// The index of the interface it arrived on, if the kernel said (see [`interface_mtu`]).
    pub interface: Option<u32>,
}

/// Set `socket`'s receive buffer to `bytes` with `SO_RCVBUFFORCE` if the process may (root
/// or `CAP_NET_ADMIN`), else with `SO_RCVBUF` (capped by `net.core.rmem_max`); returns what
/// the kernel granted, as it reports it (twice what it will hold in payload; 0 if it did not
/// say).
pub fn set_receive_buffer(socket: &impl AsFd, bytes: usize) -> usize {
    let fd = socket.as_fd();
    if setsockopt(&fd, sockopt::RcvBufForce, &bytes).is_err() {
        let _ = setsockopt(&fd, sockopt::RcvBuf, &bytes);
    }
    getsockopt(&fd, sockopt::RcvBuf).unwrap_or(0)
}

/// Whether `error` is a send's `EMSGSIZE`: the datagram is longer than its path allows.
#[cfg(target_os = "linux")]
fn is_too_big(error: &io::Error) -> bool {
    error.raw_os_error() == Some(nix::libc::EMSGSIZE)
}

/// Ask the kernel to report each datagram's destination address and interface: `IP_PKTINFO`
/// on IPv4 sockets, `IPV6_RECVPKTINFO` on IPv6 ones, and both on a dual-stack socket (its
/// IPv4 datagrams then carry `IP_PKTINFO`, whose `ipi_spec_dst` is the right source for an
/// answer to a broadcast). Idempotent.
pub fn prepare_listener(socket: &impl AsFd) -> io::Result<()> {
    let fd = socket.as_fd();
    match SockRef::from(&fd).domain()? {
        Domain::IPV4 => setsockopt(&fd, sockopt::Ipv4PacketInfo, &true)?,
        Domain::IPV6 => {
            setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true)?;
            if !SockRef::from(&fd).only_v6()? {
                setsockopt(&fd, sockopt::Ipv4PacketInfo, &true)?;
            }
        }
        _ => return Err(not_udp_ip()),
    }
    Ok(())
}

/// Control message space for both packet-info messages (`CMSG_SPACE(12) + CMSG_SPACE(20)` is
/// 72 bytes on 64-bit Linux), aligned as `struct cmsghdr` (nix reads the headers in place).
#[repr(C, align(8))]
struct Control([u8; 128]);

/// `MSG_DONTWAIT`: the sends here never block, on a blocking socket either (tftp-blocking
/// switches a lone transfer's socket to blocking receives and keeps sending on it).
const DONTWAIT: i32 = MsgFlags::MSG_DONTWAIT.bits();

/// `EINTR` retries before giving up with [`io::ErrorKind::Interrupted`]: a signal storm
/// must not spin a task forever.
pub(crate) const EINTR_RETRIES: usize = 8;

/// Receive one datagram without blocking: its sender, and (on a socket prepared with
/// [`prepare_listener`]) the local address it was sent to and the interface it came in on.
/// Allocates nothing.
pub fn recv_from_to(socket: &impl AsFd, buf: &mut [u8]) -> io::Result<Received> {
    let fd = socket.as_fd();
    let mut control = Control([0; 128]);
    let mut iov = [IoSliceMut::new(buf)];
    let mut tries = 0;
    let msg = loop {
        match recvmsg::<SockaddrStorage>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut control.0),
            MsgFlags::MSG_DONTWAIT,
        ) {
            Err(nix::errno::Errno::EINTR) if tries < EINTR_RETRIES => tries += 1,
            other => break other.map_err(io::Error::from)?,
        }
    };
    let peer = socket_addr(msg.address.as_ref()).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "datagram without an IP sender")
    })?;
    // A truncated control buffer (it cannot be: the space fits both) reads as no messages.
    Ok(received(msg.bytes, peer, msg.cmsgs().into_iter().flatten()))
}

/// What [`recv_from_to`] (and [`crate::batch::RecvBatch`]) report of a datagram of `len`
/// bytes from `peer` with control messages `cmsgs`.
pub(crate) fn received(
    len: usize,
    peer: SocketAddr,
    cmsgs: impl Iterator<Item = ControlMessageOwned>,
) -> Received {
    let (mut v4, mut v6, mut interface) = (None, None, None);
    for cmsg in cmsgs {
        match cmsg {
            ControlMessageOwned::Ipv4PacketInfo(info) => {
                v4 = Some(Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr)));
                interface = u32::try_from(info.ipi_ifindex).ok().or(interface);
            }
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                let ip = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                v6 = (!ip.is_multicast()).then_some(ip);
                interface = interface.or(Some(info.ipi6_ifindex));
            }
            _ => {}
        }
    }
    let interface = interface.filter(|&i| i != 0);
    // In the peer's family: IPv4-mapped on a dual-stack socket.
    let local_ip = match peer {
        SocketAddr::V4(_) => v4.map(IpAddr::V4),
        SocketAddr::V6(_) => v4.map(|a| a.to_ipv6_mapped()).or(v6).map(IpAddr::V6),
    }
    .filter(|ip| !ip.is_unspecified());
    Received {
        len,
        peer,
        local_ip,
        interface,
    }
}

/// Send `buf` to `to` without blocking, from `from_ip` if given (an address of this host, or
/// the kernel refuses with `EINVAL`/`EADDRNOTAVAIL`); otherwise, or for an unspecified
/// address, from what the routing table picks, as `send_to` does. Either address may be
/// IPv4 or IPv4-mapped on a dual-stack socket. Allocates nothing.
pub fn send_from_to(
    socket: &impl AsFd,
    buf: &[u8],
    to: SocketAddr,
    from_ip: Option<IpAddr>,
) -> io::Result<usize> {
    let fd = socket.as_fd();
    let sock = SockRef::from(&fd);
    let v6 = match sock.domain()? {
        Domain::IPV4 => false,
        Domain::IPV6 => true,
        _ => return Err(not_udp_ip()),
    };
    let to = SockAddr::from(in_family(to, v6)?);
    let from_ip = from_ip.filter(|ip| !ip.is_unspecified());
    let mut control = Control([0; 128]);
    let control = match from_ip {
        None => &[][..],
        Some(ip) => {
            let len = packet_info(&mut control.0, in_family(SocketAddr::new(ip, 0), v6)?.ip());
            &control.0[..len]
        }
    };
    let iov = [IoSlice::new(buf)];
    let msg = MsgHdr::new()
        .with_addr(&to)
        .with_buffers(&iov)
        .with_control(control);
    let mut tries = 0;
    loop {
        match sock.sendmsg(&msg, DONTWAIT) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted && tries < EINTR_RETRIES => tries += 1,
            other => return other,
        }
    }
}

/// The MTU of interface `index` in this network namespace, from the kernel's routing
/// netlink (`RTM_GETLINK`, `IFLA_MTU`; rtnetlink(7)). `None` if there is no such interface
/// or netlink does not answer. Not cached: a caller asking per request should cache by
/// index (MTUs change rarely, and a changed one only makes a block size less than ideal).
///
/// Netlink rather than `/sys/class/net/NAME/mtu`: sysfs shows the namespace it was mounted
/// in, which is not this process's after a bare `nsenter --net` or `setns`.
pub fn interface_mtu(index: u32) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        netlink::link_mtu(index)
            .inspect_err(|e| tracing::debug!(index, error = %e, "no MTU for interface"))
            .ok()
            .flatten()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = index;
        None
    }
}

/// Write the packet-info control message asking for source `from` (either form) into `out`
/// for `socket`'s family; its length.
pub(crate) fn source_control(
    socket: &impl AsFd,
    from: IpAddr,
    out: &mut [u8; 128],
) -> io::Result<usize> {
    let v6 = is_v6(socket)?;
    Ok(packet_info(
        out,
        in_family(SocketAddr::new(from, 0), v6)?.ip(),
    ))
}

/// `addr` in `socket`'s family (IPv4-mapped on an IPv6 socket, plain on an IPv4 one).
pub(crate) fn in_socket_family(socket: &impl AsFd, addr: SocketAddr) -> io::Result<SocketAddr> {
    in_family(addr, is_v6(socket)?)
}

pub(crate) fn is_v6(socket: &impl AsFd) -> io::Result<bool> {
    match SockRef::from(&socket.as_fd()).domain()? {
        Domain::IPV4 => Ok(false),
        Domain::IPV6 => Ok(true),
        _ => Err(not_udp_ip()),
    }
}

fn not_udp_ip() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "not an IPv4 or IPv6 socket")
}

/// `addr` in a socket's family: IPv4 as IPv4-mapped on an IPv6 socket; IPv4-mapped as IPv4
/// on an IPv4 socket; IPv6 on an IPv4 socket is an error.
pub(crate) fn in_family(addr: SocketAddr, v6: bool) -> io::Result<SocketAddr> {
    match (addr, v6) {
        (SocketAddr::V4(a), true) => Ok(SocketAddr::new(a.ip().to_ipv6_mapped().into(), a.port())),
        (SocketAddr::V6(a), false) => match a.ip().to_ipv4_mapped() {
            Some(ip) => Ok(SocketAddr::new(ip.into(), a.port())),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{addr} is not reachable from an IPv4 socket"),
            )),
        },
        _ => Ok(addr),
    }
}

pub(crate) fn socket_addr(addr: Option<&SockaddrStorage>) -> Option<SocketAddr> {
    let addr = addr?;
    if let Some(a) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*a)));
    }
    addr.as_sockaddr_in6()
        .map(|a| SocketAddr::V6(SocketAddrV6::from(*a)))
}

/// Write one `IP_PKTINFO` (IPv4 `from`) or `IPV6_PKTINFO` (IPv6, IPv4-mapped included)
/// control message asking for source address `from` into `out`; returns its length
/// (`CMSG_SPACE`). Laid out as the kernel reads it: `struct cmsghdr { size_t cmsg_len; int
/// cmsg_level; int cmsg_type; }`, padded to the alignment of `size_t`, then the data,
/// padded likewise. The interface index is left 0: the route to the peer decides it (for a
/// link-local peer the destination's scope id does).
fn packet_info(out: &mut [u8; 128], from: IpAddr) -> usize {
    const WORD: usize = std::mem::size_of::<usize>();
    const fn align(n: usize) -> usize {
        (n + WORD - 1) & !(WORD - 1)
    }
    const HDR: usize = align(WORD + 8);
    // <linux/in.h>, <linux/in6.h>: the levels are the protocol numbers.
    const SOL_IP: i32 = 0;
    const IP_PKTINFO: i32 = 8;
    const SOL_IPV6: i32 = 41;
    const IPV6_PKTINFO: i32 = 50;
    let (level, kind, data_len) = match from {
        IpAddr::V4(ip) => {
            // struct in_pktinfo { int ipi_ifindex; struct in_addr ipi_spec_dst, ipi_addr; }:
            // the source is ipi_spec_dst.
            out[HDR + 4..HDR + 8].copy_from_slice(&ip.octets());
            (SOL_IP, IP_PKTINFO, 12)
        }
        IpAddr::V6(ip) => {
            // struct in6_pktinfo { struct in6_addr ipi6_addr; unsigned ipi6_ifindex; }
            out[HDR..HDR + 16].copy_from_slice(&ip.octets());
            (SOL_IPV6, IPV6_PKTINFO, 20)
        }
    };
    out[..WORD].copy_from_slice(&(HDR + data_len).to_ne_bytes());
    out[WORD..WORD + 4].copy_from_slice(&level.to_ne_bytes());
    out[WORD + 4..WORD + 8].copy_from_slice(&kind.to_ne_bytes());
    HDR + align(data_len)
}

#[cfg(target_os = "linux")]
mod netlink {
    //! Just enough rtnetlink to read one link's MTU.

    use std::io;
    use std::time::Duration;

    use rustix::net::{
        AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, recv, send, socket_with,
        sockopt,
    };

    const NLMSG_ERROR: u16 = 2;
    const RTM_NEWLINK: u16 = 16;
    const RTM_GETLINK: u16 = 18;
    const NLM_F_REQUEST: u16 = 1;
    const IFLA_MTU: u16 = 4;
    /// `struct nlmsghdr` and `struct ifinfomsg`: 16 bytes each.
    const NLMSG_HDR: usize = 16;
    const IFINFO: usize = 16;
    const SEQ: u32 = 1;

    /// `Ok(None)`: no such interface.
    pub(super) fn link_mtu(index: u32) -> io::Result<Option<u32>> {
        let index = i32::try_from(index).map_err(|_| io::ErrorKind::InvalidInput)?;
        let fd = socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None, // NETLINK_ROUTE is protocol 0
        )?;
        // The kernel answers a request for one link at once; never wait long.
        sockopt::set_socket_timeout(&fd, sockopt::Timeout::Recv, Some(Duration::from_secs(1)))?;
        let mut request = [0u8; NLMSG_HDR + IFINFO];
        request[0..4].copy_from_slice(&((NLMSG_HDR + IFINFO) as u32).to_ne_bytes());
        request[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
        request[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        request[8..12].copy_from_slice(&SEQ.to_ne_bytes());
        // ifinfomsg: family AF_UNSPEC, type 0, then the index.
        request[NLMSG_HDR + 4..NLMSG_HDR + 8].copy_from_slice(&index.to_ne_bytes());
        // An unconnected netlink socket sends to the kernel (port id 0).
        send(&fd, &request, SendFlags::empty())?;
        // A link's message is a few KiB (statistics, per-family settings).
        let mut reply = vec![0u8; 32 * 1024];
        let (_, len) = recv(&fd, &mut reply[..], RecvFlags::empty())?;
        parse(reply.get(..len).unwrap_or(&reply), index)
    }

    fn u16_at(b: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
    }

    fn u32_at(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }

    fn malformed() -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, "malformed rtnetlink reply")
    }

    /// The MTU from a reply to our `RTM_GETLINK`: `Ok(None)` for `ENODEV`.
    pub(super) fn parse(reply: &[u8], index: i32) -> io::Result<Option<u32>> {
        let len = u32_at(reply, 0).ok_or_else(malformed)? as usize;
        let kind = u16_at(reply, 4).ok_or_else(malformed)?;
        let seq = u32_at(reply, 8).ok_or_else(malformed)?;
        let msg = reply.get(..len).ok_or_else(malformed)?;
        if seq != SEQ {
            return Err(malformed());
        }
        match kind {
            NLMSG_ERROR => {
                let errno = u32_at(msg, NLMSG_HDR).ok_or_else(malformed)? as i32;
                const ENODEV: i32 = 19;
                return match -errno {
                    ENODEV => Ok(None),
                    0 => Err(malformed()),
                    e => Err(io::Error::from_raw_os_error(e)),
                };
            }
            RTM_NEWLINK => {}
            _ => return Err(malformed()),
        }
        let got = u32_at(msg, NLMSG_HDR + 4).ok_or_else(malformed)? as i32;
        if got != index {
            return Err(malformed());
        }
        // Attributes: { u16 rta_len; u16 rta_type; data }, each padded to 4 bytes.
        let mut at = NLMSG_HDR + IFINFO;
        while let (Some(rta_len), Some(rta_type)) = (u16_at(msg, at), u16_at(msg, at + 2)) {
            let rta_len = usize::from(rta_len);
            if rta_len < 4 {
                return Err(malformed());
            }
            // The top bits are flags (NLA_F_NESTED, NLA_F_NET_BYTEORDER).
            if rta_type & 0x3fff == IFLA_MTU {
                return u32_at(msg, at + 4).map(Some).ok_or_else(malformed);
            }
            at += (rta_len + 3) & !3;
        }
        Err(malformed())
    }
}

/// UDP generic segmentation offload: send `contents` as datagrams of `segment_size` bytes
/// with one `sendmsg` (Linux 4.18+, `UDP_SEGMENT`). Non-blocking: may fail with `WouldBlock`.
/// A segment longer than the path to `to` allows fails that call only (`EMSGSIZE` or
/// `EINVAL`); after another error (a device that refuses), GSO is not tried again in this
/// process. Either way the caller should send the datagrams one by one. Allocates nothing.
pub fn send_gso(
    socket: std::os::fd::BorrowedFd<'_>,
    contents: &[u8],
    segment_size: usize,
    to: SocketAddr,
) -> io::Result<usize> {
    send_gso_from(socket, contents, segment_size, to, None)
}

/// [`send_gso`] from local address `from` (see [`send_from_to`]): the same
/// `sendmsg` carries the segment size and the source address (`IP_PKTINFO` or
/// `IPV6_PKTINFO`), so single-port mode on a wildcard listener keeps its batches. An error
/// with a source address does not turn GSO off (the address may be what failed); the caller
/// sends one by one then.
pub fn send_gso_from(
    socket: std::os::fd::BorrowedFd<'_>,
    contents: &[u8],
    segment_size: usize,
    to: SocketAddr,
    from: Option<std::net::IpAddr>,
) -> io::Result<usize> {
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (socket, contents, segment_size, to, from);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "UDP GSO is Linux's",
        ))
    }
    #[cfg(target_os = "linux")]
    send_gso_linux(socket, contents, segment_size, to, from)
}

/// The `sendmsg` of [`send_gso_from`]: its control-message layout is Linux's (`UDP_SEGMENT`).
#[cfg(target_os = "linux")]
fn send_gso_linux(
    socket: std::os::fd::BorrowedFd<'_>,
    contents: &[u8],
    segment_size: usize,
    to: SocketAddr,
    from: Option<std::net::IpAddr>,
) -> io::Result<usize> {
    if !GSO_WORKS.load(Ordering::Relaxed) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "UDP GSO unavailable",
        ));
    }
    let segment =
        u16::try_from(segment_size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // One control message, laid out as the kernel reads it (struct cmsghdr, then the data):
    // cmsg_len = CMSG_LEN(2), cmsg_level = SOL_UDP, cmsg_type = UDP_SEGMENT, then the u16 size,
    // padded to CMSG_SPACE(2); then, with `from`, the packet-info message.
    const WORD: usize = std::mem::size_of::<usize>();
    const HDR: usize = WORD + 8;
    const SPACE: usize = HDR + WORD;
    const SOL_UDP: i32 = 17;
    const UDP_SEGMENT: i32 = 103;
    let mut control = [0u8; SPACE + 128];
    control[..HDR - 8].copy_from_slice(&(HDR + 2).to_ne_bytes());
    control[HDR - 8..HDR - 4].copy_from_slice(&SOL_UDP.to_ne_bytes());
    control[HDR - 4..HDR].copy_from_slice(&UDP_SEGMENT.to_ne_bytes());
    control[HDR..HDR + 2].copy_from_slice(&segment.to_ne_bytes());
    let from = from.filter(|ip| !ip.is_unspecified());
    let mut len = SPACE;
    if let Some(from) = from {
        let mut info = [0u8; 128];
        let n = source_control(&socket, from, &mut info)?;
        control[SPACE..SPACE + n].copy_from_slice(&info[..n]);
        len += n;
    }
    let to = match from {
        Some(_) => in_socket_family(&socket, to)?,
        None => to,
    };
    let addr = socket2::SockAddr::from(to);
    let iov = [io::IoSlice::new(contents)];
    let msg = socket2::MsgHdr::new()
        .with_addr(&addr)
        .with_buffers(&iov)
        .with_control(&control[..len]);
    match socket2::SockRef::from(&socket).sendmsg(&msg, DONTWAIT) {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(e),
        Err(e) if from.is_some() => Err(e),
        // Segments longer than this peer's path allows (a route's MTU, or one learned from
        // an ICMP "fragmentation needed", which anybody can forge): that send's failure, not
        // GSO's, or one peer's path would turn it off for all.
        Err(e) if is_too_big(&e) || e.raw_os_error() == Some(nix::libc::EINVAL) => Err(e),
        Err(e) => {
            GSO_WORKS.store(false, Ordering::Relaxed);
            tracing::info!(error = %e, "UDP GSO unavailable; sending datagrams one by one");
            Err(e)
        }
    }
}

#[cfg(target_os = "linux")]
static GSO_WORKS: AtomicBool = AtomicBool::new(true);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};

    /// Receive on a non-blocking socket, polling for up to 5 s.
    fn recv_within(socket: &UdpSocket, buf: &mut [u8]) -> Received {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match recv_from_to(socket, buf) {
                Ok(r) => return r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "nothing received within 5 s");
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("recv_from_to: {e}"),
            }
        }
    }

    fn dual_stack() -> UdpSocket {
        let listener = crate::server::bind_listener("[::]:0".parse().unwrap()).unwrap();
        prepare_listener(&listener).unwrap();
        listener
    }

    #[test]
    fn dual_stack_socket_reports_the_asked_address_of_each_family() {
        let listener = dual_stack();
        let port = listener.local_addr().unwrap().port();
        let mut buf = [0u8; 64];

        let v4 = UdpSocket::bind("127.0.0.1:0").unwrap();
        v4.send_to(b"four", ("127.0.0.1", port)).unwrap();
        let got = recv_within(&listener, &mut buf);
        assert_eq!(&buf[..got.len], b"four");
        // The socket's family, as recv_from gives it (and serve.rs keys its routes by).
        let mapped = Ipv4Addr::LOCALHOST.to_ipv6_mapped();
        assert_eq!(
            got.peer,
            SocketAddr::new(mapped.into(), v4.local_addr().unwrap().port())
        );
        assert_eq!(got.local_ip, Some(IpAddr::V6(mapped)));
        assert!(got.interface.is_some_and(|i| i > 0), "{got:?}");

        // Another loopback address: 127.0.0.2 answers on lo too.
        v4.send_to(b"two", ("127.0.0.2", port)).unwrap();
        let got = recv_within(&listener, &mut buf);
        assert_eq!(
            got.local_ip.map(|ip| ip.to_canonical()),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        );

        let v6 = UdpSocket::bind("[::1]:0").unwrap();
        v6.send_to(b"six", ("::1", port)).unwrap();
        let got = recv_within(&listener, &mut buf);
        assert_eq!(&buf[..got.len], b"six");
        assert_eq!(got.peer, v6.local_addr().unwrap());
        assert_eq!(got.local_ip, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    }

    #[test]
    fn ipv4_socket_reports_the_asked_address() {
        let listener = crate::server::bind_listener("0.0.0.0:0".parse().unwrap()).unwrap();
        prepare_listener(&listener).unwrap();
        prepare_listener(&listener).unwrap(); // idempotent
        let port = listener.local_addr().unwrap().port();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.send_to(b"x", ("127.0.0.3", port)).unwrap();
        let got = recv_within(&listener, &mut [0u8; 16]);
        assert_eq!(got.peer, client.local_addr().unwrap());
        assert_eq!(got.local_ip, Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))));
    }

    #[test]
    fn unprepared_socket_receives_without_a_local_address() {
        let listener = crate::server::bind_listener("[::]:0".parse().unwrap()).unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.send_to(b"x", ("127.0.0.1", port)).unwrap();
        let got = recv_within(&listener, &mut [0u8; 16]);
        assert_eq!(got.len, 1);
        assert_eq!(got.local_ip, None);
    }

    #[test]
    fn nothing_to_receive_would_block() {
        let listener = dual_stack();
        let e = recv_from_to(&listener, &mut [0u8; 16]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    /// The multi-address case on loopback: a client of 127.0.0.1 asks at 127.0.0.2; the
    /// answer, sent from the wildcard socket with `from_ip`, comes from 127.0.0.2 (without
    /// it, from 127.0.0.1: the kernel's pick).
    #[test]
    fn reply_comes_from_the_chosen_address() {
        for wildcard in ["[::]:0", "0.0.0.0:0"] {
            let server = crate::server::bind_listener(wildcard.parse().unwrap()).unwrap();
            prepare_listener(&server).unwrap();
            let port = server.local_addr().unwrap().port();
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut buf = [0u8; 16];

            client.send_to(b"ask", ("127.0.0.2", port)).unwrap();
            let asked = recv_within(&server, &mut buf);
            send_from_to(&server, b"answer", asked.peer, asked.local_ip).unwrap();
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"answer");
            assert_eq!(from, SocketAddr::from(([127, 0, 0, 2], port)), "{wildcard}");

            // Either form of the addresses: canonical IPv4 on a dual-stack socket too.
            let canonical = SocketAddr::new(asked.peer.ip().to_canonical(), asked.peer.port());
            let from_ip = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
            send_from_to(&server, b"again", canonical, from_ip).unwrap();
            let (_, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(from, SocketAddr::from(([127, 0, 0, 2], port)), "{wildcard}");

            // No source given: the routing table picks 127.0.0.1.
            send_from_to(&server, b"kernel", canonical, None).unwrap();
            let (_, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(from, SocketAddr::from(([127, 0, 0, 1], port)), "{wildcard}");
        }
    }

    /// A window in one `sendmsg` from a chosen address: each datagram of the batch comes
    /// from it (single-port mode on a wildcard listener keeps GSO).
    #[test]
    fn gso_batch_comes_from_the_chosen_address() {
        for wildcard in ["[::]:0", "0.0.0.0:0"] {
            let server = crate::server::bind_listener(wildcard.parse().unwrap()).unwrap();
            let port = server.local_addr().unwrap().port();
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let to = client.local_addr().unwrap();
            let from = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
            let contents: Vec<u8> = (0..250u8).collect();
            let deadline = Instant::now() + Duration::from_secs(5);
            let sent = loop {
                match super::send_gso_from(server.as_fd(), &contents, 100, to, from) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        assert!(Instant::now() < deadline);
                    }
                    other => break other,
                }
            };
            if let Err(e) = sent {
                // No GSO here: nothing to check.
                eprintln!("no UDP GSO: {e}");
                return;
            }
            let mut buf = [0u8; 256];
            for want in [100, 100, 50] {
                let (n, src) = client.recv_from(&mut buf).unwrap();
                assert_eq!(n, want, "{wildcard}");
                assert_eq!(src, SocketAddr::from(([127, 0, 0, 2], port)), "{wildcard}");
            }
        }
    }

    /// A transfer socket for an IPv4 client of a dual-stack listener, bound to the asked
    /// address in its mapped form: it answers from that address and sees the peer mapped,
    /// as the listener did.
    #[test]
    fn transfer_socket_on_a_mapped_address() {
        let asked = IpAddr::V6(Ipv4Addr::new(127, 0, 0, 2).to_ipv6_mapped());
        let transfer = crate::server::bind_transfer_on(asked, None, None).unwrap();
        let port = transfer.local_addr().unwrap().port();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let peer = client.local_addr().unwrap();
        let mapped = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let mapped = in_family(mapped, true).unwrap();
        transfer.send_to(b"data", mapped).unwrap();
        let mut buf = [0u8; 16];
        let (_, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(from, SocketAddr::from(([127, 0, 0, 2], port)));
        client.send_to(b"ack", from).unwrap();
        let got = recv_within(&transfer, &mut buf);
        assert_eq!(got.peer, mapped);
        // Plain IPv4 and IPv6 addresses bind as before.
        let v4 = crate::server::bind_transfer_on([127, 0, 0, 2].into(), None, None).unwrap();
        assert!(v4.local_addr().unwrap().is_ipv4());
        crate::server::bind_transfer_on(Ipv6Addr::LOCALHOST.into(), Some(1), None).unwrap();
    }

    #[test]
    fn ipv6_reply_from_the_asked_address() {
        let server = dual_stack();
        let port = server.local_addr().unwrap().port();
        let client = UdpSocket::bind("[::1]:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.send_to(b"ask", ("::1", port)).unwrap();
        let mut buf = [0u8; 16];
        let asked = recv_within(&server, &mut buf);
        send_from_to(&server, b"answer", asked.peer, asked.local_ip).unwrap();
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from),
            (
                &b"answer"[..],
                SocketAddr::from((Ipv6Addr::LOCALHOST, port))
            )
        );
    }

    #[test]
    fn sending_from_an_address_not_of_this_host_fails() {
        let server = dual_stack();
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        // 192.0.2.1 (RFC 5737) is on no interface here: the kernel refuses, nothing is sent.
        let from = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert!(send_from_to(&server, b"x", to, from).is_err());
        // An IPv6 destination from an IPv4 socket is a typed error.
        let v4 = crate::server::bind_listener("0.0.0.0:0".parse().unwrap()).unwrap();
        let e = send_from_to(&v4, b"x", "[::1]:9".parse().unwrap(), None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn packet_info_layout() {
        let mut out = [0u8; 128];
        let n = packet_info(&mut out, IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)));
        let word = std::mem::size_of::<usize>();
        if word == 8 {
            // CMSG_SPACE(sizeof(struct in_pktinfo)) on 64-bit Linux.
            assert_eq!(n, 32);
            assert_eq!(out[..8], 28usize.to_ne_bytes());
            assert_eq!(out[16 + 4..16 + 8], [198, 18, 0, 2]);
            let n = packet_info(&mut out, IpAddr::V6(Ipv6Addr::LOCALHOST));
            assert_eq!(n, 40);
            assert_eq!(out[..8], 36usize.to_ne_bytes());
        }
    }

    #[test]
    fn loopback_mtu_is_65536() {
        let lo = std::fs::read_to_string("/sys/class/net/lo/ifindex")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1);
        assert_eq!(interface_mtu(lo), Some(65536));
        // The interface the kernel reports for loopback traffic has the same MTU.
        let listener = dual_stack();
        let port = listener.local_addr().unwrap().port();
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .send_to(b"x", ("127.0.0.1", port))
            .unwrap();
        let got = recv_within(&listener, &mut [0u8; 4]);
        assert_eq!(got.interface.and_then(interface_mtu), Some(65536));
        // No such interface.
        assert_eq!(interface_mtu(u32::MAX >> 1), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn netlink_replies_that_are_not_an_mtu_are_errors_not_panics() {
        use super::netlink::parse;
        let ok = |index: i32, attrs: &[u8]| {
            let mut m = vec![0u8; 32];
            m.extend_from_slice(attrs);
            let len = m.len() as u32;
            m[0..4].copy_from_slice(&len.to_ne_bytes());
            m[4..6].copy_from_slice(&16u16.to_ne_bytes());
            m[8..12].copy_from_slice(&1u32.to_ne_bytes());
            m[20..24].copy_from_slice(&index.to_ne_bytes());
            m
        };
        let mut mtu = vec![8, 0, 4, 0];
        mtu.extend_from_slice(&1500u32.to_ne_bytes());
        let mut name = vec![8, 0, 3, 0, b'l', b'o', 0, 0];
        name.extend_from_slice(&mtu);
        assert_eq!(parse(&ok(7, &name), 7).unwrap(), Some(1500));
        assert!(parse(&ok(8, &name), 7).is_err(), "another interface");
        assert!(
            parse(&ok(7, &[8, 0, 3, 0, 0, 0, 0, 0]), 7).is_err(),
            "no IFLA_MTU"
        );
        assert!(
            parse(&ok(7, &[0, 0, 4, 0]), 7).is_err(),
            "zero-length attribute"
        );
        assert!(parse(&ok(7, &[8, 0, 4, 0, 1]), 7).is_err(), "cut short");
        assert!(parse(&[1, 2, 3], 7).is_err());
        assert!(parse(&[], 7).is_err());
        let mut long = ok(7, &mtu);
        long[0..4].copy_from_slice(&9999u32.to_ne_bytes());
        assert!(parse(&long, 7).is_err(), "length beyond the reply");
        // NLMSG_ERROR with -ENODEV: no such interface.
        let mut err = vec![0u8; 36];
        err[0..4].copy_from_slice(&36u32.to_ne_bytes());
        err[4..6].copy_from_slice(&2u16.to_ne_bytes());
        err[8..12].copy_from_slice(&1u32.to_ne_bytes());
        err[16..20].copy_from_slice(&(-19i32).to_ne_bytes());
        assert_eq!(parse(&err, 7).unwrap(), None);
    }
}
