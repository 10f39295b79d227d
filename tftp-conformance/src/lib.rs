//! One conformance suite for every runtime adapter.
//!
//! The scenarios are written once, against the [`Adapter`] trait: start a server around the
//! shared in-memory [`Backend`], fetch and send files with the adapter's client. Each adapter
//! implements the trait in [`adapters`] (a few dozen lines mapping the backend onto its own
//! `Handler` trait), and `tests/` instantiates [`suite!`] for every adapter and every
//! (server, client) pair. A behaviour difference between adapters is a failing test.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod adapters;
mod backend;
pub mod netem;
pub mod raw;
pub mod scenarios;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub use backend::{Backend, SIZES, STALL, Sink, Source, TEXT};

/// The README's Rust examples, compiled (and run, unless marked `no_run`) as doctests: this
/// crate depends on every adapter and runtime they use.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
use tftp_proto::{Config, Mode, OptionValues, SessionStats};
use tftp_server::ClientError;
use tftp_server::SessionReport;
use tftp_server::server::ServerOptions;

/// A runtime adapter under test: its server framework and its client.
pub trait Adapter: 'static {
    /// Name for messages.
    const NAME: &'static str;

    /// Start a server whose handler serves `backend`, with `options` (listen addresses and
    /// callbacks set by the suite), in the background.
    fn serve(backend: Arc<Backend>, options: ServerOptions) -> ServerHandle;

    /// Fetch `file` with the adapter's client.
    fn get(
        config: &Config,
        server: SocketAddr,
        file: &str,
        mode: Mode,
        options: OptionValues,
    ) -> Result<(Vec<u8>, SessionStats), ClientError>;

    /// Send `data` as `name` with the adapter's client.
    fn put(
        config: &Config,
        server: SocketAddr,
        name: &str,
        mode: Mode,
        options: OptionValues,
        data: &[u8],
    ) -> Result<SessionStats, ClientError>;
}

/// A running server; dropping it shuts it down (gracefully) and waits.
pub struct ServerHandle {
    /// Where it listens.
    pub addrs: Vec<SocketAddr>,
    stop: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addrs", &self.addrs)
            .finish()
    }
}

impl ServerHandle {
    /// A handle whose `stop` triggers a graceful shutdown and returns once it is done.
    pub fn new(addrs: Vec<SocketAddr>, stop: impl FnOnce() + Send + 'static) -> Self {
        ServerHandle {
            addrs,
            stop: Some(Box::new(stop)),
        }
    }

    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Shut down gracefully and wait.
    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

/// Session reports collected from a server's `on_session` callback.
#[derive(Debug, Clone, Default)]
pub struct Reports(Arc<Mutex<Vec<SessionReport>>>);

impl Reports {
    /// Options that listen on 127.0.0.1 and record every report here.
    ///
    /// The per-client request rate limit is off: scenarios make many requests from 127.0.0.1.
    pub fn options(&self) -> ServerOptions {
        let reports = Arc::clone(&self.0);
        let mut options = ServerOptions::new()
            .listen("127.0.0.1:0".parse().unwrap())
            .on_session(move |r| reports.lock().unwrap().push(r.clone()));
        options.config.admission.rate_per_client = None;
        options
    }

    /// [`Reports::options`] that also record the server statistics callback's figures, every
    /// `interval`.
    pub fn options_with_intervals(
        &self,
        interval: std::time::Duration,
    ) -> (ServerOptions, Arc<Mutex<Vec<tftp_server::ServerStats>>>) {
        let intervals = Arc::new(Mutex::new(Vec::new()));
        let i = Arc::clone(&intervals);
        let mut options = self
            .options()
            .on_stats(move |s| i.lock().unwrap().push(s.clone()));
        options.config.stats_interval = interval;
        (options, intervals)
    }

    /// The reports so far.
    pub fn all(&self) -> Vec<SessionReport> {
        self.0.lock().unwrap().clone()
    }

    /// Wait (up to 10 s) until `n` reports have arrived, and return them.
    pub fn wait_for(&self, n: usize) -> Vec<SessionReport> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let all = self.all();
            if all.len() >= n || std::time::Instant::now() > deadline {
                return all;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Instantiate every scenario as a `#[test]` for a server adapter and a client adapter.
///
/// `suite!(full: S, C)` runs everything; `suite!(cross: S, C)` a representative subset for
/// pairs of different adapters.
#[macro_export]
macro_rules! suite {
    (full: $server:ty, $client:ty) => {
        $crate::suite!(cross: $server, $client);
        $crate::suite!(@tests $server, $client;
            sizes_around_block_boundaries, more_than_65535_blocks, netascii_both_ways,
            wrong_transfer_id, vanishing_client_frees_the_session, handler_error_reaches_the_client,
            source_failure_mid_transfer, stats_once_per_session, five_hundred_concurrent_transfers,
            size_probe_is_counted_as_a_probe, per_request_limits, single_port_mode,
            graceful_shutdown_lets_transfers_finish, port_range, ipv6_and_dual_stack,
            server_busy_gets_an_error, real_clients_fetch_and_upload, lossy_link,
            strangers_get_bounded_answers, replacements_stay_within_the_limits,
            a_stalled_source_does_not_wedge_its_session,
            window_memory_is_taken_only_when_data_flows,
            replies_from_the_asked_address, blksize_fits_the_mtu,
            a_panic_fails_only_its_own_request);
    };
    (cross: $server:ty, $client:ty) => {
        $crate::suite!(@tests $server, $client; option_matrix, uploads_on_and_off);
    };
    (@tests $server:ty, $client:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::scenarios::$name::<$server, $client>();
            }
        )*
    };
}
