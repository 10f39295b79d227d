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
