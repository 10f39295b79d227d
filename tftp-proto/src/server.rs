//! The server side: requests arriving on the listening port, and the sessions serving them.
//!
//! A server adapter receives a datagram on its listening socket and calls
//! [`IncomingRequest::parse`]. An error either says to ignore the datagram or gives an
//! [`ErrorReply`] to send back. A request goes to the application, which either refuses it
//! with an [`ErrorReply`] or starts a [`ServerSession`] (normally on a fresh socket, whose
//! port is the server's transfer ID, RFC 1350 §4).

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, SocketAddr};

use thiserror::Error;

use crate::config::Config;
use crate::error::{DecodeError, TransferError, UsageError};
use crate::options::{Direction, OptionValues, negotiate};
use crate::packet::{ErrorCode, Mode, Packet};
use crate::session::{Ctrl, Session};
use crate::stats::Outcome;
use crate::storage::{self, Storage};
use crate::time::Instant;

/// Marker for the server role of a [`Session`].
#[derive(Debug)]
pub enum Server {}

/// A session serving one read or write request. `I` is the caller's [`Instant`] type, `B` where
/// the window lives ([`crate::storage`]); the defaults are [`std::time::Instant`] (with `std`)
/// and the heap.
pub type ServerSession<
    #[cfg(feature = "std")] I = std::time::Instant,
    #[cfg(not(feature = "std"))] I,
    B = Vec<u8>,
> = Session<Server, I, B>;

/// Whether the client reads (RRQ) or writes (WRQ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// RRQ: the server sends the file.
    Read,
    /// WRQ: the server receives the file.
    Write,
}

/// A read or write request, decoded and owned, for the application to decide on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingRequest {
    /// The client's address and port (its transfer ID).
    pub peer: SocketAddr,
    /// Read or write.
    pub kind: RequestKind,
    /// The file name exactly as sent. Confining it to a root is the application's job.
    pub filename: String,
    /// Transfer mode.
    pub mode: Mode,
    /// The known options the client asked for (unknown or malformed ones are dropped).
    pub options: OptionValues,
}

/// Why a datagram on the listening port did not start a request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RequestError {
    /// From port 0, an unspecified, broadcast or multicast address: drop it silently (an
    /// answer could be used for reflection and cannot reach a real client anyway).
    #[error("unacceptable source address")]
    BadSource,
    /// Not a request (DATA, ACK, ERROR or OACK to the listening port, well-formed or not, or
    /// not TFTP at all): drop it silently.
    #[error("not a request")]
    NotARequest,
    /// A request that does not decode: answer with [`RequestError::reply`].
    #[error("malformed request: {0}")]
    Malformed(DecodeError),
}

impl RequestError {
    /// The ERROR to send back, if any.
    pub fn reply(&self) -> Option<ErrorReply> {
        match self {
            RequestError::Malformed(DecodeError::MailMode | DecodeError::UnknownMode) => Some(
                ErrorReply::new(ErrorCode::ILLEGAL_OPERATION, "Unsupported transfer mode"),
            ),
            RequestError::Malformed(e) => Some(ErrorReply::new(
                ErrorCode::ILLEGAL_OPERATION,
                format!("Malformed request: {e}"),
            )),
            RequestError::BadSource | RequestError::NotARequest => None,
        }
    }
}

/// An ERROR packet to send without a session (to refuse a request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// The error code.
    pub code: ErrorCode,
    /// The message (keep server-side paths out of it).
    pub message: Cow<'static, str>,
}

impl ErrorReply {
    /// An ERROR with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        ErrorReply {
            code,
            message: message.into(),
        }
    }

    /// ERROR 1 "File not found" (RFC 1350 §5).
    pub fn not_found() -> Self {
        Self::new(ErrorCode::FILE_NOT_FOUND, "File not found")
    }

    /// ERROR 2 "Access violation".
    pub fn access_violation() -> Self {
        Self::new(ErrorCode::ACCESS_VIOLATION, "Access violation")
    }

    /// ERROR 3 "Disk full or allocation exceeded".
    pub fn disk_full() -> Self {
        Self::new(ErrorCode::DISK_FULL, "Disk full or allocation exceeded")
    }

    /// ERROR 6 "File already exists".
    pub fn file_exists() -> Self {
        Self::new(ErrorCode::FILE_EXISTS, "File already exists")
    }

    /// ERROR 0 "Server busy, try again later": a limit on sessions or memory was reached.
    pub fn server_busy() -> Self {
        Self::new(ErrorCode::NOT_DEFINED, "Server busy, try again later")
    }

    /// ERROR 8 (RFC 2347): the request's options cannot be accepted.
    pub fn option_refused(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::OPTION_REFUSED, message)
    }

    /// The encoded packet (at most 516 bytes: messages are cut at 511).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 516];
        let n = self.encode(&mut buf);
        buf.truncate(n);
        buf
    }

    /// Encode into `buf`, shortening the message if `buf` is too small (at least 5 bytes are
    /// needed for an empty message) and dropping any NUL from it. Returns the length written,
    /// 0 if `buf` is shorter than 5 bytes.
    pub fn encode(&self, buf: &mut [u8]) -> usize {
        let Some(room) = buf.len().checked_sub(5) else {
            return 0;
        };
        let mut message: &str = &self.message;
        if let Some(nul) = message.find('\0') {
            message = &message[..nul];
        }
        let mut end = message.len().min(room);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        Packet::Error {
            code: self.code,
            message: &message[..end],
        }
        .encode(buf)
        .unwrap_or(0)
    }
}

