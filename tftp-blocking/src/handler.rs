//! The handler a server is built around (fbtftp's `BaseHandler` / `ResponseData`), blocking.

use std::fs::File;
use std::io::{Read, Write};

use tftp_proto::OptionLimits;
use tftp_server::file::{FileSource, Seekable};
use tftp_server::{HandlerError, Request};

use crate::data::{Data, OnComplete, Reader, Sink, Source, Writer};

/// Decides what each request gets. One handler serves every session; [`read`](Handler::read)
/// and [`write`](Handler::write) run on the server's I/O thread pool, never on an event loop
/// thread, so they may block (open files, ask a database, fetch from an HTTP origin).
/// With [`read_on_loop`](Handler::read_on_loop) a handler answers the reads that need no
/// waiting on the event loop itself, without a pool thread.
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

    /// Answer a read request on the event loop that received it, when that costs no more
    /// than the loop's own work: `Some(answer)`, and [`read`](Handler::read) is not called.
    /// `None` (the default, for every request) has `read` answer it on an I/O pool thread.
    ///
    /// Return `None` for anything that may wait: the network, a lock held for long, a
    /// directory to scan, a file system that may hang. Every transfer of the loop waits
    /// while this runs. What a local file costs is fine: resolving a name and opening a file
    /// under a local root is a few system calls, and the loop reads files' data itself
    /// ([`ReadResponse::file`]). [`DirHandler`](crate::DirHandler) answers here every read
    /// that needs no directory scan.
    ///
    /// A read answered here starts its transfer without a hop to the pool and back (two
    /// thread wake-ups): when every read is answered here, a burst of a thousand requests
    /// starts no pool thread at all. A panic here fails the request with ERROR 0 "Server
    /// error", as one in `read` does.
    ///
    /// ```
    /// use tftp_blocking::{Handler, HandlerError, ReadResponse, Request};
    ///
    /// /// Serves a generated iPXE script naming the client's address: built in memory,
    /// /// nothing to wait for, so the loop answers it.
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
    ///
    ///     fn read_on_loop(
    ///         &self,
    ///         request: &Request,
    ///     ) -> Option<Result<ReadResponse, HandlerError>> {
    ///         Some(self.read(request))
    ///     }
    /// }
    /// ```
    fn read_on_loop(&self, request: &Request) -> Option<Result<ReadResponse, HandlerError>> {
        let _ = request;
        None
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

    fn read_on_loop(&self, request: &Request) -> Option<Result<ReadResponse, HandlerError>> {
        match self {
            Some(h) => h.read_on_loop(request),
            None => Some(Err(HandlerError::not_found())),
        }
    }
}

/// What a handler returned.
pub(crate) enum Body {
    /// Read on the event loop: a file (the page cache), where the session asks if it is a
    /// regular one.
    File(FileSource),
    /// Read on the event loop: bytes in memory, where the session asks.
    Bytes(Seekable),
    /// Read on the I/O pool.
    Reader(Reader),
    /// Written on the I/O pool.
    Writer(Writer, Option<OnComplete>),
}

/// A handler's answer to an accepted request.
pub(crate) struct Response {
    pub(crate) body: Body,
    /// The source's size, if known (answers `tsize`).
    pub(crate) size: Option<u64>,
    /// Per-request option limits, replacing the server's.
    pub(crate) limits: Option<OptionLimits>,
}

impl Response {
    fn new(body: Body, size: Option<u64>) -> Self {
        let limits = None;
        Response { body, size, limits }
    }

    /// The session's data: handlers' readers and writers go to the pool.
    pub(crate) fn into_data(self) -> Data {
        match self.body {
            Body::Bytes(bytes) => Data::Seekable(bytes),
            Body::File(file) => match Seekable::file(file) {
                Ok(file) => Data::Seekable(file),
                Err(file) => Data::File(file),
            },
            Body::Reader(reader) => Data::Source(Box::new(Source::new(reader))),
            Body::Writer(writer, complete) => Data::Sink(Box::new(Sink::new(writer, complete))),
        }
    }
}

