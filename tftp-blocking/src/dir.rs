//! The bundled handler: files under a root directory (the `tftpd --root` back-end).

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use tftp_server::fs::{Root, RootOptions};
use tftp_server::{HandlerError, Request};

use crate::handler::{Handler, ReadResponse, WriteResponse};

/// Serves files under a root directory, confined to it (see [`tftp_server::fs`]); accepts
/// uploads into it when [`RootOptions::allow_write`] is set. No buffering is needed: the
/// server reads files in place on its event loop (the page cache) and writes uploads in
/// chunks on its I/O pool.
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
        // The client gets the terse error; the operator's log says why (rate-limited).
        let (file, size) = self
            .root
            .open_read(&request.filename)
            .map_err(|e| self.root.refuse(request, e))?;
        Ok(ReadResponse::file(file, Some(size)))
    }

    fn write(&self, request: &Request) -> Result<WriteResponse, HandlerError> {
        let options = self.root.options();
        if !options.allow_write {
            return Err(HandlerError::write_not_allowed());
        }
        let size = request.options.tsize;
        let mut upload = self
            .root
            .create_upload(&request.filename, size)
            .map_err(|e| self.root.refuse(request, e))?;
        let file = upload.file().try_clone()?;
        let sink = Upload {
            file,
            left: options.max_upload_size,
        };
        Ok(WriteResponse::new(sink).on_complete(move || Ok(upload.commit()?)))
    }
}

/// An upload's sink: it refuses bytes past [`RootOptions::max_upload_size`] (ERROR 3), since
/// a client need not announce the size.
struct Upload {
    file: File,
    left: Option<u64>,
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left.is_some_and(|left| buf.len() as u64 > left) {
            return Err(io::ErrorKind::QuotaExceeded.into());
        }
        let n = self.file.write(buf)?;
        self.left = self.left.map(|left| left - n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
