//! Server configuration shared by the adapters.

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::admission::AdmissionConfig;

/// How a server runs, whatever the runtime.
///
/// The defaults suit PXE fleets: a 1 s initial retransmission timeout adapting to the round trip
/// plus at least 50 ms, 6 retries and 20 s without progress before giving up, blocks up to
/// 65464 bytes and windows up to 64 blocks (clients ask for what they can take: PXE ROMs
/// 1432–1468, UEFI adds windowsize 4), 10,000 concurrent sessions, and statistics every 60 s
/// (fbtftp's default).
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
    /// How granted block sizes fit the path: by default a request's `max_blksize` is lowered
    /// to what fits the MTU of the interface it arrived on, so that DATA is not fragmented.
    pub mtu: MtuPolicy,
    /// `connect()` each transfer socket to its peer, as tftpd-hpa does (default on): the
    /// kernel finds the route once per transfer instead of once per DATA. Strangers' datagrams
    /// to the transfer's port still get their ERROR (RFC 1350 §4) and are counted, through a
    /// second socket on the port, which costs a second descriptor: transfers are connected
    /// only while the descriptor limit has more than one per session (see
    /// [`crate::connect`]). Every adapter does it: tftp-blocking's event loops (tftpd's
    /// default engine), tftp-tokio and tftp-async-std (whose sessions read the catcher beside
    /// the transfer socket). Single-port mode has no transfer sockets to connect.
    pub connect_transfers: bool,
}

/// Whether and how a request's largest block size is fitted to an MTU: `MTU − IP header (20
/// for IPv4, 40 for IPv6) − UDP header (8) − TFTP DATA header (4)`, so 1468 for IPv4 and
/// 1448 for IPv6 on Ethernet's 1500, never below 512 (what a client without options gets
/// anyway). RFC 2348 lets the server grant less than asked; the OACK says so. dnsmasq
/// clamps the same way (`--tftp-mtu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MtuPolicy {
    /// The MTU of the interface each request arrived on (cached per interface for
    /// [`MtuPolicy::REFRESH`]). Loopback's 65536 leaves the largest blocks.
    #[default]
    Interface,
    /// This MTU for every request, whatever the interface.
    Fixed(u32),
    /// No clamping: blocks as large as the limits allow (IP fragments what does not fit).
    Off,
}

impl MtuPolicy {
    /// How long an interface's MTU is trusted before it is read again (interfaces change).
    pub const REFRESH: Duration = Duration::from_secs(30);

    /// The largest block that fits a path of `mtu` bytes, for IPv6 or IPv4.
    pub fn blksize_for(mtu: u32, ipv6: bool) -> u16 {
        let headers = if ipv6 { 40 } else { 20 } + 8 + 4;
        let fits = mtu
            .saturating_sub(headers)
            .clamp(512, u32::from(tftp_proto::options::MAX_BLKSIZE));
        u16::try_from(fits).unwrap_or(tftp_proto::options::MAX_BLKSIZE)
    }
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
            mtu: MtuPolicy::Interface,
            connect_transfers: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MtuPolicy;

    #[test]
    fn block_sizes_that_fit_an_mtu() {
        assert_eq!(MtuPolicy::blksize_for(1500, false), 1468);
        assert_eq!(MtuPolicy::blksize_for(1500, true), 1448);
        assert_eq!(MtuPolicy::blksize_for(9000, false), 8968);
        assert_eq!(MtuPolicy::blksize_for(65536, false), 65464, "loopback");
        assert_eq!(MtuPolicy::blksize_for(65536, true), 65464);
        assert_eq!(MtuPolicy::blksize_for(u32::MAX, true), 65464);
        // Never below what a client without options gets.
        assert_eq!(MtuPolicy::blksize_for(576, true), 524);
        assert_eq!(MtuPolicy::blksize_for(300, false), 512);
        assert_eq!(MtuPolicy::blksize_for(0, false), 512);
        assert_eq!(MtuPolicy::default(), MtuPolicy::Interface);
    }
}
