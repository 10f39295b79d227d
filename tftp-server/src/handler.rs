//! The handler a server is built around (fbtftp's `BaseHandler` / `ResponseData`), written
//! once for every async runtime: `tftp-tokio` and `tftp-async-std` re-export these types, so
//! a handler written against one runs on the other unchanged.
//!
//! A response serves from any reader and writes into any writer of either I/O trait family:
//! futures-io's `AsyncRead`/`AsyncWrite` (async-std, smol, `futures`) and, with the `tokio`
//! feature, tokio's. [`ReadResponse::new`] and [`WriteResponse::new`] take both; which one a
//! type implements is inferred (a type implementing both, such as `std::io::Cursor`, needs
//! [`ReadResponse::from_bytes`] instead).

use std::fmt;
use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tftp_proto::OptionLimits;

use crate::file::{FileSource, Seekable};
use crate::request::{HandlerError, Request};
use crate::runtime::{self, Answer};

/// Decides what each request gets. One handler serves every session, concurrently.
///
/// ```
/// use tftp_server::{Handler, HandlerError, ReadResponse, Request};
///
/// /// Serves a generated iPXE script naming the client's address.
/// struct PerMachine;
///
/// impl Handler for PerMachine {
///     async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
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
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Handler`] as a trait object: every handler is a `DynHandler`, and `Box<dyn DynHandler>`
/// and `Arc<dyn DynHandler>` are handlers, so a server can pick its handler at run time (from
/// configuration, per deployment) at the cost of one boxed future per request.
///
/// ```
/// use tftp_server::{DynHandler, Handler, HandlerError, ReadResponse, Request};
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

/// What a read request returns: a reader and, if known, its size (sent as `tsize`).
pub struct ReadResponse(ReadParts);

impl fmt::Debug for ReadResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ReadResponse");
        d.field("size", &self.0.size).finish_non_exhaustive()
    }
}

impl ReadResponse {
    /// Serve what `reader` yields (a futures-io or, with the `tokio` feature, a tokio
    /// `AsyncRead`); `size`, if known, answers a `tsize` request. A reader that yields more
    /// or less than `size` fails the transfer instead of passing for a whole file.
    pub fn new<M>(reader: impl IntoReader<'static, M>, size: Option<u64>) -> Self {
        ReadResponse(ReadParts::new(Source::Reader(reader.into_reader()), size))
    }

    /// Serve these bytes. They are read where the session asks: it keeps one batch of blocks,
    /// not its window, and takes a lost block from `data` again.
    pub fn from_bytes(data: impl AsRef<[u8]> + Unpin + Send + 'static) -> Self {
        let size = data.as_ref().len() as u64;
        ReadResponse(ReadParts::new(
            Source::Bytes(Bytes(Box::new(data))),
            Some(size),
        ))
    }

    /// Serve a local file of `size` bytes from its current position, read in place on the
    /// session's task, straight into its block buffer.
    ///
    /// A read from the page cache takes about a microsecond: cheaper than a hop to a blocking
    /// pool per block. The file's descriptor is shared with every other transfer of the same
    /// file, and small blocks are read in 16 KiB chunks shared by its readers (see
    /// [`FileSource`]). Boot images are read again and again, so they are in the page cache;
    /// a file on slow or network storage holds a runtime thread for as long as a read takes
    /// (serve those with [`ReadResponse::new`] and a reader on a blocking pool). A regular
    /// file is read where the session asks: it keeps one batch of blocks rather than its
    /// window, and reads a lost block again (a block that comes out a different length the
    /// second time, the file having changed, ends the transfer with ERROR 0).
    pub fn from_file(file: std::fs::File, size: Option<u64>) -> Self {
        ReadResponse(ReadParts::new(Source::File(FileSource::new(file)), size))
    }

    /// Negotiate this transfer under `limits` instead of the server's (start from
    /// [`Request::limits`]).
    pub fn with_limits(mut self, limits: OptionLimits) -> Self {
        self.0.limits = Some(limits);
        self
    }

    /// This response taken apart: for a server that asks its handlers on an async runtime and
    /// moves the data on another engine (`tftpd` transfers on `tftp-blocking`'s event loops:
    /// a file or bytes are read in place there, any other reader is polled to completion
    /// block by block on its I/O pool).
    pub fn into_parts(self) -> ReadParts {
        self.0
    }

    pub(crate) fn into_answer(self) -> Answer<Data<'static>> {
        let ReadParts {
            source,
            size,
            limits,
        } = self.0;
        let data = match source {
            Source::File(file) => match Seekable::file(file) {
                Ok(file) => Data::At(file),
                Err(file) => Data::Source(Box::pin(InlineFile(file))),
            },
            Source::Bytes(bytes) => Data::At(Seekable::bytes(bytes)),
            Source::Reader(reader) => Data::Source(reader),
        };
        let mut answer = Answer::new(data, size);
        answer.limits = limits;
        answer
    }
}

