//! A dynamic TFTP server framework on tokio, in the spirit of Facebook's fbtftp: you decide
//! what each read request returns (a file, a generated buffer, a stream from an HTTP origin)
//! by implementing [`Handler`], and receive per-session and periodic server statistics through
//! callbacks ([`ServerOptions::on_session`], [`ServerOptions::on_stats`]).
//!
//! All protocol behaviour comes from [`tftp_proto`] and the framework (the server, client and
//! handler types, admission limits, confined file access, statistics) from [`tftp_server`],
//! written once for every async runtime: this crate is tokio under them ([`Tokio`], [`Udp`])
//! and the names with tokio filled in. A [`Handler`] written here runs unchanged under
//! `tftp-async-std`; responses take tokio's `AsyncRead`/`AsyncWrite` as well as futures-io's.
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

mod runtime;

pub use runtime::{Tokio, Udp};

/// A TFTP server on tokio around a [`Handler`] (fbtftp's `BaseServer`): [`tftp_server::Server`]
/// with tokio filled in. Its sessions are tasks on the runtime that polls
/// [`serve`](tftp_server::Server::serve).
pub type Server<H> = tftp_server::Server<Tokio, H>;

/// A TFTP client on tokio: fetch into any `AsyncWrite`, send from any `AsyncRead`
/// ([`tftp_server::Client`] with tokio filled in).
pub type Client = tftp_server::Client<Tokio>;

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
