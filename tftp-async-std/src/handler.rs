//! The handler a server is built around (fbtftp's `BaseHandler` / `ResponseData`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use futures_lite::io::{AsyncRead, AsyncWrite, Cursor};
use tftp_common::{HandlerError, Request};
use tftp_proto::OptionLimits;

pub(crate) type Completion =
    Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>> + Send>;

/// Decides what each request gets (an example is in the [crate documentation](crate)). One
/// handler serves every session, concurrently.
pub trait Handler: Send + Sync + 'static {
    /// Answer a read request with a data source, or refuse it. The error's code and message
    /// go to the client: keep server paths out of them.
    fn read(
        &self,
        request: &Request,
    ) -> impl Future<Output = Result<ReadResponse, HandlerError>> + Send;

    /// Answer a write request with a sink, or refuse it (the default: "Write not allowed").
    fn write(
        &self,
        request: &Request,
    ) -> impl Future<Output = Result<WriteResponse, HandlerError>> + Send {
        let _ = request;
        async { Err(HandlerError::write_not_allowed()) }
    }
}

/// An optional handler: `None` has no files ("File not found") and takes no uploads, so
/// optional parts of a server compose with [`Handler`] combinators without boxing.
impl<H: Handler> Handler for Option<H> {
    async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        match self {
            Some(h) => h.read(request).await,
            None => Err(HandlerError::not_found()),
        }
    }

    async fn write(&self, request: &Request) -> Result<WriteResponse, HandlerError> {
        match self {
            Some(h) => h.write(request).await,
            None => Err(HandlerError::write_not_allowed()),
        }
    }
}

/// What a read request returns: a reader and, if known, its size (sent as `tsize`).
pub struct ReadResponse {
    pub(crate) reader: Pin<Box<dyn AsyncRead + Send>>,
    pub(crate) size: Option<u64>,
    pub(crate) limits: Option<OptionLimits>,
}

impl fmt::Debug for ReadResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ReadResponse");
        d.field("size", &self.size).finish_non_exhaustive()
    }
}

impl ReadResponse {
    /// Serve what `reader` yields; `size`, if known, answers a `tsize` request.
    pub fn new(reader: impl AsyncRead + Send + 'static, size: Option<u64>) -> Self {
        let reader = Box::pin(reader);
        ReadResponse {
            reader,
            size,
            limits: None,
        }
    }

    /// Serve these bytes.
    pub fn from_bytes(data: impl AsRef<[u8]> + Unpin + Send + 'static) -> Self {
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
/// The upload succeeded when the sink flushed and closed without error and the completion
/// (if any) returned `Ok`; only then does the client get its final ACK. A failed or abandoned
/// upload just drops the response: clean up in `Drop`.
pub struct WriteResponse {
    pub(crate) writer: Pin<Box<dyn AsyncWrite + Send>>,
    pub(crate) complete: Option<Completion>,
    pub(crate) limits: Option<OptionLimits>,
}

impl fmt::Debug for WriteResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteResponse").finish_non_exhaustive()
    }
}

impl WriteResponse {
    /// Write the upload into `writer`.
    pub fn new(writer: impl AsyncWrite + Send + 'static) -> Self {
        let writer = Box::pin(writer);
        WriteResponse {
            writer,
            complete: None,
            limits: None,
        }
    }

    /// Run `f` after the last byte is written and flushed, before the final ACK (e.g. move
    /// the file into place). An error fails the upload with that TFTP error.
    pub fn on_complete<F, Fut>(mut self, f: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.complete = Some(Box::new(move || Box::pin(f())));
        self
    }

    /// Negotiate this transfer under `limits` instead of the server's.
    pub fn with_limits(mut self, limits: OptionLimits) -> Self {
        self.limits = Some(limits);
        self
    }
}
