//! The bundled handler: files under a root directory (the `tftpd --root` back-end).

use std::io::{self, Read};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tftp_server::fs::{Root, RootOptions};
use tftp_server::{HandlerError, Request};
use tokio::io::{AsyncRead, BufWriter, ReadBuf};

use crate::{Handler, ReadResponse, WriteResponse};

/// Serves files under a root directory, confined to it (see [`tftp_server::fs`]); accepts
/// uploads into it when [`RootOptions::allow_write`] is set.
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
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HandlerError> + Send + 'static,
) -> Result<T, HandlerError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|_| {
        Err(HandlerError::new(
            tftp_proto::ErrorCode::NOT_DEFINED,
            "Server error",
        ))
    })
}

/// Open `request`'s file under `root` for reading, inline: resolving and opening a name under
/// a local root is a few system calls, cheaper than a blocking-pool hop (1,000 requests at
/// once started hundreds of threads). Only a case-insensitive miss in a directory whose index
/// is out of date reads the directory, on the blocking pool: once per change of the
/// directory, not per miss. A refusal is logged with its reason (rate-limited); the client
/// gets the terse error.
pub(crate) async fn open_for_read(
    root: &Arc<Root>,
    request: &Request,
) -> Result<(std::fs::File, u64), HandlerError> {
    let opened = match root.open_read_without_scan(&request.filename) {
        Some(opened) => opened,
        None => {
            let (scan, name) = (Arc::clone(root), request.filename.clone());
            blocking(move || Ok(scan.open_read(&name))).await?
        }
    };
    opened.map_err(|e| root.refuse(request, e))
}

impl Handler for DirHandler {
    async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        let (file, size) = open_for_read(&self.root, request).await?;
        Ok(ReadResponse::new(InlineFile(file), Some(size)))
    }

    async fn write(&self, request: &Request) -> Result<WriteResponse, HandlerError> {
        if !self.root.options().allow_write {
            return Err(HandlerError::write_not_allowed());
        }
        let (root, name, size) = (
            Arc::clone(&self.root),
            request.filename.clone(),
            request.options.tsize,
        );
        let mut upload = blocking(move || Ok(root.create_upload(&name, size)))
            .await?
            .map_err(|e| self.root.refuse(request, e))?;
        let file = upload.file().try_clone().map_err(HandlerError::from)?;
        let writer = BufWriter::with_capacity(64 * 1024, tokio::fs::File::from_std(file));
        Ok(WriteResponse::new(writer).on_complete(move || blocking(move || Ok(upload.commit()?))))
    }
}

/// A served file read inline, straight into the session's block buffer.
///
/// A read from the page cache takes about a microsecond: cheaper than a hop to the blocking
/// pool per block, and it needs no buffer of its own (a 64 KiB read-ahead buffer per session
/// would be most of a session's memory). Boot images are read again and again, so they are in
/// the page cache; a root on slow or network storage holds a runtime thread for as long as a
/// read takes.
struct InlineFile(std::fs::File);

impl AsyncRead for InlineFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.0.read(buf.initialize_unfilled())?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}