/// A [`ReadResponse`] taken apart ([`ReadResponse::into_parts`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct ReadParts {
    /// What is sent.
    pub source: Source,
    /// Its size, if known (answers `tsize`).
    pub size: Option<u64>,
    /// Per-request option limits, replacing the server's.
    pub limits: Option<OptionLimits>,
}

impl ReadParts {
    fn new(source: Source, size: Option<u64>) -> Self {
        let limits = None;
        ReadParts {
            source,
            size,
            limits,
        }
    }
}

/// What a [`ReadResponse`] sends, as it was given.
pub enum Source {
    /// A local file ([`ReadResponse::from_file`]).
    File(FileSource),
    /// Bytes in memory ([`ReadResponse::from_bytes`]).
    Bytes(Bytes),
    /// Any other reader ([`ReadResponse::new`]).
    Reader(BoxReader<'static>),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(file) => f.debug_tuple("File").field(file).finish(),
            Source::Bytes(bytes) => bytes.fmt(f),
            Source::Reader(_) => f.write_str("Reader"),
        }
    }
}

/// The bytes of [`ReadResponse::from_bytes`], whatever type held them.
pub struct Bytes(Box<dyn AsRef<[u8]> + Unpin + Send>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.as_ref().len())
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

/// What a write request writes into: a sink, and what to do once every byte is in it.
///
/// The upload succeeded when the sink flushed and closed without error and the completion
/// (if any) returned `Ok`; only then does the client get its final ACK. A failed or abandoned
/// upload just drops the response: clean up in `Drop`.
pub struct WriteResponse(WriteParts);

impl fmt::Debug for WriteResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteResponse").finish_non_exhaustive()
    }
}

impl WriteResponse {
    /// Write the upload into `writer` (a futures-io or, with the `tokio` feature, a tokio
    /// `AsyncWrite`); it is flushed and closed after the last block.
    pub fn new<M>(writer: impl IntoWriter<'static, M>) -> Self {
        WriteResponse(WriteParts {
            sink: writer.into_writer(),
            complete: None,
            limits: None,
        })
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

    /// This response taken apart (see [`ReadResponse::into_parts`]): the sink is to be
    /// written, flushed and closed, then the completion run, before the final ACK.
    pub fn into_parts(self) -> WriteParts {
        self.0
    }

    pub(crate) fn into_answer(self) -> Answer<Data<'static>> {
        let WriteParts {
            sink,
            complete,
            limits,
        } = self.0;
        let mut answer = Answer::new(Data::Sink(sink, true), None);
        (answer.limits, answer.complete) = (limits, complete);
        answer
    }
}

/// A [`WriteResponse`] taken apart ([`WriteResponse::into_parts`]).
#[non_exhaustive]
pub struct WriteParts {
    /// Where the upload goes; flush and close it after the last block.
    pub sink: BoxWriter<'static>,
    /// Run after the sink is closed, before the final ACK.
    pub complete: Option<runtime::Completion>,
    /// Per-request option limits, replacing the server's.
    pub limits: Option<OptionLimits>,
}

impl fmt::Debug for WriteParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("WriteParts");
        d.field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// A boxed futures-io reader.
pub type BoxReader<'a> = Pin<Box<dyn AsyncRead + Send + 'a>>;
/// A boxed futures-io writer.
pub type BoxWriter<'a> = Pin<Box<dyn AsyncWrite + Send + 'a>>;

/// A reader a response or a client can send from. `M` is [`FuturesIo`] or [`TokioIo`]: it
/// only tells the two trait families apart, and is inferred.
pub trait IntoReader<'a, M>: Send + 'a {
    /// As a futures-io reader.
    fn into_reader(self) -> BoxReader<'a>;
}

/// A writer a response or a client can store into (see [`IntoReader`] for `M`).
pub trait IntoWriter<'a, M>: Send + 'a {
    /// As a futures-io writer.
    fn into_writer(self) -> BoxWriter<'a>;
}

/// Marks futures-io readers and writers (see [`IntoReader`]).
#[derive(Debug)]
pub enum FuturesIo {}

/// Marks tokio readers and writers (see [`IntoReader`]).
#[derive(Debug)]
pub enum TokioIo {}

impl<'a, R: AsyncRead + Send + 'a> IntoReader<'a, FuturesIo> for R {
    fn into_reader(self) -> BoxReader<'a> {
        Box::pin(self)
    }
}

