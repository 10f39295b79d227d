//! The bundled handler: files under a root directory (the `tftpd --root` back-end).

use std::io;
use std::path::Path;
use std::sync::Arc;

use blocking::{Unblock, unblock};
use tftp_common::fs::{Root, RootOptions};
use tftp_common::{HandlerError, Request};

use crate::handler::{Handler, ReadResponse, WriteResponse};

/// Serves files under a root directory, confined to it (see [`tftp_common::fs`]); accepts
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

/// Large transfers: one hop to the blocking pool per 64 KiB, not per block.
const BUFFER: usize = 64 * 1024;

impl Handler for DirHandler {
    async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        let (root, name) = (Arc::clone(&self.root), request.filename.clone());
        let (file, size) = unblock(move || root.open_read(&name)).await?;
        Ok(ReadResponse::new(
            Unblock::with_capacity(BUFFER, file),
            Some(size),
        ))
    }

    async fn write(&self, request: &Request) -> Result<WriteResponse, HandlerError> {
        let (root, name) = (Arc::clone(&self.root), request.filename.clone());
        let size = request.options.tsize;
        let mut upload = unblock(move || root.create_upload(&name, size)).await?;
        let file = upload.file().try_clone().map_err(HandlerError::from)?;
        let writer = Unblock::with_capacity(BUFFER, file);
        Ok(WriteResponse::new(writer)
            .on_complete(move || async move { Ok(unblock(move || upload.commit()).await?) }))
    }
}
