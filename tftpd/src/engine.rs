//! Async handlers on tftp-blocking's epoll event loops: [`OnLoops`] makes any
//! [`tftp_tokio::Handler`] a [`tftp_blocking::Handler`], so that a server keeps writing its
//! handlers once, with tokio (an HTTP client, async files), while its transfers run on the
//! engine that costs least per packet.
//!
//! Measured with `benches/e2e/ab.sh` (1,000 clients × 1 MiB at once, blksize 1468, from one
//! machine): the blocking event loops serve about 1.3 times the sessions per second of
//! tftp-tokio's task per session, with 0.75 times its CPU per MB. The event loop drains each
//! session's sans-IO state after every datagram, with one level-triggered `epoll_wait` for
//! every ready socket of the loop and no task wake-up, waker or timer entry per packet.
//!
//! What goes where:
//! - the handler's `read`/`write` run on the server's I/O pool threads, each awaited with
//!   [`Handle::block_on`] (the future is polled on that pool thread; its I/O and timers are
//!   the runtime's), so a slow handler holds one pool thread, not a loop;
//! - except, with [`OnLoops::reads_on_loops`], a read whose future completes at its first
//!   poll on the loop that received it (a local file opened, a template rendered: nothing
//!   waited for), answered there without a pool thread, as tftp-tokio answers it on its
//!   runtime thread; `tftpd` turns it on when it has no `--http-origin`;
//! - a file ([`ReadResponse::from_file`](tftp_tokio::ReadResponse::from_file)) and bytes
//!   ([`ReadResponse::from_bytes`](tftp_tokio::ReadResponse::from_bytes)) are read in place
//!   on the event loop, as on tokio;
//! - any other reader, and every upload's writer, is polled on the I/O pool a chunk at a
//!   time (the pool's read-ahead and write-behind of [`tftp_blocking::ReadResponse::new`] and
//!   [`tftp_blocking::WriteResponse::new`]). A reader that waits long for its bytes (an HTTP
//!   origin) holds a pool thread while it waits: such sources are better served by
//!   tftp-tokio's tasks, which is why `tftpd --engine auto` uses the event loops only when
//!   there is no `--http-origin`.

use std::future::Future;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use tftp_server::{BoxReader, BoxWriter, HandlerError, Request, Source};
use tokio::runtime::Handle;

/// A [`tftp_tokio::Handler`] as a [`tftp_blocking::Handler`] (see the [module](self)).
///
/// ```no_run
/// use tftpd::engine::OnLoops;
/// use tftp_blocking::{Server, ServerOptions};
/// use tftp_tokio::DirHandler;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let runtime = tokio::runtime::Runtime::new()?;
/// let handler = OnLoops::new(DirHandler::new("/srv/tftp", Default::default())?, runtime.handle().clone());
/// let options = ServerOptions::new().listen("[::]:69".parse()?);
/// Server::bind(handler, options)?.workers(2).serve()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct OnLoops<H> {
    handler: H,
    runtime: Handle,
    reads_on_loops: bool,
}

impl<H> OnLoops<H> {
    /// `handler`, awaited on the threads of tftp-blocking's I/O pool with the I/O and timers
    /// of `runtime` (which must keep running: a current-thread runtime must be inside its
    /// `block_on`, as `tftpd`'s main thread is).
    pub fn new(handler: H, runtime: Handle) -> Self {
        OnLoops {
            handler,
            runtime,
            reads_on_loops: false,
        }
    }