/// What a read request returns: a reader and, if known, its size (sent as `tsize`).
///
/// The reader is read on the I/O thread pool, a small chunk ahead of the transfer (8 KiB, or 4
/// blocks if larger; each chunk is read until full or the end), so it may block; the session
/// copies blocks from memory. Each chunk costs a hop to the pool and back (two thread
/// wake-ups): a 64 MiB download at blksize 1468 takes about 1.3 times the server CPU of
/// reading 64 KiB chunks, and 2.5 times that of [`ReadResponse::file`]. Bytes given to
/// [`ReadResponse::from_bytes`] and files given to [`ReadResponse::file`] are read in place,
/// on the event loop.
pub struct ReadResponse(pub(crate) Response);

impl std::fmt::Debug for ReadResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("ReadResponse");
        d.field("size", &self.0.size).finish_non_exhaustive()
    }
}

impl ReadResponse {
    /// Serve what `reader` yields; `size`, if known, answers a `tsize` request.
    pub fn new(reader: impl Read + Send + 'static, size: Option<u64>) -> Self {
        ReadResponse(Response::new(Body::Reader(Box::new(reader)), size))
    }

    /// Serve these bytes. They are read where the session asks: its window is not copied
    /// (only the blocks of one batch are), and a lost block is taken from `data` again.
    pub fn from_bytes(data: impl AsRef<[u8]> + Send + 'static) -> Self {
        let size = Some(data.as_ref().len() as u64);
        ReadResponse(Response::new(Body::Bytes(Seekable::bytes(data)), size))
    }

    /// Serve a local file, read on the event loop thread straight into the session's window
    /// (no chunk, no pool job: files are read from the page cache, as tftpd-hpa does); `size`,
    /// if known, answers a `tsize` request. A file on a slow or network file system blocks the
    /// loop while it is read: give those to [`ReadResponse::new`] instead. The file is read
    /// from its current position; its descriptor is shared with every other transfer of the
    /// same file, and small blocks are read in chunks shared by its readers (see
    /// [`FileSource`]). A regular file is read where the session asks: the session keeps one
    /// batch of blocks, not its window (at windowsize 64 and blksize 65464, 64 KiB instead of
    /// 4 MiB), and reads a lost block again; a block that comes out a different length the
    /// second time (the file changed) ends the transfer with ERROR 0 "File changed while
    /// being sent".
    pub fn file(file: File, size: Option<u64>) -> Self {
        Self::from_file_source(FileSource::new(file), size)
    }

    /// Serve a file already wrapped as a [`FileSource`], as [`ReadResponse::file`] does (e.g.
    /// the source of an async handler's `ReadResponse::from_file`, taken apart with
    /// `into_parts`).
    pub fn from_file_source(source: FileSource, size: Option<u64>) -> Self {
        ReadResponse(Response::new(Body::File(source), size))
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
/// The sink is written on the I/O thread pool in chunks of 16 KiB (or 8 blocks if larger;
/// blocks are acknowledged once buffered; a write error fails the transfer at the block that
/// fills the chunk). The upload succeeded when the last chunk was written, the sink flushed and
/// the completion (if any) returned `Ok`; only then does the client get its final ACK. A failed
/// or abandoned upload just drops the response: clean up in `Drop`.
pub struct WriteResponse(pub(crate) Response);

impl std::fmt::Debug for WriteResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteResponse").finish_non_exhaustive()
    }
}

impl WriteResponse {
    /// Write the upload into `writer`.
    pub fn new(writer: impl Write + Send + 'static) -> Self {
        WriteResponse(Response::new(Body::Writer(Box::new(writer), None), None))
    }

    /// Run `f` after the last byte is written and flushed, before the final ACK (e.g. move
    /// the file into place), on the I/O pool. An error fails the upload with that TFTP error.
    pub fn on_complete(
        mut self,
        f: impl FnOnce() -> Result<(), HandlerError> + Send + 'static,
    ) -> Self {
        if let Body::Writer(_, complete) = &mut self.0.body {
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
