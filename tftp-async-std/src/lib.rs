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
//! executor inside the [`Server::serve`] future). Any executor can poll these futures; none
//! needs to be running. All protocol behaviour comes from [`tftp_proto`] and the shared
//! server and client loops from [`tftp_server`] (written once for every async runtime over
//! [`tftp_server::runtime`]); this crate only moves datagrams, timers and bytes.
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

mod client;
mod dir;
mod handler;
mod runtime;
mod server;

pub use client::Client;
pub use dir::DirHandler;
pub use handler::{BoxFuture, DynHandler, Handler, ReadResponse, WriteResponse};
pub use server::Server;
pub use tftp_server::fs::RootOptions;
pub use tftp_server::server::ServerOptions;
pub use tftp_server::{
    AdmissionConfig, ClientError, HandlerError, MtuPolicy, Request, ServerConfig, ServerStats,
    SessionReport, StatsCollector,
};
// What handler authors and client users name, so that they need not depend on tftp-proto.
pub use tftp_proto::{
    self, Config, ErrorCode, Mode, OptionLimits, OptionValues, Outcome, RequestKind, Rollover,
    SessionStats, TimeoutPolicy, TransferError, TransferOptions,
};