/// True if a request from `addr` may be answered: not port 0, and not an unspecified,
/// broadcast or multicast address (RFC 1122 §3.2.1.3 forbids such sources).
pub fn acceptable_source(addr: SocketAddr) -> bool {
    if addr.port() == 0 {
        return false;
    }
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast()),
        IpAddr::V6(ip) => !(ip.is_unspecified() || ip.is_multicast()),
    }
}

impl IncomingRequest {
    /// True if `datagram` starts like a read or write request (opcode 1 or 2). A single-port
    /// server uses it to tell new requests from traffic for a running transfer.
    pub fn is_request(datagram: &[u8]) -> bool {
        matches!(datagram, [0, 1 | 2, ..])
    }

    /// Parse a datagram that arrived on the listening port from `peer`.
    pub fn parse(peer: SocketAddr, datagram: &[u8]) -> Result<Self, RequestError> {
        if !acceptable_source(peer) {
            return Err(RequestError::BadSource);
        }
        // Only a request is ever answered on the listening port: an ERROR, OACK, DATA or ACK
        // there, well-formed or not, is dropped (RFC 1350 never acknowledges an ERROR, and an
        // answer to anything else would make the listener a reflector).
        if !Self::is_request(datagram) {
            return Err(RequestError::NotARequest);
        }
        let (kind, request) = match Packet::decode(datagram) {
            Ok(Packet::Rrq(r)) => (RequestKind::Read, r),
            Ok(Packet::Wrq(r)) => (RequestKind::Write, r),
            Ok(_) => return Err(RequestError::NotARequest),
            Err(DecodeError::UnknownOpcode(_) | DecodeError::Truncated) => {
                // Not even a TFTP packet: nothing useful to say, and no reason to answer.
                return Err(RequestError::NotARequest);
            }
            Err(e) => return Err(RequestError::Malformed(e)),
        };
        Ok(IncomingRequest {
            peer,
            kind,
            filename: request.filename.to_string(),
            mode: request.mode,
            options: OptionValues::from_request(&request.options),
        })
    }
}

impl<I: Instant> Session<Server, I> {
    /// Start serving `request` at `now` with `config` (whose `limits` may be adjusted per
    /// request).
    ///
    /// For a read, `size` is the number of bytes the source will yield, if known; it answers a
    /// `tsize` request (RFC 2349). It is ignored for writes.
    ///
    /// The first output is the OACK if any option was acknowledged (RFC 2347), else DATA 1 for
    /// a read (after a [`crate::Output::Fill`]) or ACK 0 for a write. A write whose announced
    /// `tsize` exceeds [`Config::max_transfer_size`] is refused at once with ERROR 3.
    pub fn new(request: &IncomingRequest, config: &Config, size: Option<u64>, now: I) -> Self {
        Self::start(request, config, size, now, Vec::new())
    }
}

impl<I: Instant, B: Storage> Session<Server, I, B> {
    /// [`Session::new`] with the window in `storage` the caller owns (a `&mut [u8]`): the
    /// session allocates nothing (see [`crate::storage`]).
    ///
    /// The options are negotiated to fit: `blksize` at most what one slot of `storage` holds,
    /// `windowsize` at most what the whole holds (RFC 2348 and RFC 7440 let a server answer
    /// smaller). `storage` must hold a plain RFC 1350 transfer: 516 bytes, and for a netascii
    /// read another 512 to stage the text; else [`UsageError::StorageTooSmall`].
    pub fn with_storage(
        request: &IncomingRequest,
        config: &Config,
        size: Option<u64>,
        now: I,
        storage: B,
    ) -> Result<Self, UsageError> {
        let netascii_sender = request.kind == RequestKind::Read && request.mode == Mode::Netascii;
        let needed = storage::needed(512, 1, netascii_sender);
        let available = storage.capacity();
        if available < needed {
            return Err(UsageError::StorageTooSmall { needed, available });
        }
        let mut config = config.clone();
        let room = available - crate::packet::HEADER_LEN;
        let fit = if netascii_sender { room / 2 } else { room };
        let fit = u16::try_from(fit).unwrap_or(u16::MAX);
        config.limits.max_blksize = config.limits.max_blksize.min(fit);
        Ok(Self::start(request, &config, size, now, storage))
    }

