//! The bundled handler: files under a root directory (the `tftpd --root` back-end).

use std::io;
use std::path::Path;

use tftp_common::fs::{Root, RootOptions};
use tftp_common::{HandlerError, Request};

use crate::handler::{Handler, ReadResponse, WriteResponse};

/// Serves files under a root directory, confined to it (see [`tftp_common::fs`]); accepts
/// uploads into it when [`RootOptions::allow_write`] is set. No buffering is needed: the
/// server reads and writes in 64 KiB chunks.
#[derive(Debug)]
pub struct DirHandler {
    root: Root,
}

impl DirHandler {
    /// Serve `path` with `options`.
    pub fn new(path: impl AsRef<Path>, options: RootOptions) -> io::Result<Self> {
        Ok(DirHandler {
            root: Root::open(path, options)?,
        })
    }
}

impl Handler for DirHandler {
    fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        let (file, size) = self.root.open_read(&request.filename)?;
        Ok(ReadResponse::new(file, Some(size)))
    }

    fn write(&self, request: &Request) -> Result<WriteResponse, HandlerError> {
        let mut upload = self
            .root
            .create_upload(&request.filename, request.options.tsize)?;
        let file = upload.file().try_clone()?;
        Ok(WriteResponse::new(file).on_complete(move || Ok(upload.commit()?)))
    }
}
