//! A sans-IO TFTP protocol core: packet codec, option negotiation and poll-style sessions.
//!
//! This crate never touches a socket, a file, a thread or a clock. A runtime adapter feeds a
//! [`ServerSession`] or [`ClientSession`] the datagrams it receives and the current time, and
//! drains [`Session::poll_output`], which says what to do next:
//!
//! - [`Output::Transmit`]: send this datagram;
//! - [`Output::Fill`]: put the next source bytes into this buffer (sending side);
//! - [`Output::Store`]: store this received block, then confirm (receiving side);
//! - [`Output::Event`]: options negotiated, or the transfer finished with its
//!   [`SessionStats`];
//! - [`Output::Wait`]: nothing until a datagram arrives or the deadline passes;
//! - [`Output::Closed`]: drop the session.
//!
//! Supported: RFC 1350 (with RFC 1123 §4.2 fixes: adaptive timeout, no Sorcerer's
//! Apprentice), RFC 2347 option negotiation, RFC 2348 `blksize`, RFC 2349 `timeout` and
//! `tsize`, RFC 7440 `windowsize`, block-number rollover, netascii.
//!
//! # A complete run loop
//!
//! A client fetching a file from a server, both in memory; a real adapter would put a UDP
//! socket where the `wire` queue is and a timer where `now` is advanced.
//!
//! ```
//! use std::collections::VecDeque;
//! use std::net::SocketAddr;
//! use std::time::{Duration, Instant};
//! use tftp_proto::{ClientSession, Config, Event, IncomingRequest, Mode, OptionValues, Output,
//!                  ServerSession};
//!
//! let server_addr: SocketAddr = "127.0.0.1:69".parse()?;
//! let client_addr: SocketAddr = "127.0.0.1:40000".parse()?;
//! let transfer_addr: SocketAddr = "127.0.0.1:50000".parse()?; // the server's new port
//! let file = vec![42u8; 5000];
//! let mut now = Instant::now();
//! let config = Config::default();
//!
//! let asked = OptionValues { blksize: Some(1468), tsize: Some(0), ..Default::default() };
//! let mut client = ClientSession::get(server_addr, "boot.img", Mode::Octet, asked, &config, now)?;
//! let mut server: Option<ServerSession> = None;
//! let mut source = &file[..];
//! let mut received = Vec::new();
//! // Datagrams in flight: (from, to, bytes).
//! let mut wire: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)> = VecDeque::new();
//!
//! loop {
//!     // Drain the client.
//!     loop {
//!         match client.poll_output(now) {
//!             Output::Transmit(t) => wire.push_back((client_addr, t.destination, t.contents.to_vec())),
//!             Output::Store(mut block) => {
//!                 received.extend_from_slice(block.data());
//!                 block.stored();
//!             }
//!             Output::Event(Event::Finished(stats)) => assert!(stats.is_success()),
//!             Output::Event(_) | Output::Fill(_) => {}
//!             Output::Wait(_) | Output::Closed => break,
//!         }
//!     }
//!     // Drain the server.
//!     if let Some(server) = server.as_mut() {
//!         loop {
//!             match server.poll_output(now) {
//!                 Output::Transmit(t) => wire.push_back((transfer_addr, t.destination, t.contents.to_vec())),
//!                 Output::Fill(mut fill) => {
//!                     let n = source.len().min(fill.buf().len());
//!                     if n == 0 { fill.finish() } else {
//!                         fill.buf()[..n].copy_from_slice(&source[..n]);
//!                         source = &source[n..];
//!                         fill.advance(n)?;
//!                     }
//!                 }
//!                 Output::Event(_) | Output::Store(_) => {}
//!                 Output::Wait(_) | Output::Closed => break,
//!             }
//!         }
//!     }
//!     // Deliver one datagram, or let time pass.
//!     match wire.pop_front() {
//!         Some((from, to, bytes)) if to == server_addr => {
//!             let request = IncomingRequest::parse(from, &bytes)?;
//!             server = Some(ServerSession::new(&request, &config, Some(file.len() as u64), now));
//!         }
//!         Some((from, to, bytes)) if to == client_addr => client.handle_datagram(now, from, &bytes),
//!         Some((from, _, bytes)) => {
//!             if let Some(s) = server.as_mut() { s.handle_datagram(now, from, &bytes) }
//!         }
//!         None if client.is_closed() => break,
//!         None => {
//!             now += Duration::from_millis(100);
//!             client.handle_timeout(now);
//!             if let Some(s) = server.as_mut() { s.handle_timeout(now) }
//!         }
//!     }
//! }
//! assert_eq!(received, file);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Many sessions on one thread
//!
//! [`Endpoint`] is the listening side: [`Endpoint::handle`] says what a datagram on the
//! listening port is (a new request, one for a live session in single-port mode, an ERROR to
//! send, or nothing, and why), and owns duplicate requests and replacements.
//! [`timers::Timers`] keeps every session's deadline in one heap, [`timers::Wheel`] on a
//! timing wheel of 1 ms ticks (constant time per deadline, for thousands of sessions on a
//! thread). `examples/std_server.rs` is
//! a complete single-port server on one std `UdpSocket` with both (about 150 lines; run by
//! `tests/std_server.rs` with curl).
//!
//! # Memory
//!
//! A session holds one ring of `windowsize × (4 + blksize)` bytes (sending: the DATA packets
//! of the current window, kept for retransmission so a source is read once; receiving: blocks
//! not yet stored; a netascii sender adds `blksize` bytes to stage text) and about 0.75 KiB
//! of state, 88 bytes of it the control packet (request, OACK, ACK or ERROR) kept inline for
//! retransmission. At blksize 1468 and windowsize 1 that is under 2.3 KiB.
//! [`OptionLimits::max_window_bytes`] bounds the ring. By default the ring is on the heap;
//! [`storage`] puts it in memory the caller owns. A sender whose source can be read again
//! ([`Session::set_source_seekable`]) keeps only the blocks of one batch, not its window.
//!
//! The ring exists only once data flows: after the client's ACK 0 of a read's OACK, and at
//! the first DATA of a write. A request that is never answered — spoofed, say — costs its
//! session state and the OACK, well under 4 KiB, whatever blksize and windowsize it asks for.
//!
//! The caller's receive buffer must hold [`Session::max_datagram_len`] bytes (517 while only
//! ACKs, OACKs and ERRORs can arrive; `4 + blksize + 1` while DATA can); the listening socket's
//! buffer must hold the largest request the server accepts (RFC 2347 asks clients to keep a
//! request within 512 bytes; 65,535 takes any datagram).
//!
//! # In firmware
//!
//! Without its default `std` feature the crate is `#![no_std]` (it needs `alloc`), and a
//! session can run without touching the heap:
//!
//! - time is any [`Instant`]: [`Millis`], a monotonic millisecond count from a tick timer
//!   (with `std` the default is [`std::time::Instant`]; without it the type is named:
//!   `ClientSession<Millis, _>`);
//! - the window lives in a buffer the caller lends ([`ClientSession::get_with_storage`],
//!   [`ServerSession::with_storage`]; see [`storage`]); the control packet is inline.
//!
//! A session on lent storage allocates nothing for a whole transfer, losses and
//! retransmissions included (`tests/caller_storage.rs` counts). What still allocates:
//! [`IncomingRequest::parse`] (the file name, one `String`), a failure's message
//! ([`TransferError::Peer`] and [`TransferError::Local`] carry a `String`), and a request
//! longer than 86 bytes (a file name and options seldom reach 80) or an ERROR whose message
//! is longer than 81, kept on the heap for retransmission.
//!
//! RAM per session: its state, `size_of::<ClientSession<Millis, &mut [u8]>>()`, measured at
//! 680 bytes on `thumbv7em-none-eabihf` (720 on x86-64), plus the ring: at blksize 512
//! and windowsize 1, 516 bytes (1.2 KiB in all); at blksize 1468 and windowsize 4, 5,888 bytes
//! (6.4 KiB in all). A client needs a ring for what it asks
//! (`windowsize × (4 + max(blksize, 512))`); a server answers smaller to fit the ring it has.
//!
//! The loop is the one above, on a UDP stack such as smoltcp:
//!
//! ```no_run
//! use core::net::SocketAddr;
//! use tftp_proto::{ClientSession, Config, Mode, OptionValues, Output, time::Millis};
//! # fn ticks_ms() -> u64 { 0 }
//! # fn udp_send(_: SocketAddr, _: &[u8]) {}
//! # fn udp_recv(_: &mut [u8]) -> Option<(SocketAddr, usize)> { None }
//! # fn flash_write(_: u64, _: &[u8]) {}
//! # fn wait_for_packet_or(_: Option<Millis>) {}
//!
//! # fn main() -> Result<(), tftp_proto::UsageError> {
//! let server: SocketAddr = "192.168.1.1:69".parse().unwrap();
//! let asked = OptionValues { blksize: Some(1468), windowsize: Some(4), ..Default::default() };
//! let mut ring = [0u8; 4 * (4 + 1468)]; // windowsize × (4 + blksize)
//! let mut client = ClientSession::get_with_storage(
//!     server, "firmware.bin", Mode::Octet, asked, &Config::default(),
//!     Millis(ticks_ms()), &mut ring[..],
//! )?;
//! let mut rx = [0u8; 1473]; // client.max_datagram_len() for blksize 1468
//! let mut offset = 0;
//! while !client.is_closed() {
//!     let now = Millis(ticks_ms());
//!     match client.poll_output(now) {
//!         Output::Transmit(t) => udp_send(t.destination, t.contents),
//!         Output::Store(mut block) => {
//!             let data = block.data();
//!             flash_write(offset, data);
//!             offset += data.len() as u64;
//!             block.stored();
//!         }
//!         Output::Event(_) | Output::Fill(_) => {}
//!         Output::Wait(deadline) => {
//!             wait_for_packet_or(deadline);
//!             let now = Millis(ticks_ms());
//!             match udp_recv(&mut rx) {
//!                 Some((from, n)) => client.handle_datagram(now, from, &rx[..n]),
//!                 None => client.handle_timeout(now),
//!             }
//!         }
//!         Output::Closed => break,
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Hostile peers
//!
//! A session never answers an ERROR, answers at most three strangers (one a second) with
//! ERROR 5, and counts every stray datagram in [`SessionStats::stray_packets`]: one spoofed
//! datagram between two transfers causes at most one reply (CVE-2024-2169, the "Loop DoS").
//! A transfer whose bytes differ from its announced `tsize` fails with
//! [`TransferError::SizeMismatch`], on either side.
//!
//! # Errors
//!
//! Split by fault: [`DecodeError`] (the peer sent garbage), [`TransferError`] (how a transfer
//! failed: the peer's error, a protocol violation, a timeout, or the caller's abort), and
//! [`UsageError`] (the caller misused the API). Nothing here panics on any input.

#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

pub mod client;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod netascii;
pub mod options;
pub mod packet;
mod receiver;
mod sender;
pub mod server;
pub mod session;
pub mod stats;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
mod timer;
pub mod timers;

pub use client::ClientSession;
pub use config::{Config, Rollover};
pub use endpoint::{DatagramEvent, DropReason, Endpoint, EndpointConfig, SessionHandle};
pub use error::{DecodeError, EncodeError, ProtocolError, TransferError, UsageError};
pub use options::{OptionLimits, OptionValues, TimeoutPolicy, TransferOptions};
pub use packet::{ErrorCode, Mode, Packet};
pub use server::{ErrorReply, IncomingRequest, RequestError, RequestKind, ServerSession};
pub use session::{Event, Fill, Output, Session, Store, Transmit};
pub use stats::{Outcome, SessionStats};
pub use storage::Storage;
pub use time::{Instant, Millis};
