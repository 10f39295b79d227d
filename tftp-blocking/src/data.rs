//! A transfer's data, seen from its event loop: a source that fills blocks, a sink that stores
//! them. Neither blocks the loop: bytes in memory and files (the page cache) are read in place;
//! a handler's other readers are read a small chunk ahead on the I/O pool, and its writers
//! are written a chunk at a time on the pool. A block whose bytes are not there yet is
//! `Pending`, and the loop asks again when the pool's job is done.

use std::io::{self, Read, Write};
use std::task::Poll;
use std::thread;

use tftp_server::HandlerError;
use tftp_server::file::{FileSource, Seekable};

use crate::pool::{Done, Jobs, Pool, drop_on, server_error};

/// The least read-ahead chunk, and the least upload chunk is twice it: at blksize 1468 a
/// download holds at most two chunks (16 KiB), an upload one (16 KiB).
pub(crate) const CHUNK: usize = 8 * 1024;
/// Blocks per chunk at least, so that large blocks (65464 bytes) do not cost one pool job
/// each.
const BLOCKS_PER_CHUNK: usize = 4;

pub(crate) type Reader = Box<dyn Read + Send>;
pub(crate) type Writer = Box<dyn Write + Send>;
/// See [`crate::WriteResponse::on_complete`].
pub(crate) type OnComplete = Box<dyn FnOnce() -> Result<(), HandlerError> + Send>;

/// A chunk read on the pool, and the reader unless it reached the end.
pub(crate) type Chunk = thread::Result<io::Result<(Option<Reader>, Vec<u8>)>>;
/// A chunk written on the pool: the writer and the emptied buffer back.
pub(crate) type Written = thread::Result<Result<(Writer, Vec<u8>), HandlerError>>;

/// The read-ahead chunk for blocks of `block` bytes.
fn chunk_for(block: usize) -> usize {
    CHUNK.max(block.saturating_mul(BLOCKS_PER_CHUNK))
}

/// A session's data.
pub(crate) enum Data {
    /// A regular file (the page cache) or bytes in memory, read on the loop thread where the
    /// session asks (it keeps no copy of its window).
    Seekable(Seekable),
    /// Any other file (a pipe, a device), read on the loop thread as it is.
    File(FileSource),
    /// Read on the pool. Boxed, as `Sink`: every session keeps its `Data`, and the file
    /// variants above (most sessions) take half of what these two would make it.
    Source(Box<Source>),
    /// Written on the pool.
    Sink(Box<Sink>),
}

impl Data {
    /// Whether the source can be read again from any offset: the session is told so
    /// (`Session::set_source_seekable`) and fills from [`Data::fill`]'s `offset`.
    pub(crate) fn is_seekable(&self) -> bool {
        matches!(self, Data::Seekable(_))
    }

    /// Where a source read in place is (see [`Seekable::position`]): for the event loop's
    /// read of the state a batch's sessions will use (`Loop::prefetch_sessions`).
    pub(crate) fn position(&self) -> Option<u64> {
        match self {
            Data::Seekable(source) => Some(source.position()),
            Data::File(file) => file.position(),
            Data::Source(_) | Data::Sink(_) => None,
        }
    }

    /// Read source bytes into `out`, from `offset` (what the session asks: for a seekable
    /// source it may go back; for any other it is where the source is); `Ok(0)` at the end
    /// (a sink has none).
    pub(crate) fn fill(
        &mut self,
        out: &mut [u8],
        offset: u64,
        jobs: &Jobs<'_>,
    ) -> Poll<io::Result<usize>> {
        match self {
            // A regular file's reads are retried when interrupted (FileSource).
            Data::Seekable(source) => Poll::Ready(source.read_at(offset, out)),
            Data::File(file) => loop {
                match file.read(out) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    r => return Poll::Ready(r),
                }
            },
            Data::Source(source) => source.fill(out, jobs),
            Data::Sink(_) => Poll::Ready(Ok(0)),
        }
    }

    /// Store a received block; with `last`, also flush and complete the upload.
    pub(crate) fn store(
        &mut self,
        data: &[u8],
        last: bool,
        jobs: &Jobs<'_>,
    ) -> Poll<Result<(), HandlerError>> {
        match self {
            Data::Sink(sink) => sink.store(data, last, jobs),
            Data::Seekable(_) | Data::File(_) | Data::Source(_) => Poll::Ready(Ok(())),
        }
    }

    /// A pool job of this session is done.
    pub(crate) fn done(&mut self, done: Done, pool: &Pool) {
        match (self, done) {
            (Data::Source(source), Done::Chunk(chunk)) => source.fetched(chunk),
            (Data::Sink(sink), Done::Written(written)) => sink.written(written),
            (_, other) => drop_on(pool, other),
        }
    }

    /// The end of the session: readers and writers are dropped on the pool (closing one may
    /// block), in-place data here.
    pub(crate) fn close(self, pool: &Pool) {
        match self {
            Data::Seekable(source) => drop(source),
            Data::File(file) => drop(file),
            Data::Source(s) => {
                if let Some(reader) = s.reader {
                    drop_on(pool, reader);
                }
            }
            Data::Sink(s) => {
                if let Some(writer) = s.writer {
                    drop_on(pool, writer);
                }
            }
        }
    }
}