impl<'a, W: AsyncWrite + Send + 'a> IntoWriter<'a, FuturesIo> for W {
    fn into_writer(self) -> BoxWriter<'a> {
        Box::pin(self)
    }
}

#[cfg(feature = "tokio")]
mod from_tokio {
    use super::*;

    pin_project_lite::pin_project! {
        /// A tokio reader or writer in futures-io traits.
        pub(super) struct FromTokio<T> {
            #[pin]
            inner: T,
        }
    }

    impl<'a, R: tokio::io::AsyncRead + Send + 'a> IntoReader<'a, TokioIo> for R {
        fn into_reader(self) -> BoxReader<'a> {
            Box::pin(FromTokio { inner: self })
        }
    }

    impl<'a, W: tokio::io::AsyncWrite + Send + 'a> IntoWriter<'a, TokioIo> for W {
        fn into_writer(self) -> BoxWriter<'a> {
            Box::pin(FromTokio { inner: self })
        }
    }

    impl<T: tokio::io::AsyncRead> AsyncRead for FromTokio<T> {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let mut buf = tokio::io::ReadBuf::new(buf);
            match self.project().inner.poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        }
    }

    impl<T: tokio::io::AsyncWrite> AsyncWrite for FromTokio<T> {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.project().inner.poll_write(cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.project().inner.poll_flush(cx)
        }

        fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.project().inner.poll_shutdown(cx)
        }
    }
}

/// A local file read in place (see [`ReadResponse::from_file`]).
struct InlineFile(FileSource);

impl AsyncRead for InlineFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.0.read(buf))
    }
}

/// A session's data: a source to send from, or a sink to store into and whether to close it
/// after the last block (a server's upload sink: yes; a client's destination: no).
pub enum Data<'a> {
    /// Read requests, client uploads.
    Source(BoxReader<'a>),
    /// Read requests of a seekable source, read in place (no await: the page cache, or
    /// memory) where the session asks.
    At(Seekable),
    /// Write requests, client downloads.
    Sink(BoxWriter<'a>, bool),
}

impl fmt::Debug for Data<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Data::Source(_) => "Source",
            Data::At(Seekable::File(_)) => "File",
            Data::At(Seekable::Bytes(..)) => "Bytes",
            Data::Sink(..) => "Sink",
        })
    }
}

impl runtime::Data for Data<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Data::Source(source) => source.read(buf).await,
            Data::At(at) => at.read(buf),
            Data::Sink(..) => Ok(0),
        }
    }

    fn is_seekable(&self) -> bool {
        matches!(self, Data::At(_))
    }

    async fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Data::At(at) => at.read_at(offset, buf),
            other => other.read(buf).await,
        }
    }

    async fn write(&mut self, data: &[u8], last: bool) -> io::Result<()> {
        let Data::Sink(sink, close) = self else {
            return Ok(());
        };
        sink.write_all(data).await?;
        if last {
            sink.flush().await?;
            if *close {
                sink.close().await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn responses_come_apart_as_they_were_given() {
        let limits = OptionLimits {
            max_blksize: 1024,
            ..OptionLimits::default()
        };
        let parts = ReadResponse::from_bytes(b"abc".to_vec())
            .with_limits(limits)
            .into_parts();
        assert!(matches!(&parts.source, Source::Bytes(b) if b.as_ref() == b"abc"));
        assert_eq!((parts.size, parts.limits), (Some(3), Some(limits)));

        let file = tempfile::tempfile().unwrap();
        let parts = ReadResponse::from_file(file, Some(0)).into_parts();
        assert!(matches!(parts.source, Source::File(_)));
        assert_eq!((parts.size, parts.limits), (Some(0), None));

        let reader = futures_lite::io::Cursor::new(vec![1u8; 10]);
        let parts = ReadResponse::new(reader, None).into_parts();
        assert!(matches!(parts.source, Source::Reader(_)));

        let parts = WriteResponse::new(futures_lite::io::sink())
            .on_complete(|| async { Err(HandlerError::not_found()) })
            .into_parts();
        let complete = parts.complete.unwrap();
        let done = futures_lite::future::block_on(complete());
        assert_eq!(done.unwrap_err(), HandlerError::not_found());
    }

    /// Taken apart or not, a response serves the same bytes.
    #[test]
    fn bytes_are_served_from_the_answer() {
        use crate::runtime::Data as _;
        let answer = ReadResponse::from_bytes(b"hello".to_vec()).into_answer();
        let mut data = answer.data;
        let mut buf = [0u8; 16];
        let n = futures_lite::future::block_on(data.read(&mut buf)).unwrap();
        assert_eq!(&buf[..n], b"hello");
    }
}
