//! Server configuration shared by the adapters.

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::admission::AdmissionConfig;

/// How a server runs, whatever the runtime.
///
/// The defaults suit PXE fleets: a 1 s initial retransmission timeout adapting down to 50 ms,
/// 6 retries and 20 s without progress before giving up, blocks up to 65464 bytes and windows up to 64 blocks (clients ask for what they
/// can take: PXE ROMs 1432–1468, UEFI adds windowsize 4), 10,000 concurrent sessions, and
/// statistics every 60 s (fbtftp's default).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Per-session protocol settings: timeouts, retries, rollover, option limits, upload size.
    pub session: tftp_proto::Config,
    /// Limits on concurrent and new sessions.
    pub admission: AdmissionConfig,
    /// Period of the server statistics callback.
    pub stats_interval: Duration,
    /// Local ports for transfer sockets; `None`: any ephemeral port.
    pub port_range: Option<RangeInclusive<u16>>,
    /// Serve every transfer from the listening port, telling sessions apart by the client's
    /// address, for NAT, containers and Kubernetes where per-transfer ports cannot pass.
    pub single_port: bool,
    /// On shutdown, how long running transfers may take to finish before they are aborted.
    pub shutdown_grace: Duration,
    /// How long a handler's source may take to supply one block before its transfer is
    /// aborted ("Data source timed out"). Meanwhile the session keeps serving its peer's
    /// datagrams and the shutdown signal. Default 20 s.
    pub source_timeout: Duration,
    /// The memory all sessions' windows may take together (each `windowsize × (4 +
    /// blksize)` bytes once data flows); a session that does not fit is aborted with "Server
    /// busy". Default 1 GiB.
    pub window_memory: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let mut session = tftp_proto::Config::default();
        // Windows go out in batches (UDP GSO where the adapter has it).
        session.max_batch = 64;
        ServerConfig {
            session,
            admission: AdmissionConfig::default(),
            stats_interval: Duration::from_secs(60),
            port_range: None,
            single_port: false,
            shutdown_grace: Duration::from_secs(10),
            source_timeout: Duration::from_secs(20),
            window_memory: 1 << 30,
        }
    }
}