/// A handler's reader, read on the pool one chunk ahead: the next chunk is read while this
/// one is sent. At most two chunks in memory.
pub(crate) struct Source {
    /// Between reads; `None` while a chunk is read, or after the end.
    reader: Option<Reader>,
    reading: bool,
    current: Vec<u8>,
    pos: usize,
    next: Option<Vec<u8>>,
    /// An emptied chunk, to read the next one into.
    spare: Option<Vec<u8>>,
    error: Option<io::Error>,
}

impl Source {
    pub(crate) fn new(reader: Reader) -> Self {
        Source {
            reader: Some(reader),
            reading: false,
            current: Vec::new(),
            pos: 0,
            next: None,
            spare: None,
            error: None,
        }
    }

    fn fill(&mut self, out: &mut [u8], jobs: &Jobs<'_>) -> Poll<io::Result<usize>> {
        loop {
            if self.pos < self.current.len() {
                let n = out.len().min(self.current.len() - self.pos);
                out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
                self.pos += n;
                self.read_ahead(out.len(), jobs);
                return Poll::Ready(Ok(n));
            }
            if let Some(next) = self.next.take() {
                self.spare = Some(std::mem::replace(&mut self.current, next));
                self.pos = 0;
                continue;
            }
            if let Some(e) = self.error.take() {
                return Poll::Ready(Err(e));
            }
            if self.reading {
                return Poll::Pending;
            }
            if self.reader.is_none() {
                return Poll::Ready(Ok(0));
            }
            self.read_ahead(out.len(), jobs);
        }
    }

    /// Start reading the next chunk, unless one is read or waiting already.
    fn read_ahead(&mut self, block: usize, jobs: &Jobs<'_>) {
        if self.reading || self.next.is_some() {
            return;
        }
        let Some(reader) = self.reader.take() else {
            return;
        };
        let buf = self.spare.take().unwrap_or_default();
        self.reading = true;
        let len = chunk_for(block);
        jobs.run(move || fetch(reader, buf, len), Done::Chunk);
    }

    fn fetched(&mut self, chunk: Chunk) {
        self.reading = false;
        let chunk = chunk.unwrap_or_else(|_| Err(io::Error::other("a data source panicked")));
        match chunk {
            Ok((reader, chunk)) => {
                self.reader = reader;
                if !chunk.is_empty() {
                    self.next = Some(chunk);
                }
            }
            Err(e) => self.error = Some(e),
        }
    }
}

/// Read up to `len` bytes into `buf`; keep the reader only if there may be more.
fn fetch(
    mut reader: Reader,
    mut buf: Vec<u8>,
    len: usize,
) -> io::Result<(Option<Reader>, Vec<u8>)> {
    buf.clear();
    buf.resize(len, 0);
    let mut filled = 0;
    while filled < len {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(((filled == len).then_some(reader), buf))
}

/// A handler's writer, written a chunk at a time on the pool: blocks are stored (acknowledged)
/// once buffered, except the one that completes a chunk, and the last, which wait for the
/// write (and the flush and the completion).
pub(crate) struct Sink {
    /// `None` while a chunk is written, or after a failure.
    writer: Option<Writer>,
    complete: Option<OnComplete>,
    buf: Vec<u8>,
    writing: bool,
    /// The outcome of the write the pending block started.
    result: Option<Result<(), HandlerError>>,
}

impl Sink {
    pub(crate) fn new(writer: Writer, complete: Option<OnComplete>) -> Self {
        Sink {
            writer: Some(writer),
            complete,
            buf: Vec::new(),
            writing: false,
            result: None,
        }
    }

    fn store(
        &mut self,
        data: &[u8],
        last: bool,
        jobs: &Jobs<'_>,
    ) -> Poll<Result<(), HandlerError>> {
        // The same block is offered again until it is stored: its write has finished.
        if let Some(result) = self.result.take() {
            return Poll::Ready(result);
        }
        if self.writing {
            return Poll::Pending;
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() < 2 * chunk_for(data.len()) && !last {
            return Poll::Ready(Ok(()));
        }
        let Some(mut writer) = self.writer.take() else {
            return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe).into()));
        };
        let mut chunk = std::mem::take(&mut self.buf);
        let complete = if last { self.complete.take() } else { None };
        self.writing = true;
        let write = move || -> Result<(Writer, Vec<u8>), HandlerError> {
            writer.write_all(&chunk)?;
            if last {
                writer.flush()?;
                if let Some(complete) = complete {
                    complete()?;
                }
            }
            chunk.clear();
            Ok((writer, chunk))
        };
        jobs.run(write, Done::Written);
        Poll::Pending
    }

    fn written(&mut self, written: Written) {
        self.writing = false;
        self.result = Some(match written.unwrap_or_else(|_| Err(server_error())) {
            Ok((writer, buf)) => {
                (self.writer, self.buf) = (Some(writer), buf);
                Ok(())
            }
            Err(e) => Err(e),
        });
    }
}
