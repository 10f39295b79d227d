//! The handler a server is built around (fbtftp's `BaseHandler` / `ResponseData`), blocking.

use std::io::{Cursor, Read, Write};

use tftp_common::{HandlerError, Request};
use tftp_proto::OptionLimits;

pub(crate) type Completion = Box<dyn FnOnce() -> Result<(), HandlerError> + Send>;

/// Decides what each request gets. One handler serves every session; its methods run on the
/// server's I/O thread pool, never on the event loop, so they may block (open files, ask a
/// database, fetch from an HTTP origin).
///
/// ```
/// use tftp_blocking::{Handler, HandlerError, ReadResponse, Request};
///
/// /// Serves a generated iPXE script naming the client's address.
/// struct PerMachine;
///
/// impl Handler for PerMachine {
///     fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
///         if request.filename != "boot.ipxe" {
///             return Err(HandlerError::not_found());
///         }
///         let script = format!("#!ipxe\necho hello {}\n", request.peer.ip());
///         Ok(ReadResponse::from_bytes(script.into_bytes()))
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Answer a read request with a data source, or refuse it. The error's code and message
    /// go to the client: keep server paths out of them.
    fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError>;

    /// Answer a write request with a sink, or refuse it (the default: "Write not allowed").
    fn write(&self, request: &Request) -> Result<WriteResponse, HandlerError> {
        let _ = request;
        Err(HandlerError::write_not_allowed())
    }
}

/// An optional handler: `None` has no files ("File not found") and takes no uploads, so
/// optional parts of a server compose with [`Handler`] combinators without boxing.
impl<H: Handler> Handler for Option<H> {
    fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        match self {
            Some(h) => h.read(request),
            None => Err(HandlerError::not_found()),
        }
    }

    fn write(&self, request: &Request) -> Result<WriteResponse, HandlerError> {
        match self {
            Some(h) => h.write(request),
            None => Err(HandlerError::write_not_allowed()),
        }
    }
}

/// What a read request returns: a reader and, if known, its size (sent as `tsize`).
///
/// The reader is read on the I/O thread pool in chunks of up to 64 KiB (each read fills the
/// chunk or reaches the end), so it may block; the event loop copies blocks from memory.
pub struct ReadResponse {
    pub(crate) reader: Box<dyn Read + Send>,
    pub(crate) size: Option<u64>,
    pub(crate) limits: Option<OptionLimits>,
}

impl std::fmt::Debug for ReadResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadResponse")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl ReadResponse {
    /// Serve what `reader` yields; `size`, if known, answers a `tsize` request.
    pub fn new(reader: impl Read + Send + 'static, size: Option<u64>) -> Self {
        ReadResponse {
            reader: Box::new(reader),
            size,
            limits: None,
        }
    }

    /// Serve these bytes.
    pub fn from_bytes(data: impl AsRef<[u8]> + Send + 'static) -> Self {
        let size = data.as_ref().len() as u64;
        Self::new(Cursor::new(data), Some(size))
    }

    /// Negotiate this transfer under `limits` instead of the server's (start from
    /// [`Request::limits`]).
    pub fn with_limits(mut self, limits: OptionLimits) -> Self {
        self.limits = Some(limits);
        self
    }
}

/// What a write request writes into: a sink, and what to do once every byte is in it.
///
/// The sink is written on the I/O thread pool in chunks of up to 64 KiB (blocks are
/// acknowledged once buffered; a write error fails the transfer at the next block). The upload
/// succeeded when the last chunk was written, the sink flushed and the completion (if any)
/// returned `Ok`; only then does the client get its final ACK. A failed or abandoned upload
/// just drops the response: clean up in `Drop`.
pub struct WriteResponse {
    pub(crate) writer: Box<dyn Write + Send>,
    pub(crate) complete: Option<Completion>,
    pub(crate) limits: Option<OptionLimits>,
}

impl std::fmt::Debug for WriteResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteResponse").finish_non_exhaustive()
    }
}

impl WriteResponse {
    /// Write the upload into `writer`.
    pub fn new(writer: impl Write + Send + 'static) -> Self {
        WriteResponse {
            writer: Box::new(writer),
            complete: None,
            limits: None,
        }
    }

    /// Run `f` after the last byte is written and flushed, before the final ACK (e.g. move
    /// the file into place). An error fails the upload with that TFTP error.
    pub fn on_complete(
        mut self,
        f: impl FnOnce() -> Result<(), HandlerError> + Send + 'static,
    ) -> Self {
        self.complete = Some(Box::new(f));
        self
    }

    /// Negotiate this transfer under `limits` instead of the server's.
    pub fn with_limits(mut self, limits: OptionLimits) -> Self {
        self.limits = Some(limits);
        self
    }
}
