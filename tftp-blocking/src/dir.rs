//! The bundled handler, blocking: files under a root directory (the `tftpd --root`
//! back-end). It is the framework's [`DirHandler`] (one type for every adapter); this is its
//! blocking side.

use tftp_server::{DirHandler, HandlerError, Request};

use crate::handler::{Handler, ReadResponse, WriteResponse};

/// No buffering is needed: the server reads files in place on its event loop (the page
/// cache) and writes uploads, through the root's size-limited sink, in chunks on its I/O
/// pool. Reads are answered on the event loop ([`Handler::read_on_loop`]: resolving and
/// opening a name under the root is a few system calls, as the async adapters do it on their
/// runtime's thread), except a case-insensitive miss in a directory whose index is out of
/// date, which reads the directory: that one goes to the pool.
impl Handler for DirHandler {
    fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        // The client gets the terse error; the operator's log says why (rate-limited).
        let root = self.root();
        let (file, size) =
            (root.open_read(&request.filename)).map_err(|e| root.refuse(request, e))?;
        Ok(ReadResponse::file(file, Some(size)))
    }

    fn read_on_loop(&self, request: &Request) -> Option<Result<ReadResponse, HandlerError>> {
        let root = self.root();
        let opened = root.open_read_without_scan(&request.filename)?;
        Some(match opened {
            Ok((file, size)) => Ok(ReadResponse::file(file, Some(size))),
            Err(e) => Err(root.refuse(request, e)),
        })
    }

    fn write(&self, request: &Request) -> Result<WriteResponse, HandlerError> {
        let root = self.root();
        if !root.options().allow_write {
            return Err(HandlerError::write_not_allowed());
        }
        let size = request.options.tsize;
        let mut upload =
            (root.create_upload(&request.filename, size)).map_err(|e| root.refuse(request, e))?;
        let sink = upload.sink()?;
        Ok(WriteResponse::new(sink).on_complete(move || Ok(upload.commit()?)))
    }
}
