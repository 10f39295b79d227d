//! Runtime-independent building blocks shared by the three server adapters (`tftp-tokio`,
//! `tftp-async-std`, `tftp-blocking`).
//!
//! Protocol behaviour lives in `tftp-proto`; this crate holds what every adapter needs that is
//! not pure: confining paths to a served root, staging uploads, admitting requests under
//! limits, aggregating statistics, and the server configuration; and, written once over a
//! small [`runtime::Runtime`] trait, the server ([`serve`]) and client of the async adapters.
//! It never depends on an async runtime (only on executor-agnostic `async-channel` and
//! `futures-lite`).

#![forbid(unsafe_code)]

pub mod admission;
#[cfg(feature = "async-io")]
pub mod async_io;
pub mod budget;
pub mod client;
pub mod config;
pub mod descriptors;
pub mod drive;
pub mod fs;
pub mod log_limit;
pub mod request;
pub mod runtime;
pub mod serve;
pub mod server;
pub mod stats;
pub mod udp;

pub use admission::{Admission, AdmissionConfig, Permit, Refusal};
pub use client::ClientError;
pub use config::{MtuPolicy, ServerConfig};
pub use request::{HandlerError, Request, SessionReport};
pub use server::{Decision, ServerCore, ServerOptions};
pub use stats::{ServerStats, StatsCollector};
