//! [`tftp_proto`] on [smoltcp](https://docs.rs/smoltcp): a TFTP client and a small TFTP server
//! for firmware, `#![no_std]`.
//!
//! The adapter is glue: each `poll` moves the datagrams a smoltcp UDP socket has received into
//! the session, feeds it the time, and moves what the session wants sent back into the socket.
//! The caller runs the usual smoltcp loop around it:
//!
//! ```ignore
//! loop {
//!     let now = smoltcp::time::Instant::now();            // or the firmware's tick count
//!     iface.poll(now, &mut device, &mut sockets);
//!     let deadline = match client.poll(now, &mut sockets, |data| flash.write(data)) {
//!         Poll::Pending(deadline) => deadline,
//!         Poll::Done(stats) => break stats,
//!     };
//!     iface.poll(now, &mut device, &mut sockets);          // send what the session queued
//!     wait_for_packet(iface.poll_delay(now, &sockets), deadline);
//! }
//! ```
//!
//! The [`Client`] runs on a window buffer the caller lends (no allocation for a whole
//! transfer); its UDP socket's buffers are the caller's too. The [`Server`] serves files
//! held in memory (a firmware's recovery image, say), one UDP socket per transfer (RFC 1350
//! §4's transfer IDs), and keeps its sessions' windows on the heap.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use core::net::SocketAddr;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::time::{Duration as NetDuration, Instant as NetInstant};
use tftp_proto::time::Millis;
use tftp_proto::{
    ClientSession, Config, ErrorCode, ErrorReply, Event, IncomingRequest, Output, RequestKind,
    ServerSession, SessionStats,
};

/// A smoltcp instant as the session's [`Millis`] (smoltcp counts milliseconds too).
pub fn millis(now: NetInstant) -> Millis {
    Millis(u64::try_from(now.total_millis()).unwrap_or(0))
}

/// A session deadline as a smoltcp instant.
pub fn net_instant(at: Millis) -> NetInstant {
    NetInstant::from_millis(i64::try_from(at.0).unwrap_or(i64::MAX))
}

/// How long from `now` until `deadline` (zero if it has passed), for `phy::wait`.
pub fn delay_until(now: NetInstant, deadline: NetInstant) -> NetDuration {
    if deadline > now {
        deadline - now
    } else {
        NetDuration::ZERO
    }
}

/// What a `poll` found.
#[derive(Debug)]
pub enum Poll {
    /// The transfer goes on: poll again when a datagram arrives or at this deadline.
    Pending(Option<NetInstant>),
    /// The transfer is over (successfully or not, see [`SessionStats::outcome`]).
    Done(SessionStats<Millis>),
}

fn endpoint_addr(meta: &udp::UdpMetadata) -> SocketAddr {
    SocketAddr::new(meta.endpoint.addr.into(), meta.endpoint.port)
}

/// Send one transmit; a datagram that does not fit the socket's buffer is lost, which the
/// session recovers from like any loss.
fn send(socket: &mut udp::Socket<'_>, t: &tftp_proto::Transmit<'_>) {
    let Some(to) = ipv4_endpoint(t.destination) else {
        return;
    };
    for datagram in t.datagrams() {
        let _ = socket.send_slice(datagram, to);
    }
}

/// This adapter speaks IPv4 (smoltcp's `proto-ipv4`); an IPv6 peer cannot occur.
fn ipv4_endpoint(addr: SocketAddr) -> Option<smoltcp::wire::IpEndpoint> {
    match addr {
        SocketAddr::V4(v4) => Some(v4.into()),
        SocketAddr::V6(_) => None,
    }
}

/// A client transfer (a get) on a smoltcp UDP socket.
#[derive(Debug)]
pub struct Client<'r> {
    session: ClientSession<Millis, &'r mut [u8]>,
    socket: SocketHandle,
    finished: Option<SessionStats<Millis>>,
}

impl<'r> Client<'r> {
    /// Drive `session` over the UDP socket `socket` (added to the caller's [`SocketSet`] and
    /// bound to a local port of the caller's choice). The socket's receive buffer must hold a
    /// DATA datagram (`4 + blksize` bytes); its send buffer an ACK or two.
    pub fn new(session: ClientSession<Millis, &'r mut [u8]>, socket: SocketHandle) -> Self {
        Client {
            session,
            socket,
            finished: None,
        }
    }

