//! The tftp-rs server framework and client for programs without an async runtime: plain
//! blocking handlers ([`std::io::Read`] sources, [`std::io::Write`] sinks), std UDP sockets
//! in non-blocking mode on an epoll reactor, one thread serving thousands of concurrent
//! transfers. Also for the fbtftp process model (one process, one loop, many transfers).
//!
//! The concepts and names are those of `tftp-tokio`: you decide what each request gets by
//! implementing [`Handler`] (returning a [`std::io::Read`] and its size, or a
//! [`std::io::Write`]), and receive per-session and periodic server statistics through
//! callbacks ([`ServerOptions::on_session`], [`ServerOptions::on_stats`]). All protocol
//! behaviour comes from [`tftp_proto`]; the server and client loops, admission, statistics and
//! confined file access from [`tftp_common`] (its [`serve`](tftp_common::serve) server is
//! the one `tftp-tokio` and `tftp-async-std` run). This crate only supplies the runtime
//! underneath, hidden from its API, and bridges the blocking calls.
//!
//! # Threading model
//!
//! - **Sessions**: [`Server::serve`] runs an executor (`async-executor`) on the calling
//!   thread; every listener and every transfer is a task on it. The sockets and timers are
//!   `async-io`'s: a reactor on the `polling` crate (epoll on Linux), polled by the serving
//!   thread whenever its tasks wait. Each transfer has its own socket and ephemeral port (the
//!   RFC 1350 transfer ID), or shares the listener in single-port mode. [`Server::workers`]`(n)`
//!   runs that executor on `n` threads: a session runs on whichever is free.
//! - **I/O pool**: handler calls, source reads, sink writes and upload completions run on the
//!   `blocking` crate's thread pool, at most [`Server::io_threads`] of this server's at once;
//!   the session awaits them.
//! - The session and statistics callbacks run on the session threads: keep them quick (hand
//!   slow work to a channel).
//!
//! # A slow handler does not stall other transfers
//!
//! A session thread never calls user code that may block. A `read` that takes seconds (an HTTP
//! origin, a database) holds one pool thread while the sessions go on; that session starts
//! when the answer comes back. Sources are read on the pool in chunks of 64 KiB, one chunk
//! ahead (the next is read while the current one is sent), so a session copies blocks from
//! memory and hops to the pool once per chunk, not per block; a source that stalls stalls only
//! its own transfer, whose retransmissions still run. Uploads are buffered the same way and
//! written in 64 KiB chunks; the final ACK waits for the last write, the flush and the
//! completion. A handler, reader or writer that panics fails its own request with "Server
//! error". (`tests/slow_handler.rs` stalls a handler, a source and a sink for 3 s while 40
//! other transfers complete on the same thread.)
//!
//! Memory per transfer: the session (see [`tftp_proto`], about 2.5 KiB at blksize 1468)
//! plus at most two read-ahead chunks for a download, each the larger of 64 KiB and 4 blocks
//! (128 KiB at blksize 1468; a small file costs its size, and bytes
//! given to [`ReadResponse::from_bytes`] are served in place), one for an upload.
//!
//! # A server and a client
//!
//! Serving a greeting on loopback and fetching it:
//!
//! ```
//! use tftp_blocking::{Client, Handler, HandlerError, Mode, ReadResponse, Request, Server, ServerOptions};
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
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::bind(Hello, ServerOptions::new().listen("127.0.0.1:0".parse()?))?;
//! let addr = server.local_addrs()?[0];
//! let stop = server.shutdown_handle(); // callable from any thread, e.g. on a signal
//! let serving = std::thread::spawn(move || server.serve());
//!
//! let mut text = Vec::new();
//! Client::new().get(addr, "motd", Mode::Octet, Default::default(), &mut text)?;
//! assert_eq!(text, b"hello 127.0.0.1, you asked for motd\n");
//! stop.shutdown(); // graceful: running transfers may finish
//! serving.join().unwrap()?;
//! # Ok(())
//! # }
//! ```
//!
//! Serving a directory on port 69 with two session threads, and uploading to it:
//!
//! ```no_run
//! use tftp_blocking::{Client, DirHandler, Mode, OptionValues, RootOptions, Server, ServerOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root = RootOptions { allow_write: true, ..Default::default() };
//! let options = ServerOptions::new()
//!     .listen("[::]:69".parse()?)
//!     .on_session(|r| println!("{} {} {:?}", r.peer, r.filename, r.stats.outcome));
//! let server = Server::bind(DirHandler::new("/srv/tftp", root)?, options)?.workers(2);
//! std::thread::spawn(move || server.serve());
//!
//! let file = std::fs::File::open("notes.txt")?;
//! let options = OptionValues { blksize: Some(1468), tsize: Some(file.metadata()?.len()), ..Default::default() };
//! Client::new().put("127.0.0.1:69".parse()?, "notes.txt", Mode::Octet, options, file)?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod client;
mod data;
mod dir;
mod handler;
mod server;

pub use client::Client;
pub use dir::DirHandler;
pub use handler::{Handler, ReadResponse, WriteResponse};
pub use server::{Server, ShutdownHandle};
pub use tftp_common::fs::RootOptions;
pub use tftp_common::server::ServerOptions;
pub use tftp_common::{
    ClientError, HandlerError, MtuPolicy, Request, ServerConfig, ServerStats, SessionReport,
};
pub use tftp_proto::{
    self, ErrorCode, Mode, OptionLimits, OptionValues, RequestKind, SessionStats, TimeoutPolicy,
};
