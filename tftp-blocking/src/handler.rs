//! The handler a server is built around (fbtftp's `BaseHandler` / `ResponseData`), blocking.

use std::io::{Cursor, Read, Write};
use std::sync::Arc;

use tftp_common::runtime::{Answer, Completion, Service};
use tftp_common::{HandlerError, Request};
use tftp_proto::OptionLimits;

use crate::data::{Data, Pool, Reader, Sink, Source, Writer};

/// Decides what each request gets. One handler serves every session; its methods run on the
/// server's I/O thread pool, never on a session thread, so they may block (open files, ask a
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

/// See [`WriteResponse::on_complete`].
type OnComplete = Box<dyn FnOnce() -> Result<(), HandlerError> + Send>;

/// What a handler returned, before the server lends it its pool.
enum Body {
    /// Served in place: never blocks.
    Bytes(Reader<'static>),
    Reader(Reader<'static>),
    Writer(Writer<'static>, Option<OnComplete>),
}

/// A [`Handler`] as the shared server sees it: each call runs on the I/O pool, and so does
/// the data it returns.
pub(crate) struct Bridge<H> {
    pub(crate) handler: Arc<H>,
    pub(crate) pool: Pool,
}

impl<H: Handler> Service for Bridge<H> {
    type Data = Data<'static>;

    async fn read(&self, request: &Request) -> Result<Answer<Self::Data>, HandlerError> {
        let (handler, request) = (Arc::clone(&self.handler), request.clone());
        let response = self.pool.run(move || Ok(handler.read(&request))).await??;
        Ok(self.on_pool(response.0))
    }

    async fn write(&self, request: &Request) -> Result<Answer<Self::Data>, HandlerError> {
        let (handler, request) = (Arc::clone(&self.handler), request.clone());
        let response = self.pool.run(move || Ok(handler.write(&request))).await??;
        Ok(self.on_pool(response.0))
    }
}

impl<H> Bridge<H> {
    fn on_pool(&self, answer: Answer<Body>) -> Answer<Data<'static>> {
        let pool = self.pool.clone();
        let (data, complete) = match answer.data {
            Body::Bytes(bytes) => (Data::Reader(bytes), None),
            Body::Reader(reader) => (Data::Source(Source::new(pool, reader)), None),
            Body::Writer(writer, complete) => {
                let complete = complete.map(|f| -> Completion {
                    let pool = pool.clone();
                    Box::new(move || Box::pin(async move { pool.run(move || Ok(f())).await? }))
                });
                (Data::Sink(Sink::new(pool, writer)), complete)
            }
        };
        let mut on_pool = Answer::new(data, answer.size);
        (on_pool.limits, on_pool.complete) = (answer.limits, complete);
        on_pool
    }
}

/// What a read request returns: a reader and, if known, its size (sent as `tsize`).
///
/// The reader is read on the I/O thread pool, a chunk of 64 KiB ahead of the transfer (each
/// chunk is read until full or the end), so it may block; the session copies blocks from
/// memory. Bytes given to [`ReadResponse::from_bytes`] are copied in place.
pub struct ReadResponse(Answer<Body>);

impl std::fmt::Debug for ReadResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("ReadResponse");
        d.field("size", &self.0.size).finish_non_exhaustive()
    }
}

impl ReadResponse {
    /// Serve what `reader` yields; `size`, if known, answers a `tsize` request.
    pub fn new(reader: impl Read + Send + 'static, size: Option<u64>) -> Self {
        ReadResponse(Answer::new(Body::Reader(Box::new(reader)), size))
    }

    /// Serve these bytes.
    pub fn from_bytes(data: impl AsRef<[u8]> + Send + 'static) -> Self {
        let size = Some(data.as_ref().len() as u64);
        ReadResponse(Answer::new(Body::Bytes(Box::new(Cursor::new(data))), size))
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
/// The sink is written on the I/O thread pool in chunks of 64 KiB (blocks are acknowledged
/// once buffered; a write error fails the transfer at the block that fills the chunk). The
/// upload succeeded when the last chunk was written, the sink flushed and the completion (if
/// any) returned `Ok`; only then does the client get its final ACK. A failed or abandoned
/// upload just drops the response: clean up in `Drop`.
pub struct WriteResponse(Answer<Body>);

impl std::fmt::Debug for WriteResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteResponse").finish_non_exhaustive()
    }
}

impl WriteResponse {
    /// Write the upload into `writer`.
    pub fn new(writer: impl Write + Send + 'static) -> Self {
        WriteResponse(Answer::new(Body::Writer(Box::new(writer), None), None))
    }

    /// Run `f` after the last byte is written and flushed, before the final ACK (e.g. move
    /// the file into place), on the I/O pool. An error fails the upload with that TFTP error.
    pub fn on_complete(
        mut self,
        f: impl FnOnce() -> Result<(), HandlerError> + Send + 'static,
    ) -> Self {
        if let Body::Writer(_, complete) = &mut self.0.data {
            *complete = Some(Box::new(f));
        }
        self
    }

    /// Negotiate this transfer under `limits` instead of the server's.
    pub fn with_limits(mut self, limits: OptionLimits) -> Self {
        self.0.limits = Some(limits);
        self
    }
}
