//! A dynamic TFTP server framework for async-std and smol users, in the spirit of Facebook's
//! fbtftp: you decide what each read request returns (a file, a generated buffer, a stream
//! from an HTTP origin) by implementing [`Handler`], and receive per-session and periodic
//! server statistics through callbacks ([`ServerOptions::on_session`],
//! [`ServerOptions::on_stats`]). The same concepts and names as `tftp-tokio`.
//!
//! async-std is discontinued upstream in favour of smol (RUSTSEC-2025-0052), so this crate
//! depends on neither: it is built on the runtime-independent crates both run on —
//! `async-io` (sockets, timers; its reactor runs in whichever thread blocks in its
//! `block_on`, else in its own thread), the `futures-io` traits (via `futures-lite`),
//! `blocking` (file I/O on its thread pool) and `async-executor` (the sessions run on an
//! executor inside the [`serve`](tftp_server::Server::serve) future). Any executor can poll
//! these futures; none needs to be running. All protocol behaviour comes from [`tftp_proto`]
//! and the server, client and handler types from [`tftp_server`], written once for every
//! async runtime: this crate is their names with async-io ([`AsyncIo`]) filled in, and a
//! [`Handler`] written here runs unchanged under `tftp-tokio`.
//!
//! Under async-std, serving a greeting on loopback and fetching it:
//!
//! ```
//! use tftp_async_std::{Client, Handler, HandlerError, Mode, ReadResponse, Request, Server, ServerOptions};
//!
//! struct Hello;
//!
//! impl Handler for Hello {
//!     async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
//!         let text = format!("hello {}, you asked for {}\n", request.peer.ip(), request.filename);
//!         Ok(ReadResponse::from_bytes(text.into_bytes()))
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! async_std::task::block_on(async {
//!     let server = Server::bind(Hello, ServerOptions::new().listen("127.0.0.1:0".parse()?))?;
//!     let addr = server.local_addrs()?[0];
//!     let (stop, stopped) = async_std::channel::bounded::<()>(1);
//!     let serving = async_std::task::spawn(server.serve_until(async move {
//!         let _ = stopped.recv().await;
//!     }));
//!     let mut text = Vec::new();
//!     Client::new().get(addr, "motd", Mode::Octet, Default::default(), &mut text).await?;
//!     assert_eq!(text, b"hello 127.0.0.1, you asked for motd\n");
//!     drop(stop); // graceful shutdown
//!     Ok(serving.await?)
//! })
//! # }
//! ```
//!
//! Under smol, serving a directory on port 69 and uploading to it:
//!
//! ```no_run
//! use tftp_async_std::{Client, DirHandler, Mode, RootOptions, Server, ServerOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! smol::block_on(async {
//!     let root = RootOptions { allow_write: true, ..Default::default() };
//!     let options = ServerOptions::new()
//!         .listen("[::]:69".parse()?)
//!         .on_session(|r| println!("{} {} {:?}", r.peer, r.filename, r.stats.outcome));
//!     smol::spawn(Server::bind(DirHandler::new("/srv/tftp", root)?, options)?.serve()).detach();
//!     let file = smol::fs::File::open("notes.txt").await?;
//!     let to = "127.0.0.1:69".parse()?;
//!     Client::new().put(to, "notes.txt", Mode::Octet, Default::default(), file).await?;
//!     Ok(())
//! })
//! # }
//! ```

#![forbid(unsafe_code)]

pub use tftp_server::async_io::{AsyncIo, Udp};

/// A TFTP server on async-io around a [`Handler`] (fbtftp's `BaseServer`):
/// [`tftp_server::Server`] with [`AsyncIo`] filled in.
///
/// Its sessions run on an executor inside the [`serve`](tftp_server::Server::serve) future, so
/// they make progress on whichever thread polls that future (async-std's, smol's, or a
/// `block_on`). Uploads into a [`DirHandler`] are written on the `blocking` thread pool.
pub type Server<H> = tftp_server::Server<AsyncIo, H>;

/// A TFTP client on async-io: fetch into any `AsyncWrite`, send from any `AsyncRead`
/// ([`tftp_server::Client`] with [`AsyncIo`] filled in). After the last ACK of a download it
/// dallies on a short-lived thread of its own, since this crate has no runtime to spawn on.
pub type Client = tftp_server::Client<AsyncIo>;

pub use tftp_server::server::ServerOptions;
pub use tftp_server::{
    AdmissionConfig, BoxFuture, ClientError, DirHandler, DynHandler, Fallback, Handler,
    HandlerError, MtuPolicy, ReadResponse, Request, RootOptions, ServerConfig, ServerStats,
    SessionReport, StatsCollector, WriteResponse,
};
// What handler authors and client users name, so that they need not depend on tftp-proto.
pub use tftp_proto::{
    self, Config, ErrorCode, Mode, OptionLimits, OptionValues, Outcome, RequestKind, Rollover,
    SessionStats, TimeoutPolicy, TransferError, TransferOptions,
};
