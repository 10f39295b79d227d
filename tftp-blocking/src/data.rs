//! Blocking calls off the session threads: the server's share of the `blocking` thread pool,
//! and a transfer's data on it — its source read ahead and its sink written in chunks, so
//! that a session copies blocks from and into memory and hops to a pool thread once per
//! chunk, not once per block.

use std::io::{self, BufRead, Cursor, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use async_lock::{Semaphore, SemaphoreGuardArc};
use blocking::Task;
use tftp_common::runtime;

/// Bytes per pool job: 64 KiB, one hop per 44 blocks of 1468 bytes. (32 KiB cost about 15%
/// more server CPU per transfer in `serve_dir` benchmarks.)
pub(crate) const CHUNK: usize = 64 * 1024;
/// Blocks per read-ahead job at least, so that large blocks (65464 bytes) do not cost one
/// pool hop each.
const BLOCKS_PER_CHUNK: usize = 4;

pub(crate) type Reader<'a> = Box<dyn Read + Send + 'a>;
pub(crate) type Writer<'a> = Box<dyn Write + Send + 'a>;
/// A chunk read, and the reader unless it reached the end.
type Chunk = io::Result<(Option<Reader<'static>>, Vec<u8>)>;

/// One server's share of the `blocking` crate's thread pool: at most as many of its calls at
/// once as it has permits ([`Server::io_threads`](crate::Server::io_threads)).
#[derive(Debug, Clone)]
pub(crate) struct Pool(pub(crate) Arc<Semaphore>);

impl Pool {
    /// Run `f` on the pool once a permit is free.
    pub(crate) async fn run<T, F>(&self, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        start(self.0.acquire_arc().await, f).await
    }
}

/// Start `f` on the pool, holding `permit`. A panic comes back as an error, which the client
/// sees as "Server error".
fn start<T, F>(permit: SemaphoreGuardArc, f: F) -> Task<io::Result<T>>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    blocking::unblock(move || {
        let _permit = permit;
        let panicked = |_| Err(io::Error::other("a blocking call panicked"));
        catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(panicked)
    })
}

/// `Drop` may block too (closing a connection): not on a session thread.
fn drop_on_pool<T: Send + 'static>(value: Option<T>) {
    if let Some(value) = value {
        blocking::unblock(move || drop(value)).detach();
    }
}

fn put(writer: &mut (dyn Write + Send + '_), data: &[u8], last: bool) -> io::Result<()> {
    writer.write_all(data)?;
    if last {
        writer.flush()?;
    }
    Ok(())
}

/// A session's data, as the shared server and client see it.
pub(crate) enum Data<'a> {
    /// Read in place: bytes in memory, or a client's own reader (its caller may block).
    Reader(Reader<'a>),
    /// Written in place: a client's own writer.
    Writer(Writer<'a>),
    /// A handler's reader, read on the pool.
    Source(Source),
    /// A handler's writer, written on the pool.
    Sink(Sink),
}

impl runtime::Data for Data<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Data::Reader(reader) => reader.read(buf),
            Data::Source(source) => source.read(buf).await,
            Data::Writer(_) | Data::Sink(_) => Ok(0),
        }
    }

    async fn write(&mut self, data: &[u8], last: bool) -> io::Result<()> {
        match self {
            Data::Writer(writer) => put(writer, data, last),
            Data::Sink(sink) => sink.write(data, last).await,
            Data::Reader(_) | Data::Source(_) => Ok(()),
        }
    }
}

/// A reader, read a chunk ahead on the pool: the next chunk is read while this one is sent.
/// At most two chunks in memory; a small file costs its size.
pub(crate) struct Source {
    pool: Pool,
    /// Between chunks; `None` while one is read, or after the end.
    reader: Option<Reader<'static>>,
    /// The next chunk, being read.
    next: Option<Task<Chunk>>,
    buf: Cursor<Vec<u8>>,
}

impl Source {
    pub(crate) fn new(pool: Pool, reader: Reader<'static>) -> Self {
        let (reader, next, buf) = (Some(reader), None, Cursor::default());
        Source {
            pool,
            reader,
            next,
            buf,
        }
    }

    /// Cancel-safe (the session drops a pending read when a datagram arrives): the running
    /// pool job stays in `next`, and the reader is taken only once a pool permit is held.
    async fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.fill_buf()?.is_empty() {
            if self.next.is_none() {
                if self.reader.is_none() {
                    return Ok(0);
                }
                let permit = self.pool.0.acquire_arc().await;
                let Some(reader) = self.reader.take() else {
                    return Ok(0);
                };
                self.next = Some(start(permit, fetch(reader, chunk_for(out.len()))));
            }
            let Some(next) = self.next.as_mut() else {
                continue;
            };
            let chunk = next.await;
            self.next = None;
            let (reader, chunk) = chunk?;
            (self.reader, self.buf) = (reader, Cursor::new(chunk));
        }
        // The next chunk, if a permit is free now (if not, it is read once this one is sent).
        if self.next.is_none() && self.reader.is_some() {
            if let Some(permit) = self.pool.0.try_acquire_arc() {
                self.next = self
                    .reader
                    .take()
                    .map(|reader| start(permit, fetch(reader, chunk_for(out.len()))));
            }
        }
        self.buf.read(out)
    }
}

/// The read-ahead chunk for reads of `block` bytes.
fn chunk_for(block: usize) -> usize {
    CHUNK.max(block.saturating_mul(BLOCKS_PER_CHUNK))
}

/// Read up to `len` bytes; keep the reader only if there may be more.
fn fetch(mut reader: Reader<'static>, len: usize) -> impl FnOnce() -> Chunk + Send + 'static {
    move || {
        let mut chunk = Vec::new();
        reader.by_ref().take(len as u64).read_to_end(&mut chunk)?;
        Ok(((chunk.len() == len).then_some(reader), chunk))
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        drop_on_pool(self.reader.take());
    }
}

/// A writer, written a chunk at a time on the pool: blocks are stored (acknowledged) once
/// buffered, except the one that completes a chunk, and the last, which wait for the write
/// (and the flush).
pub(crate) struct Sink {
    pool: Pool,
    /// `None` after a failure.
    writer: Option<Writer<'static>>,
    buf: Vec<u8>,
}

impl Sink {
    pub(crate) fn new(pool: Pool, writer: Writer<'static>) -> Self {
        let (writer, buf) = (Some(writer), Vec::new());
        Sink { pool, writer, buf }
    }

    async fn write(&mut self, data: &[u8], last: bool) -> io::Result<()> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK || last {
            let mut writer = self.writer.take().ok_or(io::ErrorKind::BrokenPipe)?;
            let mut chunk = std::mem::take(&mut self.buf);
            let write = move || {
                put(&mut writer, &chunk, last)?;
                chunk.clear();
                Ok((writer, chunk))
            };
            (self.writer, self.buf) = self.pool.run(write).await.map(|(w, b)| (Some(w), b))?;
        }
        Ok(())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        drop_on_pool(self.writer.take());
    }
}
