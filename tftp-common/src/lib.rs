//! Runtime-independent building blocks shared by the three server adapters (`tftp-tokio`,
//! `tftp-async-std`, `tftp-blocking`).
//!
//! Protocol behaviour lives in `tftp-proto`; this crate holds what every adapter needs that is
//! not pure: confining paths to a served root, staging uploads, aggregating statistics, and
//! the server configuration. It never depends on an async runtime.

pub mod fs;
