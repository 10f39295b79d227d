//! The bundled handler: files under a root directory (the `tftpd --root` back-end).

use std::fs::File;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use blocking::{Unblock, unblock};
use futures_lite::AsyncWrite;
use futures_lite::io::{BufReader, BufWriter};
use tftp_server::fs::{Root, RootOptions};
use tftp_server::{HandlerError, Request};

use crate::handler::{Handler, ReadResponse, WriteResponse};

/// Serves files under a root directory, confined to it (see [`tftp_server::fs`]); accepts
/// uploads into it when [`RootOptions::allow_write`] is set. File system calls run on the
/// `blocking` thread pool.
#[derive(Debug, Clone)]
pub struct DirHandler {
    root: Arc<Root>,
}

impl DirHandler {
    /// Serve `path` with `options`.
    pub fn new(path: impl AsRef<Path>, options: RootOptions) -> io::Result<Self> {
        let root = Arc::new(Root::open(path, options)?);
        Ok(DirHandler { root })
    }
}

/// Large transfers: one hop to the blocking pool per 64 KiB, not per block (`Unblock`'s
/// pipe wakes its thread whenever there is room, hence the buffer in front of it).
const BUFFER: usize = 64 * 1024;

impl Handler for DirHandler {
    async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        let (root, name) = (Arc::clone(&self.root), request.filename.clone());
        // The client gets the terse error; the operator's log says why (rate-limited).
        let (file, size) = unblock(move || root.open_read(&name))
            .await
            .map_err(|e| self.root.refuse(request, e))?;
        let reader = BufReader::with_capacity(BUFFER, Unblock::with_capacity(BUFFER, file));
        Ok(ReadResponse::new(reader, Some(size)))
    }

    async fn write(&self, request: &Request) -> Result<WriteResponse, HandlerError> {
        if !self.root.options().allow_write {
            return Err(HandlerError::write_not_allowed());
        }
        let (root, name) = (Arc::clone(&self.root), request.filename.clone());
        let (size, max) = (request.options.tsize, self.root.options().max_upload_size);
        let mut upload = unblock(move || root.create_upload(&name, size))
            .await
            .map_err(|e| self.root.refuse(request, e))?;
        let file = upload.file().try_clone().map_err(HandlerError::from)?;
        let file = Unblock::with_capacity(BUFFER, file);
        let writer = BufWriter::with_capacity(BUFFER, Upload { file, left: max });
        Ok(WriteResponse::new(writer)
            .on_complete(move || async move { Ok(unblock(move || upload.commit()).await?) }))
    }
}

/// An upload's sink. It refuses bytes past [`RootOptions::max_upload_size`] (a client need
/// not announce the size), and says why the file stopped taking bytes: `Unblock` returns a
/// failed write as `Ok(0)`, and its cause (e.g. `ENOSPC`: ERROR 3) from the next flush.
struct Upload {
    file: Unblock<File>,
    left: Option<u64>,
}

impl AsyncWrite for Upload {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.left.is_some_and(|left| buf.len() as u64 > left) {
            return Poll::Ready(Err(io::ErrorKind::QuotaExceeded.into()));
        }
        let n = ready!(Pin::new(&mut this.file).poll_write(cx, buf))?;
        if n == 0 && !buf.is_empty() {
            ready!(Pin::new(&mut this.file).poll_flush(cx))?;
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        this.left = this.left.map(|left| left - n as u64);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_close(cx)
    }
}
