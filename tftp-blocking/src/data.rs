//! A transfer's data: its source read ahead, or its sink written behind, in chunks on the I/O
//! pool, so that the event loop only copies blocks from and into memory.

use std::io::{Read, Write};

use tftp_common::HandlerError;
use tftp_proto::{Fill, OptionLimits, Store};

use crate::handler::Completion;

/// Bytes per pool job. A source is read ahead (the next chunk is asked for when less than half
/// a chunk is left: at most 96 KiB buffered); a sink is written a full chunk at a time.
const CHUNK: usize = 64 * 1024;

/// A source or sink; it moves to the pool for each job and comes back with the result.
pub(crate) enum Io {
    Read(Box<dyn Read + Send>),
    Write(Box<dyn Write + Send>, Option<Completion>),
}

/// How a source or sink ended: end of file or upload completed, or the error.
type End = Option<Result<(), HandlerError>>;

/// A pool job's result: the handler's answer (size, limits, data), or a chunk read or written.
pub(crate) enum Done {
    Answer(Result<(Option<u64>, Option<OptionLimits>, Io), HandlerError>),
    Data(Io, Vec<u8>, End),
}

pub(crate) type Job = Box<dyn FnOnce() -> Done + Send>;

/// The read-ahead (sending) or write-behind (receiving) buffer of one transfer.
pub(crate) struct Data {
    /// `None` while a job has it.
    io: Option<Io>,
    buf: Vec<u8>,
    /// Bytes of `buf` already copied into blocks (sending).
    pos: usize,
    /// The last block is in `buf` (receiving).
    last: bool,
    end: End,
}

impl Data {
    pub(crate) fn new(io: Io) -> Self {
        let (io, buf, pos, last, end) = (Some(io), Vec::new(), 0, false, None);
        Data {
            io,
            buf,
            pos,
            last,
            end,
        }
    }

    /// Fill a block from the buffer. `Err(None)`: wait for the next chunk.
    pub(crate) fn fill(&mut self, fill: Fill<'_>) -> Result<(), Option<HandlerError>> {
        if self.pos < self.buf.len() {
            self.pos += fill.write(&self.buf[self.pos..]);
            return Ok(());
        }
        match &self.end {
            Some(Ok(())) => {
                fill.finish();
                Ok(())
            }
            Some(Err(e)) => Err(Some(e.clone())),
            None => Err(None),
        }
    }

    /// Buffer a block, which is then acknowledged; the last one only once it is written, the
    /// sink flushed and the completion run. `Err(None)`: wait for a write.
    pub(crate) fn store(&mut self, mut store: Store<'_>) -> Result<(), Option<HandlerError>> {
        match &self.end {
            Some(Ok(())) => store.stored(),
            Some(Err(e)) => return Err(Some(e.clone())),
            None if self.last || self.buf.len() >= CHUNK => return Err(None),
            None => {
                self.buf.extend_from_slice(store.data());
                self.last = store.is_last();
                if !self.last {
                    store.stored();
                }
            }
        }
        Ok(())
    }

    /// The job due, if any (and the data is not already on the pool).
    pub(crate) fn job(&mut self) -> Option<Job> {
        if self.end.is_some() {
            return None;
        }
        match self.io.take() {
            Some(Io::Read(mut reader)) if self.buf.len() - self.pos < CHUNK / 2 => {
                Some(Box::new(move || {
                    let mut chunk = Vec::new();
                    let end = match reader.by_ref().take(CHUNK as u64).read_to_end(&mut chunk) {
                        Ok(n) if n < CHUNK => Some(Ok(())),
                        Ok(_) => None,
                        Err(e) => {
                            tracing::warn!(error = %e, "data source failed");
                            Some(Err(HandlerError::from(&e)))
                        }
                    };
                    Done::Data(Io::Read(reader), chunk, end)
                }))
            }
            Some(Io::Write(mut writer, mut complete)) if self.last || self.buf.len() >= CHUNK => {
                let (bytes, last) = (std::mem::take(&mut self.buf), self.last);
                Some(Box::new(move || {
                    let mut r = writer.write_all(&bytes).map_err(|e| HandlerError::from(&e));
                    if last && r.is_ok() {
                        r = writer.flush().map_err(|e| HandlerError::from(&e));
                        r = r.and_then(|()| complete.take().map_or(Ok(()), |f| f()));
                    }
                    if let Err(e) = &r {
                        tracing::warn!(error = %e, "data sink failed");
                    }
                    let end = (last || r.is_err()).then_some(r);
                    Done::Data(Io::Write(writer, complete), Vec::new(), end)
                }))
            }
            io => {
                self.io = io;
                None
            }
        }
    }

    /// A job came back with the source or sink, bytes read, and the end if reached.
    pub(crate) fn done(&mut self, io: Io, bytes: Vec<u8>, end: End) {
        self.io = Some(io);
        if self.pos == self.buf.len() {
            self.buf = bytes;
        } else {
            self.buf.drain(..self.pos);
            self.buf.extend_from_slice(&bytes);
        }
        self.pos = 0;
        self.end = end;
    }

    /// A job panicked: the source or sink is lost.
    pub(crate) fn fail(&mut self, error: HandlerError) {
        self.end = Some(Err(error));
    }
}