    /// The session, for its getters.
    pub fn session(&self) -> &ClientSession<Millis, &'r mut [u8]> {
        &self.session
    }

    /// Feed the session what the socket received and the time, hand each received block to
    /// `store` (in order; it is acknowledged once `store` returns), and queue what the
    /// session sends. Call after every `Interface::poll`, and poll the interface again after
    /// it to send what was queued.
    pub fn poll(
        &mut self,
        now: NetInstant,
        sockets: &mut SocketSet<'_>,
        mut store: impl FnMut(&[u8]),
    ) -> Poll {
        let now = millis(now);
        let socket = sockets.get_mut::<udp::Socket<'_>>(self.socket);
        while let Ok((data, meta)) = socket.recv() {
            self.session
                .handle_datagram(now, endpoint_addr(&meta), data);
        }
        self.session.handle_timeout(now);
        loop {
            match self.session.poll_output(now) {
                Output::Transmit(t) => send(socket, &t),
                Output::Store(mut block) => {
                    store(block.data());
                    block.stored();
                }
                Output::Event(Event::Finished(stats)) => self.finished = Some(stats),
                Output::Event(_) | Output::Fill(_) => {}
                Output::Wait(deadline) => return Poll::Pending(deadline.map(net_instant)),
                Output::Closed => {
                    return match self.finished.take() {
                        Some(stats) => Poll::Done(stats),
                        None => Poll::Done(self.session.stats().clone()),
                    };
                }
            }
        }
    }
}

/// One transfer of a [`Server`].
#[derive(Debug)]
struct Transfer<'f> {
    session: ServerSession<Millis>,
    socket: SocketHandle,
    source: &'f [u8],
}

/// A small read-only TFTP server on smoltcp: files held in memory, looked up by name.
///
/// Each transfer gets its own UDP socket on a fresh port (RFC 1350 §4), added to the
/// caller's [`SocketSet`] and removed when the transfer ends; at most `max_transfers` run at
/// once (more are refused with ERROR 0 "Server busy"). Writes are refused with ERROR 2.
#[derive(Debug)]
pub struct Server<'f, F> {
    listen: SocketHandle,
    files: F,
    config: Config,
    transfers: Vec<Transfer<'f>>,
    max_transfers: usize,
    next_port: u16,
    /// Finished sessions not yet collected by [`Server::take_finished`].
    finished: Vec<SessionStats<Millis>>,
}

/// Ports for transfer sockets: the IANA dynamic range.
const FIRST_PORT: u16 = 49_152;

/// Datagrams a transfer socket queues each way (a window of 4, and some slack).
const QUEUED: usize = 8;

