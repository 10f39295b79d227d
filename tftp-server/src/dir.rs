//! The bundled handler: files under a root directory (the `tftpd --root` back-end), one type
//! for every adapter (`tftp-blocking` implements its blocking `Handler` for it too).

use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::fs::{Root, RootOptions};
#[cfg(feature = "async")]
use crate::request::{HandlerError, Request};

/// Serves files under a root directory, confined to it (see [`crate::fs`]); accepts uploads
/// into it when [`RootOptions::allow_write`] is set, up to
/// [`RootOptions::max_upload_size`].
///
/// Files are read in place (see [`ReadResponse::from_file`](crate::ReadResponse::from_file));
/// uploads are written, and moved into place, on the `blocking` crate's thread pool, which
/// any async runtime can await.
#[derive(Debug, Clone)]
pub struct DirHandler {
    root: Arc<Root>,
}

impl DirHandler {
    /// Serve `path` with `options`.
    pub fn new(path: impl AsRef<Path>, options: RootOptions) -> io::Result<Self> {
        Ok(DirHandler {
            root: Arc::new(Root::open(path, options)?),
        })
    }

    /// The served root.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Open `request`'s file for reading, inline: resolving and opening a name under a local
    /// root is a few system calls, cheaper than a blocking-pool hop (1,000 requests at once
    /// started hundreds of threads). Only a case-insensitive miss in a directory whose index
    /// is out of date reads the directory, on the blocking pool: once per change of the
    /// directory, not per miss. A refusal is logged with its reason (rate-limited); the
    /// client gets the terse error.
    #[cfg(feature = "async")]
    pub async fn open_for_read(
        &self,
        request: &Request,
    ) -> Result<(std::fs::File, u64), HandlerError> {
        let opened = match self.root.open_read_without_scan(&request.filename) {
            Some(opened) => opened,
            None => {
                let (scan, name) = (Arc::clone(&self.root), request.filename.clone());
                blocking::unblock(move || scan.open_read(&name)).await
            }
        };
        opened.map_err(|e| self.root.refuse(request, e))
    }
}

#[cfg(feature = "async")]
mod with_async {
    use std::pin::Pin;
    use std::task::{Context, Poll, ready};

    use blocking::{Unblock, unblock};
    use futures_lite::AsyncWrite;
    use futures_lite::io::BufWriter;

    use super::*;
    use crate::fs::UploadSink;
    use crate::handler::{Handler, ReadResponse, WriteResponse};

    /// Uploads: one hop to the blocking pool per 64 KiB, not per block (`Unblock`'s pipe
    /// wakes its thread whenever there is room, hence the buffer in front of it).
    const BUFFER: usize = 64 * 1024;

    impl Handler for DirHandler {
        async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
            let (file, size) = self.open_for_read(request).await?;
            Ok(ReadResponse::from_file(file, Some(size)))
        }

        async fn write(&self, request: &Request) -> Result<WriteResponse, HandlerError> {
            if !self.root.options().allow_write {
                return Err(HandlerError::write_not_allowed());
            }
            let (root, name) = (Arc::clone(&self.root), request.filename.clone());
            let size = request.options.tsize;
            let mut upload = unblock(move || root.create_upload(&name, size))
                .await
                .map_err(|e| self.root.refuse(request, e))?;
            let sink = Upload(Unblock::with_capacity(BUFFER, upload.sink()?));
            Ok(WriteResponse::new(BufWriter::with_capacity(BUFFER, sink))
                .on_complete(move || async move { Ok(unblock(move || upload.commit()).await?) }))
        }
    }

    /// An upload's sink on the blocking pool. `Unblock` returns a failed write as `Ok(0)` and
    /// its cause (the size limit, `ENOSPC`: ERROR 3) from the next flush: this says why.
    struct Upload(Unblock<UploadSink>);

    impl AsyncWrite for Upload {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = ready!(Pin::new(&mut self.0).poll_write(cx, buf))?;
            if n == 0 && !buf.is_empty() {
                ready!(Pin::new(&mut self.0).poll_flush(cx))?;
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            Poll::Ready(Ok(n))
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_close(cx)
        }
    }
}
