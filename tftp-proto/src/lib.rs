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
//!             Output::Event(Event::Finished(stats)) => assert!(stats.outcome.is_success()),
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
//! # Memory
//!
//! A session holds one ring of `windowsize × (4 + blksize)` bytes (sending: the DATA packets
//! of the current window, kept for retransmission so a source is read once; receiving: blocks
//! not yet stored), a control-packet buffer of at most a few hundred bytes, and about 400 bytes
//! of state. At blksize 1468 and windowsize 1 that is under 2.5 KiB.
//! [`OptionLimits::max_window_bytes`] bounds the ring.
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

pub use client::ClientSession;
pub use config::{Config, Rollover};
pub use error::{DecodeError, EncodeError, ProtocolError, TransferError, UsageError};
pub use options::{OptionLimits, OptionValues, TimeoutPolicy, TransferOptions};
pub use packet::{ErrorCode, Mode, Packet};
pub use server::{ErrorReply, IncomingRequest, RequestError, RequestKind, ServerSession};
pub use session::{Event, Fill, Output, Session, Store, Transmit};
pub use stats::{Outcome, SessionStats};
pub use storage::Storage;
pub use time::{Instant, Millis};
