//! The TFTP server framework (fbtftp's `BaseServer` / `BaseHandler` / `ResponseData`) that
//! the runtime adapters instantiate: `tftp-tokio` and `tftp-async-std` are this crate's
//! [`Server`], [`Client`] and [`Handler`] with their runtime filled in, `tftp-blocking` its
//! own event loop over the same listening side, limits, files and statistics.
//!
//! Protocol behaviour lives in `tftp-proto` (sessions, option negotiation, and the listening
//! side, [`tftp_proto::Endpoint`]); this crate holds what every server needs that is not pure:
//! admitting requests under limits ([`admission`]), confining paths to a served root and
//! staging uploads ([`fs`], [`DirHandler`]), statistics and metrics ([`stats`]), the server
//! configuration; and, with the `async` feature, written once over a small
//! [`runtime::Runtime`] trait, the server, client and handler types of the async adapters. It
//! never depends on an async runtime (only on executor-agnostic `async-channel`,
//! `futures-lite` and `blocking`; tokio's I/O traits with the `tokio` feature).
//!
//! A handler is written once and runs under every async runtime:
//!
//! ```
//! use tftp_server::{Handler, HandlerError, ReadResponse, Request};
//!
//! struct Hello;
//!
//! impl Handler for Hello {
//!     async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
//!         let text = format!("hello {}, you asked for {}\n", request.peer.ip(), request.filename);
//!         Ok(ReadResponse::from_bytes(text.into_bytes()))
//!     }
//! }
//! ```

#![forbid(unsafe_code)]

pub mod admission;
#[cfg(feature = "async-io")]
pub mod async_io;
pub mod batch;
pub mod budget;
pub mod client;
pub mod config;
pub mod connect;
pub mod descriptors;
mod dir;
#[cfg(feature = "async")]
pub(crate) mod drive;
#[cfg(feature = "async")]
mod fallback;
pub mod file;
pub mod fs;
#[cfg(feature = "async")]
mod handler;
pub mod log_limit;
pub mod request;
pub mod ring;
#[cfg(feature = "async")]
pub mod runtime;
#[cfg(feature = "async")]
pub mod serve;
pub mod server;
mod signal;
mod spares;
pub mod stats;
pub mod udp;

pub use admission::{Admission, AdmissionConfig, Permit, Refusal};
#[cfg(feature = "async")]
pub use client::Client;
pub use client::ClientError;
pub use config::{MtuPolicy, ServerConfig};
pub use dir::DirHandler;
#[cfg(feature = "async")]
pub use fallback::Fallback;
pub use fs::RootOptions;
#[cfg(feature = "async")]
pub use handler::{
    BoxFuture, BoxReader, BoxWriter, Bytes, DynHandler, FuturesIo, Handler, IntoReader, IntoWriter,
    ReadParts, ReadResponse, Source, TokioIo, WriteParts, WriteResponse,
};
pub use request::{HandlerError, Request, SessionReport};
#[cfg(feature = "async")]
pub use serve::Server;
pub use server::{Decision, ServerCore, ServerOptions};
pub use stats::{ServerStats, StatsCollector};