impl<'f, F: FnMut(&str) -> Option<&'f [u8]>> Server<'f, F> {
    /// A server answering requests on the UDP socket `listen` (bound by the caller, usually
    /// to port 69), serving the bytes `files` returns for a file name.
    pub fn new(listen: SocketHandle, config: Config, max_transfers: usize, files: F) -> Self {
        Server {
            listen,
            files,
            config,
            transfers: Vec::new(),
            max_transfers,
            next_port: FIRST_PORT,
            finished: Vec::new(),
        }
    }

    /// Transfers running now.
    pub fn transfers(&self) -> usize {
        self.transfers.len()
    }

    /// The statistics of the transfers that ended since the last call.
    pub fn take_finished(&mut self) -> Vec<SessionStats<Millis>> {
        core::mem::take(&mut self.finished)
    }

    /// Answer new requests, run every transfer, and queue what they send; returns the
    /// earliest deadline. Call after every `Interface::poll`, then poll the interface again.
    pub fn poll(
        &mut self,
        now: NetInstant,
        sockets: &mut SocketSet<'static>,
    ) -> Option<NetInstant> {
        let now = millis(now);
        self.accept(now, sockets);
        let mut deadline: Option<Millis> = None;
        let mut i = 0;
        while i < self.transfers.len() {
            let t = &mut self.transfers[i];
            let socket = sockets.get_mut::<udp::Socket<'static>>(t.socket);
            while let Ok((data, meta)) = socket.recv() {
                t.session.handle_datagram(now, endpoint_addr(&meta), data);
            }
            t.session.handle_timeout(now);
            let closed = loop {
                match t.session.poll_output(now) {
                    Output::Transmit(tx) => send(socket, &tx),
                    // The file is in memory: read where the session asks (it keeps one batch
                    // of blocks, not its window, and asks again for a lost one).
                    Output::Fill(fill) => {
                        let rest = usize::try_from(fill.offset())
                            .ok()
                            .and_then(|at| t.source.get(at..))
                            .unwrap_or(&[]);
                        if rest.is_empty() {
                            fill.finish();
                        } else {
                            fill.write(rest);
                        }
                    }
                    Output::Event(Event::Finished(stats)) => self.finished.push(stats),
                    Output::Event(_) | Output::Store(_) => {}
                    Output::Wait(d) => {
                        deadline = match (deadline, d) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        break false;
                    }
                    Output::Closed => break true,
                }
            };
            if closed {
                let t = self.transfers.swap_remove(i);
                sockets.remove(t.socket);
            } else {
                i += 1;
            }
        }
        deadline.map(net_instant)
    }

    fn accept(&mut self, now: Millis, sockets: &mut SocketSet<'static>) {
        let mut replies: Vec<(SocketAddr, ErrorReply)> = Vec::new();
        let listen = sockets.get_mut::<udp::Socket<'static>>(self.listen);
        let local = listen.endpoint().addr;
        let mut admitted = Vec::new();
        while let Ok((data, meta)) = listen.recv() {
            let from = endpoint_addr(&meta);
            match IncomingRequest::parse(from, data) {
                Ok(request) => admitted.push(request),
                Err(e) => {
                    if let Some(reply) = e.reply() {
                        replies.push((from, reply));
                    }
                }
            }
        }
        for request in admitted {
            // A repeated request from a client port already being served: that transfer
            // answers it (its retransmission timer resends the OACK or DATA 1).
            if self
                .transfers
                .iter()
                .any(|t| t.session.peer() == request.peer)
            {
                continue;
            }
            let refusal = match request.kind {
                RequestKind::Write => Some(ErrorReply::new(
                    ErrorCode::ACCESS_VIOLATION,
                    "Read-only server",
                )),
                RequestKind::Read if self.transfers.len() >= self.max_transfers => {
                    Some(ErrorReply::new(ErrorCode::NOT_DEFINED, "Server busy"))
                }
                RequestKind::Read => None,
            };
            if let Some(reply) = refusal {
                replies.push((request.peer, reply));
                continue;
            }
            let Some(source) = (self.files)(&request.filename) else {
                replies.push((
                    request.peer,
                    ErrorReply::new(ErrorCode::FILE_NOT_FOUND, "File not found"),
                ));
                continue;
            };
            let mut session =
                ServerSession::new(&request, &self.config, Some(source.len() as u64), now);
            session.set_source_seekable(true);
            // Room for a window of DATA each way, whatever blksize was granted.
            let slot = 4 + usize::from(self.config.limits.max_blksize.min(1468)) + 64;
            let rx = udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; QUEUED],
                vec![0u8; QUEUED * slot],
            );
            let tx = udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; QUEUED],
                vec![0u8; QUEUED * (4 + usize::from(session.options().blksize))],
            );
            let mut socket = udp::Socket::new(rx, tx);
            let port = self.next_port;
            self.next_port = if port == u16::MAX {
                FIRST_PORT
            } else {
                port + 1
            };
            let bound = match local {
                Some(addr) => socket.bind((addr, port)),
                None => socket.bind(port),
            };
            if bound.is_err() {
                continue;
            }
            let socket = sockets.add(socket);
            self.transfers.push(Transfer {
                session,
                socket,
                source,
            });
        }
        let listen = sockets.get_mut::<udp::Socket<'static>>(self.listen);
        let mut buf = [0u8; 516];
        for (to, reply) in replies {
            let n = reply.encode(&mut buf);
            if let Some(to) = ipv4_endpoint(to) {
                let _ = listen.send_slice(&buf[..n], to);
            }
        }
    }
}
