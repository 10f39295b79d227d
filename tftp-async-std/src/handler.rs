//! The handler a server is built around (fbtftp's `BaseHandler` / `ResponseData`).

use std::fmt;
use std::future::Future;

use futures_lite::io::{AsyncRead, AsyncWrite, Cursor};
use tftp_server::runtime::{Answer, Service};
use tftp_server::{HandlerError, Request};
use tftp_proto::OptionLimits;

use crate::runtime::Data;

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

/// A future in a box, as [`DynHandler`] returns them.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Handler`] as a trait object: every handler is a `DynHandler`, and `Box<dyn DynHandler>`
/// and `Arc<dyn DynHandler>` are handlers, so a server can pick its handler at run time (from
/// configuration, per deployment) at the cost of one boxed future per request.
///
/// ```
/// use tftp_async_std::{DynHandler, Handler, HandlerError, ReadResponse, Request};
///
/// struct Hello;
/// impl Handler for Hello {
///     async fn read(&self, _: &Request) -> Result<ReadResponse, HandlerError> {
///         Ok(ReadResponse::from_bytes(b"hello".to_vec()))
///     }
/// }
///
/// struct Nothing;
/// impl Handler for Nothing {
///     async fn read(&self, _: &Request) -> Result<ReadResponse, HandlerError> {
///         Err(HandlerError::not_found())
///     }
/// }
///
/// fn from_config(greet: bool) -> Box<dyn DynHandler> {
///     if greet { Box::new(Hello) } else { Box::new(Nothing) }
/// }
/// fn is_a_handler(_: impl Handler) {}
/// is_a_handler(from_config(true));
/// ```
pub trait DynHandler: Send + Sync + 'static {
    /// [`Handler::read`], boxed.
    fn read_boxed<'a>(
        &'a self,
        request: &'a Request,
    ) -> BoxFuture<'a, Result<ReadResponse, HandlerError>>;
    /// [`Handler::write`], boxed.
    fn write_boxed<'a>(
        &'a self,
        request: &'a Request,
    ) -> BoxFuture<'a, Result<WriteResponse, HandlerError>>;
}

impl<H: Handler> DynHandler for H {
    fn read_boxed<'a>(
        &'a self,
        request: &'a Request,
    ) -> BoxFuture<'a, Result<ReadResponse, HandlerError>> {
        Box::pin(self.read(request))
    }

    fn write_boxed<'a>(
        &'a self,
        request: &'a Request,
    ) -> BoxFuture<'a, Result<WriteResponse, HandlerError>> {
        Box::pin(self.write(request))
    }
}

impl Handler for Box<dyn DynHandler> {
    async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        self.read_boxed(request).await
    }

    async fn write(&self, request: &Request) -> Result<WriteResponse, HandlerError> {
        self.write_boxed(request).await
    }
}

impl Handler for std::sync::Arc<dyn DynHandler> {
    async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        self.read_boxed(request).await
    }

    async fn write(&self, request: &Request) -> Result<WriteResponse, HandlerError> {
        self.write_boxed(request).await
    }
}

/// A shared handler is a handler (one handler object behind several servers).
impl<H: Handler> Handler for std::sync::Arc<H> {
    async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        H::read(self, request).await
    }

    async fn write(&self, request: &Request) -> Result<WriteResponse, HandlerError> {
        H::write(self, request).await
    }
}

/// A [`Handler`] as the shared server sees it.
pub(crate) struct Bridge<H>(pub(crate) H);

impl<H: Handler> Service for Bridge<H> {
    type Data = Data<'static>;

    async fn read(&self, request: &Request) -> Result<Answer<Self::Data>, HandlerError> {
        Ok(self.0.read(request).await?.0)
    }

    async fn write(&self, request: &Request) -> Result<Answer<Self::Data>, HandlerError> {
        Ok(self.0.write(request).await?.0)
    }
}

/// What a read request returns: a reader and, if known, its size (sent as `tsize`).
pub struct ReadResponse(Answer<Data<'static>>);

impl fmt::Debug for ReadResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ReadResponse");
        d.field("size", &self.0.size).finish_non_exhaustive()
    }
}

impl ReadResponse {
    /// Serve what `reader` yields; `size`, if known, answers a `tsize` request.
    pub fn new(reader: impl AsyncRead + Send + 'static, size: Option<u64>) -> Self {
        ReadResponse(Answer::new(Data::Source(Box::pin(reader)), size))
    }

    /// Serve these bytes.
    pub fn from_bytes(data: impl AsRef<[u8]> + Unpin + Send + 'static) -> Self {
        let size = data.as_ref().len() as u64;
        Self::new(Cursor::new(data), Some(size))
    }

    /// Negotiate this transfer under `limits` instead of the server's (start from
    /// [`Request::limits`]).
    pub fn with_limits(mut self, limits: OptionLimits) -> Self {
        self.0.limits = Some(limits);
        self
    }
}

/// What a write request writes into: a sink, and what to do once every byte is in it.
///
/// The upload succeeded when the sink flushed and closed without error and the completion
/// (if any) returned `Ok`; only then does the client get its final ACK. A failed or abandoned
/// upload just drops the response: clean up in `Drop`.
pub struct WriteResponse(Answer<Data<'static>>);

impl fmt::Debug for WriteResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteResponse").finish_non_exhaustive()
    }
}

impl WriteResponse {
    /// Write the upload into `writer`.
    pub fn new(writer: impl AsyncWrite + Send + 'static) -> Self {
        WriteResponse(Answer::new(Data::Sink(Box::pin(writer), true), None))
    }

    /// Run `f` after the last byte is written and flushed, before the final ACK (e.g. move
    /// the file into place). An error fails the upload with that TFTP error.
    pub fn on_complete<F, Fut>(mut self, f: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.0.complete = Some(Box::new(move || Box::pin(f())));
        self
    }

    /// Negotiate this transfer under `limits` instead of the server's.
    pub fn with_limits(mut self, limits: OptionLimits) -> Self {
        self.0.limits = Some(limits);
        self
    }
}
