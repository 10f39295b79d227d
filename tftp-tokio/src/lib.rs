//! A dynamic TFTP server framework on tokio, in the spirit of Facebook's fbtftp: you decide
//! what each read request returns (a file, a generated buffer, a stream from an HTTP origin)
//! by implementing [`Handler`], and receive per-session and periodic server statistics through
//! callbacks ([`ServerOptions::on_session`], [`ServerOptions::on_stats`]).
//!
//! All protocol behaviour comes from [`tftp_proto`]; this crate only moves datagrams, timers
//! and bytes between tokio and its sessions. Shared, runtime-independent parts (confined file
//! access, admission limits, statistics, and the server and client loops, written once for
//! every async runtime over [`tftp_server::runtime`]) come from [`tftp_server`].
//!
//! ```no_run
//! use tftp_tokio::{Handler, HandlerError, ReadResponse, Request, Server, ServerOptions};
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
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let options = ServerOptions::new()
//!         .listen("127.0.0.1:6969".parse().unwrap())
//!         .on_session(|r| println!("{} {} {:?}", r.peer, r.filename, r.stats.outcome));
//!     Server::bind(Hello, options)?.serve().await
//! }
//! ```

#![forbid(unsafe_code)]

mod chain;
mod client;
mod dir;
mod handler;
mod runtime;
mod server;
pub mod template_engine;
mod templates;

pub use chain::Fallback;
pub use client::Client;
pub use dir::DirHandler;
pub use handler::{BoxFuture, DynHandler, Handler, ReadResponse, WriteResponse};
pub use server::Server;
pub use templates::Templates;
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
