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

/// A [`Handler`] as the shared server sees it: each call runs on the I/O pool.
pub(crate) struct Bridge<H> {
    pub(crate) handler: Arc<H>,
    pub(crate) pool: Pool,
}

impl<H: Handler> Service for Bridge<H> {
    type Data = Data<'static>;

    async fn read(&self, request: &Request) -> Result<Answer<Self::Data>, HandlerError> {
        let (handler, request) = (Arc::clone(&self.handler), request.clone());
        let response = self.pool.run(move || Ok(handler.read(&request))).await??;
        let data = match response.in_memory {
            true => Data::Reader(response.reader),
            false => Data::Source(Source::new(self.pool.clone(), response.reader)),
        };
        let mut answer = Answer::new(data, response.size);
        answer.limits = response.limits;
        Ok(answer)
    }

    async fn write(&self, request: &Request) -> Result<Answer<Self::Data>, HandlerError> {
        let (handler, request) = (Arc::clone(&self.handler), request.clone());
        let response = self.pool.run(move || Ok(handler.write(&request))).await??;
        let data = Data::Sink(Sink::new(self.pool.clone(), response.writer));
        let mut answer = Answer::new(data, None);
        answer.limits = response.limits;
        let pool = self.pool.clone();
        answer.complete = response.complete.map(|f| -> Completion {
            Box::new(move || Box::pin(async move { pool.run(move || Ok(f())).await? }))
        });
        Ok(answer)
    }
}

/// What a read request returns: a reader and, if known, its size (sent as `tsize`).
///
/// The reader is read on the I/O thread pool, a chunk of 64 KiB ahead of the transfer (each
/// chunk is read until full or the end), so it may block; the session copies blocks from
/// memory. Bytes given to [`ReadResponse::from_bytes`] are copied in place.
pub struct ReadResponse {
    reader: Reader<'static>,
    size: Option<u64>,
    limits: Option<OptionLimits>,
    in_memory: bool,
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
        let (reader, limits, in_memory) = (Box::new(reader), None, false);
        ReadResponse {
            reader,
            size,
            limits,
            in_memory,
        }
    }

    /// Serve these bytes.
    pub fn from_bytes(data: impl AsRef<[u8]> + Send + 'static) -> Self {
        let size = data.as_ref().len() as u64;
        let in_memory = true;
        ReadResponse {
            in_memory,
            ..Self::new(Cursor::new(data), Some(size))
        }
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
/// The sink is written on the I/O thread pool in chunks of 64 KiB (blocks are acknowledged
/// once buffered; a write error fails the transfer at the block that fills the chunk). The
/// upload succeeded when the last chunk was written, the sink flushed and the completion (if
/// any) returned `Ok`; only then does the client get its final ACK. A failed or abandoned
/// upload just drops the response: clean up in `Drop`.
pub struct WriteResponse {
    writer: Writer<'static>,
    complete: Option<Box<dyn FnOnce() -> Result<(), HandlerError> + Send>>,
    limits: Option<OptionLimits>,
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
    /// the file into place), on the I/O pool. An error fails the upload with that TFTP error.
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
