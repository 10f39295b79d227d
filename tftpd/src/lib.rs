//! The ready server and client built on [`tftp_tokio`]: the `tftpd` and `tftp` binaries, and
//! the handlers `tftpd` composes — usable from your own server too. The directory handler and
//! the fallback chain are the framework's ([`tftp_server`], re-exported here and by every
//! async adapter), so a server on `tftp-tokio` or `tftp-async-std` has them without depending
//! on this crate:
//!
//! - [`DirHandler`]: files under a root directory, confined to it, with uploads;
//! - [`Templates`]: per-machine files rendered from templates with the client's address;
//! - [`HttpOrigin`]: files streamed from an HTTP(S) origin, one fetch per file for all the
//!   sessions reading it, optionally kept in a bounded local cache ([`CacheOptions`]) (cargo
//!   feature `http-origin`, on by default);
//! - [`Fallback`]: try one handler, then another when the first has no such file;
//! - [`NoShadow`]: refuse uploads of names a read would find anywhere in a chain;
//! - [`metrics_http`]: the bounded HTTP endpoint that serves Prometheus metrics;
//! - [`session_log`]: one JSON line per finished session;
//! - [`template_engine`]: the `{{variable}}` rendering behind [`Templates`];
//! - [`remap`]: file name remapping in tftpd-hpa's rule language ([`Remap`]);
//! - [`access`]: allowing and denying clients by network ([`Access`]);
//! - [`engine`]: these (async) handlers on tftp-blocking's epoll event loops ([`engine::OnLoops`]).

#![forbid(unsafe_code)]

pub mod access;
pub mod engine;
#[cfg(feature = "http-origin")]
mod http;
pub mod line_queue;
mod log_limit;
pub mod logging;
pub mod metrics_http;
#[cfg(feature = "http-origin")]
mod origin_cache;
pub mod remap;
pub mod session_log;
mod shadow;
pub mod template_engine;
mod templates;

pub use access::{Access, ClientFilter};
#[cfg(feature = "http-origin")]
pub use http::{HttpOrigin, MAX_REDIRECTS, OriginRedirects, OriginTimeouts};
#[cfg(feature = "http-origin")]
pub use origin_cache::{CacheOptions, DEFAULT_CACHE_BYTES};
pub use remap::{Remap, RemapNotes, RemapRules};
pub use shadow::{Lookup, NoShadow};
pub use templates::Templates;
pub use tftp_tokio::{DirHandler, Fallback, RootOptions};