    /// Poll each read's future once on the event loop that received the request, in
    /// `runtime`'s context ([`tftp_blocking::Handler::read_on_loop`]): an answer ready at
    /// that poll (it waited for nothing: a file under a local root opened, a template
    /// rendered, a refusal) starts the transfer there, without a pool thread; a future
    /// still pending is dropped, and the read asked again on the pool, from the start.
    ///
    /// For handlers whose futures do only quick work when polled: every transfer of the loop
    /// waits while one is. tftp-tokio polls them on its runtime thread the same way (its
    /// [`DirHandler`](tftp_tokio::DirHandler) opens files there, and scans a directory on a
    /// blocking pool). A handler that waits for the network (an HTTP origin) would be polled
    /// twice, once for nothing: `tftpd` turns this on only without `--http-origin`. Off by
    /// default.
    ///
    /// Measured with `benches/e2e/ab.sh` (1,000 clients × 1 MiB at once, one address): no
    /// I/O pool thread starts (4 threads at the peak instead of 8–10, with the session log;
    /// peak PSS 3.30 → 3.17–3.25 MiB; CPU level), see
    /// `benches/e2e/results/2026-12-07-reads-on-loops.txt`.
    pub fn reads_on_loops(mut self, on: bool) -> Self {
        self.reads_on_loops = on;
        self
    }
}

/// A read's answer as tftp-blocking takes it: files and bytes read on the loop, any other
/// reader on the pool.
fn blocking_read(
    response: tftp_tokio::ReadResponse,
    runtime: &Handle,
) -> tftp_blocking::ReadResponse {
    let parts = response.into_parts();
    let response = match parts.source {
        Source::File(file) => tftp_blocking::ReadResponse::from_file_source(file, parts.size),
        Source::Bytes(bytes) => tftp_blocking::ReadResponse::from_bytes(bytes),
        Source::Reader(reader) => {
            let runtime = runtime.clone();
            tftp_blocking::ReadResponse::new(BlockingReader { reader, runtime }, parts.size)
        }
    };
    match parts.limits {
        Some(limits) => response.with_limits(limits),
        None => response,
    }
}

impl<H: tftp_tokio::Handler> tftp_blocking::Handler for OnLoops<H> {
    fn read(&self, request: &Request) -> Result<tftp_blocking::ReadResponse, HandlerError> {
        let response = self.runtime.block_on(self.handler.read(request))?;
        Ok(blocking_read(response, &self.runtime))
    }

    fn read_on_loop(
        &self,
        request: &Request,
    ) -> Option<Result<tftp_blocking::ReadResponse, HandlerError>> {
        if !self.reads_on_loops {
            return None;
        }
        // In the runtime's context: what the future registers (a timer, a socket) is the
        // runtime's, as on a pool thread.
        let _context = self.runtime.enter();
        let mut read = std::pin::pin!(self.handler.read(request));
        match read.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(answer) => Some(answer.map(|r| blocking_read(r, &self.runtime))),
            Poll::Pending => None,
        }
    }

    fn write(&self, request: &Request) -> Result<tftp_blocking::WriteResponse, HandlerError> {
        let parts = self
            .runtime
            .block_on(self.handler.write(request))?
            .into_parts();
        let sink = Arc::new(Mutex::new(parts.sink));
        let writer = BlockingWriter {
            sink: Arc::clone(&sink),
            runtime: self.runtime.clone(),
        };
        let runtime = self.runtime.clone();
        let complete = parts.complete;
        // The async server closes its sink after the flush, then runs the completion: the
        // same order here, after tftp-blocking's flush.
        let response = tftp_blocking::WriteResponse::new(writer).on_complete(move || {
            let closed = runtime.block_on(lock(&sink).close());
            closed.map_err(|e| HandlerError::from(&e))?;
            match complete {
                Some(complete) => runtime.block_on(complete()),
                None => Ok(()),
            }
        });
        Ok(match parts.limits {
            Some(limits) => response.with_limits(limits),
            None => response,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An async reader read on a pool thread.
struct BlockingReader {
    reader: BoxReader<'static>,
    runtime: Handle,
}

impl Read for BlockingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.runtime.block_on(self.reader.read(buf))
    }
}

/// An async writer written on a pool thread; closed by the completion.
struct BlockingWriter {
    sink: Arc<Mutex<BoxWriter<'static>>>,
    runtime: Handle,
}

impl Write for BlockingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.runtime.block_on(lock(&self.sink).write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.runtime.block_on(lock(&self.sink).flush())
    }
}