    fn start(
        request: &IncomingRequest,
        config: &Config,
        size: Option<u64>,
        now: I,
        storage: B,
    ) -> Self {
        let netascii_sender = request.kind == RequestKind::Read && request.mode == Mode::Netascii;
        let capacity = storage.capacity();
        let mut s = Session::new_raw(
            config,
            request.peer,
            true,
            request.mode,
            request.options,
            now,
            storage,
        );
        let direction = match request.kind {
            RequestKind::Read => Direction::Read { size },
            RequestKind::Write => Direction::Write,
        };
        if let (RequestKind::Write, Some(limit), Some(announced)) = (
            request.kind,
            config.max_transfer_size,
            request.options.tsize,
        ) {
            if announced > limit {
                s.finish(
                    now,
                    Outcome::Failed(TransferError::TooLarge { limit }),
                    Some((ErrorCode::DISK_FULL, "File exceeds the size limit")),
                );
                return s;
            }
        }
        let mut negotiated = negotiate(&request.options, &config.limits, direction);
        // The window must fit the storage: as many slots as it holds (a heap ring holds any).
        let blksize = negotiated.transfer.blksize;
        let stage = if netascii_sender {
            usize::from(blksize)
        } else {
            0
        };
        let slots =
            capacity.saturating_sub(stage) / (crate::packet::HEADER_LEN + usize::from(blksize));
        let slots = u16::try_from(slots).unwrap_or(u16::MAX).max(1);
        if negotiated.transfer.windowsize > slots {
            negotiated.transfer.windowsize = slots;
            negotiated.oack.windowsize = negotiated.oack.windowsize.map(|w| w.min(slots));
        }
        s.set_options(negotiated.transfer);
        let oack = (!negotiated.oack.is_empty()).then(|| {
            negotiated
                .oack
                .with_options(|options| Ctrl::encode(&Packet::Oack(options)).unwrap_or(Ctrl::EMPTY))
        });
        if let RequestKind::Read = request.kind {
            s.source_size = size;
        }
        match (request.kind, oack) {
            (RequestKind::Read, Some(oack)) => {
                s.start_offering();
                s.queue_ctrl(oack);
            }
            (RequestKind::Read, None) => {
                s.start_sending(now);
            }
            (RequestKind::Write, Some(oack)) => {
                if s.start_receiving(now) {
                    s.queue_ctrl(oack);
                }
            }
            (RequestKind::Write, None) => {
                if s.start_receiving(now) {
                    s.queue_ack(0);
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn listener_classification() {
        let peer = addr("127.0.0.1:4000");
        let r = IncomingRequest::parse(peer, b"\0\x01a\0octet\0tsize\x000\0").unwrap();
        assert_eq!(r.kind, RequestKind::Read);
        assert_eq!(r.options.tsize, Some(0));
        assert_eq!(
            IncomingRequest::parse(peer, b"\0\x04\0\x01"),
            Err(RequestError::NotARequest)
        );
        assert_eq!(
            IncomingRequest::parse(peer, b"\xff"),
            Err(RequestError::NotARequest)
        );
        // Malformed non-requests are not answered either (no ERROR 4 to an ERROR).
        for junk in [
            &b"\0\x05\0\x01no nul"[..],
            b"\0\x06x",
            b"\0\x04\0",
            b"\0\x03",
        ] {
            assert_eq!(
                IncomingRequest::parse(peer, junk),
                Err(RequestError::NotARequest),
                "{junk:?}"
            );
        }
        let e = IncomingRequest::parse(peer, b"\0\x01a\0mail\0").unwrap_err();
        assert_eq!(e.reply().unwrap().code, ErrorCode::ILLEGAL_OPERATION);
        for bad in [
            "127.0.0.1:0",
            "255.255.255.255:69",
            "224.0.0.1:5",
            "0.0.0.0:5",
            "[ff02::1]:5",
        ] {
            assert_eq!(
                IncomingRequest::parse(addr(bad), b"\0\x01a\0octet\0"),
                Err(RequestError::BadSource),
                "{bad}"
            );
        }
    }

    #[test]
    fn error_reply_truncates_to_fit() {
        let reply = ErrorReply::new(ErrorCode::FILE_NOT_FOUND, "File not found\0secret");
        let mut buf = [0u8; 10];
        let n = reply.encode(&mut buf);
        assert_eq!(&buf[..n], b"\0\x05\0\x01File \0");
        let mut big = [0u8; 64];
        let n = reply.encode(&mut big);
        assert_eq!(&big[..n], b"\0\x05\0\x01File not found\0");
        assert_eq!(reply.encode(&mut [0u8; 4]), 0);
    }
}
