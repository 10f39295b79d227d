//! The tftp-rs server framework and client without an async runtime: std UDP sockets in
//! non-blocking mode on an epoll event loop ([mio]), plain blocking handlers. For programs
//! that have no runtime, and for the fbtftp process model (one process, one loop, thousands
//! of transfers).
//!
//! The concepts and names are those of `tftp-tokio`: you decide what each request gets by
//! implementing [`Handler`] (returning a [`std::io::Read`] and its size, or a
//! [`std::io::Write`]), and receive per-session and periodic server statistics through
//! callbacks ([`ServerOptions::on_session`], [`ServerOptions::on_stats`]). All protocol
//! behaviour comes from [`tftp_proto`], admission, statistics and confined file access from
//! [`tftp_common`]; this crate only moves datagrams, timers and bytes.
//!
//! # Threading model
//!
//! - **Event loop**: [`Server::serve`] runs one loop on the calling thread. It reads the
//!   listening sockets and every transfer's socket (each transfer has its own ephemeral port,
//!   the RFC 1350 transfer ID; in single-port mode it shares the listener and is told apart
//!   by the client's address), feeds the sessions, and keeps their retransmission deadlines
//!   in one heap of (deadline, session) entries, invalidated lazily: a stale wake-up is
//!   harmless because `handle_timeout` does nothing before the session's deadline.
//!   [`Server::workers`]`(n)` runs `n` such loops on `n` threads, all reading the listeners;
//!   a session stays on the loop that accepted it.
//! - **I/O pool**: handler calls, source reads and sink writes run on a pool of threads
//!   (started on demand up to [`Server::io_threads`], stopped when idle). Each result is
//!   posted back to its loop, which a [`mio::Waker`] wakes.
//! - The session and statistics callbacks run on the loop thread: keep them quick (hand slow
//!   work to a channel).
//!
//! # A slow handler does not stall other transfers
//!
//! The loop never calls user code that may block. A `read` that takes seconds (an HTTP
//! origin, a database) holds one pool thread while the loop goes on serving everyone else;
//! the session starts when the answer is posted back. Sources are read ahead in chunks of
//! up to 64 KiB on the pool (the next chunk is requested when less than half a chunk is
//! left), so the loop copies blocks from memory; a source that stalls stalls only its own
//! transfer, whose retransmissions still run. Uploads are buffered the same way and written
//! in 64 KiB chunks; the final ACK waits for the last write, the flush and the completion.
//!
//! Memory per transfer: the session (see [`tftp_proto`], about 2.5 KiB at blksize 1468)
//! plus at most 96 KiB of read-ahead (a small file costs its size) or 64 KiB of write-behind.
//!
//! # A server
//!
//! ```no_run
//! use tftp_blocking::{Handler, HandlerError, ReadResponse, Request, Server, ServerOptions};
//!
//! struct Hello;
//!
//! impl Handler for Hello {
//!     fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
//!         let text = format!("hello {}, you asked for {}\n", request.peer.ip(), request.filename);
//!         Ok(ReadResponse::from_bytes(text.into_bytes()))
//!     }
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     let options = ServerOptions::new()
//!         .listen("[::]:69".parse().unwrap())
//!         .on_session(|r| println!("{} {} {:?}", r.peer, r.filename, r.stats.outcome));
//!     let server = Server::bind(Hello, options)?;
//!     let stop = server.shutdown_handle();
//!     // e.g. from a signal-handling thread: stop.shutdown();
//!     server.serve()
//! }
//! ```
//!
//! # A client
//!
//! ```no_run
//! use tftp_blocking::{Client, Mode, OptionValues};
//!
//! let options = OptionValues { blksize: Some(1468), tsize: Some(0), ..Default::default() };
//! let mut data = Vec::new();
//! let stats = Client::new().get("192.0.2.1:69".parse().unwrap(), "boot.ipxe", Mode::Octet, options, &mut data)?;
//! println!("{} bytes in {:?}", stats.bytes, stats.duration());
//! # Ok::<(), tftp_blocking::ClientError>(())
//! ```

mod client;
mod data;
mod dir;
mod event_loop;
mod handler;
mod pool;
mod server;

pub use client::Client;
pub use dir::DirHandler;
pub use handler::{Handler, ReadResponse, WriteResponse};
pub use server::{Server, ShutdownHandle};
pub use tftp_common::fs::RootOptions;
pub use tftp_common::server::ServerOptions;
pub use tftp_common::{
    ClientError, HandlerError, Request, ServerConfig, ServerStats, SessionReport,
};
pub use tftp_proto::{
    self, ErrorCode, Mode, OptionLimits, OptionValues, RequestKind, SessionStats, TimeoutPolicy,
};
