//! What a handler sees and answers: the request, the error it may refuse with, and the
//! report of a finished session.

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use tftp_proto::{
    ErrorCode, ErrorReply, IncomingRequest, Mode, OptionLimits, OptionValues, Outcome, RequestKind,
    SessionStats, TransferError,
};

/// A read or write request, as a handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request {
    /// The client's address and port.
    pub peer: SocketAddr,
    /// The server address the client sent the request to, with the listener's port: on a
    /// wildcard listener the address that was asked (replies come from it), in the
    /// listener's family (IPv4-mapped on a dual-stack `[::]` listener; compare with
    /// [`std::net::IpAddr::to_canonical`]).
    pub local: SocketAddr,
    /// Read (RRQ) or write (WRQ).
    pub kind: RequestKind,
    /// The file name exactly as the client sent it.
    pub filename: String,
    /// Transfer mode. Netascii translation is done by the protocol core: handlers always
    /// produce and consume the file's own bytes.
    pub mode: Mode,
    /// The options the client asked for.
    pub options: OptionValues,
    /// The server's option limits, with `max_blksize` fitted to the path (see
    /// [`crate::MtuPolicy`]). A handler tightens them for one request by returning changed
    /// limits with its response (e.g. a smaller `max_blksize` for one subnet).
    pub limits: OptionLimits,
}

impl Request {
    /// The handler's view of a parsed request that arrived on `local`.
    pub fn new(incoming: IncomingRequest, local: SocketAddr, limits: OptionLimits) -> Self {
        Request {
            peer: incoming.peer,
            local,
            kind: incoming.kind,
            filename: incoming.filename,
            mode: incoming.mode,
            options: incoming.options,
            limits,
        }
    }

    /// Back to the protocol core's form, to start a session.
    pub fn incoming(&self) -> IncomingRequest {
        IncomingRequest {
            peer: self.peer,
            kind: self.kind,
            filename: self.filename.clone(),
            mode: self.mode,
            options: self.options,
        }
    }
}

/// A handler's refusal: the TFTP error code and message the client receives.
///
/// Messages go to an unauthenticated client: never put a server-side path in them. The
/// conversion from [`io::Error`] maps the error kind to a code and a fixed message for that
/// reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (TFTP error {code})")]
pub struct HandlerError {
    /// The TFTP error code.
    pub code: ErrorCode,
    /// The message sent to the client.
    pub message: Cow<'static, str>,
}

/// The text of [`HandlerError::server_busy`] (and of tftp-proto's `ErrorReply::server_busy`).
pub(crate) const SERVER_BUSY: &str = "Server busy, try again later";

impl HandlerError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        HandlerError {
            code,
            message: message.into(),
        }
    }

    /// Error 1, "File not found".
    pub fn not_found() -> Self {
        Self::new(ErrorCode::FILE_NOT_FOUND, "File not found")
    }

    /// Error 2, "Access violation".
    pub fn access_violation() -> Self {
        Self::new(ErrorCode::ACCESS_VIOLATION, "Access violation")
    }

    /// Error 2, "Write not allowed": the default answer to a write request.
    pub fn write_not_allowed() -> Self {
        Self::new(ErrorCode::ACCESS_VIOLATION, "Write not allowed")
    }

    /// Error 3, "Disk full or allocation exceeded".
    pub fn disk_full() -> Self {
        Self::new(ErrorCode::DISK_FULL, "Disk full or allocation exceeded")
    }

    /// Error 0, "Server error": the server failed (a handler, source or sink panicked), not
    /// the request.
    pub fn server_error() -> Self {
        Self::new(ErrorCode::NOT_DEFINED, "Server error")
    }

    /// Error 0, "Server busy, try again later": a limit was reached, or descriptors ran out.
    pub fn server_busy() -> Self {
        Self::new(ErrorCode::NOT_DEFINED, SERVER_BUSY)
    }

    /// Error 6, "File already exists".
    pub fn file_exists() -> Self {
        Self::new(ErrorCode::FILE_EXISTS, "File already exists")
    }

    /// The error as a packet to send.
    pub fn reply(&self) -> ErrorReply {
        ErrorReply::new(self.code, self.message.clone())
    }
}

impl From<&io::Error> for HandlerError {
    /// A reader or writer that wants the client to see a particular error fails with
    /// `io::Error::other(HandlerError::new(...))`; any other error maps by kind.
    fn from(e: &io::Error) -> Self {
        if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<HandlerError>()) {
            return inner.clone();
        }
        match e.kind() {
            io::ErrorKind::NotFound => Self::not_found(),
            io::ErrorKind::PermissionDenied => Self::access_violation(),
            io::ErrorKind::AlreadyExists => Self::file_exists(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Self::disk_full(),
            io::ErrorKind::TimedOut => Self::new(ErrorCode::NOT_DEFINED, "Origin timed out"),
            _ if crate::descriptors::exhausted(e) => Self::server_busy(),
            _ => Self::new(ErrorCode::NOT_DEFINED, "Server error"),
        }
    }
}

impl From<crate::fs::FsError> for HandlerError {
    fn from(e: crate::fs::FsError) -> Self {
        Self::new(e.code, e.message)
    }
}

impl From<io::Error> for HandlerError {
    fn from(e: io::Error) -> Self {
        Self::from(&e)
    }
}

/// What the per-session callback receives when a session ends (fbtftp's session stats).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionReport {
    /// The client.
    pub peer: SocketAddr,
    /// The server address the request arrived on.
    pub local: SocketAddr,
    /// Read or write.
    pub kind: RequestKind,
    /// The requested file name.
    pub filename: String,
    /// Transfer mode.
    pub mode: Mode,
    /// The options the client asked for.
    pub requested: OptionValues,
    /// Counters, timings, negotiated options and outcome.
    pub stats: SessionStats,
    /// The request was refused before any session existed (by the handler, or for want of a
    /// transfer socket): `stats` counts the one ERROR sent.
    pub refused: bool,
}

impl SessionReport {
    /// The report of a session for `request` that ended with `stats`.
    pub fn new(request: &Request, stats: SessionStats) -> Self {
        SessionReport {
            peer: request.peer,
            local: request.local,
            kind: request.kind,
            filename: request.filename.clone(),
            mode: request.mode,
            requested: request.options,
            stats,
            refused: false,
        }
    }

    /// The report of a request refused with `error` before any session started: one ERROR
    /// packet sent, outcome `Some(`[`Outcome::Failed`]`(`[`TransferError::Local`]`))`.
    pub fn refused(request: &Request, error: &HandlerError, started: Instant) -> Self {
        let mut stats = SessionStats::new(started);
        stats.packets_sent = 1;
        stats.outcome = Some(Outcome::Failed(TransferError::Local {
            code: error.code,
            message: error.message.to_string(),
        }));
        SessionReport {
            refused: true,
            ..Self::new(request, stats)
        }
    }
}

/// Text from the network (a file name, a peer's ERROR message) made safe for a log line or a
/// terminal: control characters (newlines, ESC sequences, DEL, C1) are shown escaped
/// (`\n`, `\u{1b}`), so a client cannot forge log lines or drive the operator's terminal.
///
/// ```
/// use tftp_server::request::Printable;
/// assert_eq!(Printable("a\nb\x1b[31m").to_string(), "a\\nb\\u{1b}[31m");
/// assert_eq!(Printable("pxelinux.cfg/01-aa").to_string(), "pxelinux.cfg/01-aa");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Printable<'a>(pub &'a str);

impl std::fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}
