//! Errors, split by whose fault they are.
//!
//! - [`DecodeError`] / [`EncodeError`]: the codec. A decode error is the peer's fault (it sent a
//!   malformed datagram); an encode error is the caller's (a field that cannot be represented, or
//!   a buffer that is too small).
//! - [`TransferError`]: why a transfer ended without success. [`TransferError::Peer`] and
//!   [`TransferError::Protocol`] are the peer's doing, [`TransferError::TimedOut`] the network's,
//!   [`TransferError::Local`] the caller's decision (for example an I/O error in the adapter).
//! - [`UsageError`]: the caller misused the session API; the session state is unchanged.

use alloc::string::String;

use thiserror::Error;

use crate::packet::ErrorCode;

/// Which text field of a packet an error refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// The file name of a request.
    Filename,
    /// The mode of a request.
    Mode,
    /// An option name.
    OptionName,
    /// An option value.
    OptionValue,
    /// The message of an ERROR packet.
    ErrorMessage,
}

impl core::fmt::Display for Field {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Field::Filename => "file name",
            Field::Mode => "mode",
            Field::OptionName => "option name",
            Field::OptionValue => "option value",
            Field::ErrorMessage => "error message",
        })
    }
}

/// A datagram that is not a well-formed TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the fixed part of its packet kind.
    #[error("packet truncated")]
    Truncated,
    /// An opcode other than 1–6.
    #[error("unknown opcode {0}")]
    UnknownOpcode(u16),
    /// A string field without its terminating NUL.
    #[error("{0} is not NUL-terminated")]
    MissingNul(Field),
    /// A string field that is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    NotUtf8(Field),
    /// A mode other than `octet`, `netascii` or `mail`.
    #[error("unknown transfer mode")]
    UnknownMode,
    /// The obsolete `mail` mode (RFC 1350 §1).
    #[error("mail mode is not supported")]
    MailMode,
    /// An option with an empty name.
    #[error("empty option name")]
    EmptyOptionName,
    /// The same option twice (names compare case-insensitively; RFC 2347).
    #[error("duplicate option")]
    DuplicateOption,
    /// More than [`crate::packet::MAX_OPTIONS`] options.
    #[error("too many options")]
    TooManyOptions,
    /// Bytes after the last field.
    #[error("trailing bytes after packet")]
    TrailingBytes,
}

/// A packet that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The buffer is shorter than the packet.
    #[error("buffer too small: {needed} bytes needed")]
    BufferTooSmall {
        /// The encoded length of the packet.
        needed: usize,
    },
    /// A string field contains a NUL byte.
    #[error("{0} contains a NUL byte")]
    NulInText(Field),
    /// An option with an empty name.
    #[error("empty option name")]
    EmptyOptionName,
    /// The same option name twice.
    #[error("duplicate option")]
    DuplicateOption,
    /// More than [`crate::packet::MAX_OPTIONS`] options.
    #[error("too many options")]
    TooManyOptions,
}

/// What the peer did that the protocol does not allow. The session answered with ERROR 4
/// (or ERROR 8 for a bad OACK) before ending.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The transfer peer sent a datagram that does not decode.
    #[error("malformed packet: {0}")]
    Malformed(#[from] DecodeError),
    /// A packet kind that has no place in the current state (e.g. DATA to a sender).
    #[error("unexpected {0} packet")]
    Unexpected(&'static str),
    /// A DATA block larger than the negotiated block size.
    #[error("DATA block of {len} bytes exceeds block size {blksize}")]
    BlockTooLarge {
        /// Payload length received.
        len: usize,
        /// Negotiated block size.
        blksize: u16,
    },
    /// An ACK for a block that was never sent.
    #[error("ACK for block {0} that was not sent")]
    AckOutOfWindow(u16),
    /// The server's OACK is not acceptable to the client (RFC 2347: answered with ERROR 8).
    #[error("unacceptable OACK: {0}")]
    BadOack(&'static str),
}

/// Why a transfer failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The peer ended the transfer with an ERROR packet.
    #[error("peer sent error {code}: {message}")]
    Peer {
        /// The peer's error code.
        code: ErrorCode,
        /// The peer's message.
        message: String,
    },
    /// The peer violated the protocol; the session sent an ERROR and stopped.
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolError),
    /// The peer stopped answering: every retry ran out.
    #[error("timed out after {retries} retransmissions")]
    TimedOut {
        /// Retransmissions made before giving up.
        retries: u32,
    },
    /// The caller ended the transfer (e.g. an I/O error on its side), sending this ERROR.
    #[error("aborted locally with error {code}: {message}")]
    Local {
        /// The error code sent to the peer.
        code: ErrorCode,
        /// The message sent to the peer.
        message: String,
    },
    /// The upload grew past the configured size limit; the session sent ERROR 3.
    #[error("transfer exceeds the size limit of {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// The data did not match its announced size (RFC 2349 `tsize`): a receiver got more or
    /// fewer bytes than announced (a truncated or padded transfer), or a sender's source ended
    /// short of, or ran past, the size it reported (the file changed while being read). The
    /// session sent ERROR 0 rather than complete a transfer that is not the announced file.
    #[error("size mismatch: {expected} bytes announced, {actual} transferred")]
    SizeMismatch {
        /// The announced size.
        expected: u64,
        /// The bytes actually transferred (or read from the source) when the mismatch showed.
        actual: u64,
    },
    /// A block read again from a seekable source, to be resent, came out a different length
    /// than the first time (see `Session::set_source_seekable`): the file changed while being
    /// sent. The session sent ERROR 0 rather than mix two versions of a file silently.
    #[error("source changed: the block at offset {offset}, read again, was not as long as before")]
    SourceChanged {
        /// Where the block starts in the source.
        offset: u64,
    },
}

impl TransferError {
    /// The TFTP error code this failure carries on the wire, if any (sent or received).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            TransferError::Peer { code, .. } | TransferError::Local { code, .. } => Some(*code),
            TransferError::Protocol(ProtocolError::BadOack(_)) => Some(ErrorCode::OPTION_REFUSED),
            TransferError::Protocol(_) => Some(ErrorCode::ILLEGAL_OPERATION),
            TransferError::TooLarge { .. } => Some(ErrorCode::DISK_FULL),
            TransferError::SizeMismatch { .. } | TransferError::SourceChanged { .. } => {
                Some(ErrorCode::NOT_DEFINED)
            }
            TransferError::TimedOut { .. } => None,
        }
    }
}

/// The caller used the session API in a way it does not allow. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum UsageError {
    /// More bytes committed than the buffer that was lent.
    #[error("advanced {advanced} bytes into a buffer of {available}")]
    Overfill {
        /// Bytes the caller claimed to have written.
        advanced: usize,
        /// Bytes that were available.
        available: usize,
    },
    /// The storage lent for a session's window cannot hold what the transfer may need.
    #[error("window storage of {available} bytes, {needed} needed")]
    StorageTooSmall {
        /// Bytes the transfer may need.
        needed: usize,
        /// Bytes the storage holds.
        available: usize,
    },
    /// A request that cannot be encoded (a NUL in the file name, say).
    #[error("request cannot be encoded: {0}")]
    Encode(#[from] EncodeError),
}
