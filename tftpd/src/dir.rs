//! The bundled handler: files under a root directory (the `tftpd --root` back-end).

use std::io;
use std::path::Path;
use std::sync::Arc;

use tftp_common::fs::{Root, RootOptions};
use tftp_common::{HandlerError, Request};
use tokio::io::{BufReader, BufWriter};

use tftp_tokio::{Handler, ReadResponse, WriteResponse};

/// Serves files under a root directory, confined to it (see [`tftp_common::fs`]); accepts
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

impl Handler for DirHandler {
    async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        let (root, name) = (Arc::clone(&self.root), request.filename.clone());
        let (file, size) = blocking(move || Ok(root.open_read(&name)?)).await?;
        // Large reads: one hop to the blocking pool per 64 KiB, not per block.
        let reader = BufReader::with_capacity(64 * 1024, tokio::fs::File::from_std(file));
        Ok(ReadResponse::new(reader, Some(size)))
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
        let mut upload = blocking(move || Ok(root.create_upload(&name, size)?)).await?;
        let file = upload.file().try_clone().map_err(HandlerError::from)?;
        let writer = BufWriter::with_capacity(64 * 1024, tokio::fs::File::from_std(file));
        Ok(WriteResponse::new(writer).on_complete(move || blocking(move || Ok(upload.commit()?))))
    }
}
