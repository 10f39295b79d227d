//! What the three client libraries share.

use std::io;

use tftp_proto::TransferError;

/// Why a client transfer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The transfer failed: the server's ERROR, a timeout, a protocol violation.
    #[error(transparent)]
    Transfer(#[from] TransferError),
    /// A local I/O error: the socket, or the reader/writer the caller passed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The request could not be encoded (a NUL byte in the file name).
    #[error("invalid request: {0}")]
    Request(#[from] tftp_proto::EncodeError),
}

/// The local address a client binds to reach `server`: the unspecified address of its family,
/// any port.
pub fn local_addr(server: std::net::SocketAddr) -> std::net::SocketAddr {
    match server {
        std::net::SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        std::net::SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// A finished client transfer as a `Result`.
pub fn into_result(
    stats: tftp_proto::SessionStats,
) -> Result<tftp_proto::SessionStats, ClientError> {
    match stats.outcome {
        tftp_proto::Outcome::Failed(e) => Err(e.into()),
        tftp_proto::Outcome::Completed | tftp_proto::Outcome::SizeProbe => Ok(stats),
    }
}
