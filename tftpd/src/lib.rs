//! The ready server and client built on [`tftp_tokio`]: the `tftpd` and `tftp` binaries, and
//! the handlers `tftpd` composes — usable from your own server too:
//!
//! - [`DirHandler`]: files under a root directory, confined to it, with uploads;
//! - [`Templates`]: per-machine files rendered from templates with the client's address;
//! - [`HttpOrigin`]: files streamed from an HTTP(S) origin, one fetch per file for all the
//!   sessions reading it, optionally kept in a bounded local cache ([`CacheOptions`]);
//! - [`Fallback`]: try one handler, then another when the first has no such file;
//! - [`NoShadow`]: refuse uploads of names a read would find anywhere in a chain;
//! - [`metrics_http`]: the bounded HTTP endpoint that serves Prometheus metrics;
//! - [`session_log`]: one JSON line per finished session;
//! - [`template_engine`]: the `{{variable}}` rendering behind [`Templates`].

#![forbid(unsafe_code)]

mod chain;
mod dir;
mod http;
pub mod logging;
pub mod metrics_http;
mod origin_cache;
pub mod session_log;
mod shadow;
pub mod template_engine;
mod templates;

pub use chain::Fallback;
pub use dir::DirHandler;
pub use http::{HttpOrigin, MAX_REDIRECTS, OriginRedirects, OriginTimeouts};
pub use origin_cache::{CacheOptions, DEFAULT_CACHE_BYTES};
pub use shadow::{Lookup, NoShadow};
pub use templates::Templates;
pub use tftp_common::fs::RootOptions;
