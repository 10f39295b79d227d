//! Files rendered per request from a template directory.

use std::io::{self, Read};
use std::path::Path;

use crate::template_engine::{Vars, render};
use tftp_tokio::{DirHandler, Handler, HandlerError, ReadResponse, Request, RootOptions};

/// The largest template read (templates are configuration files, not images).
const MAX_TEMPLATE: u64 = 1 << 20;

/// Serves each file of a template directory rendered for the requesting client (see
/// [`crate::template_engine`] for the variables): one GRUB or iPXE configuration serves a whole
/// fleet. A file that is not in the directory is "File not found", so chain it before a
/// directory with [`crate::Fallback`] (`tftpd --templates DIR --root DIR2`).
#[derive(Debug, Clone)]
pub struct Templates {
    root: DirHandler,
}

impl Templates {
    /// Templates under `path` (confined like a served root; read-only).
    pub fn new(path: impl AsRef<Path>, case_insensitive: bool) -> io::Result<Self> {
        let options = RootOptions {
            case_insensitive,
            ..RootOptions::default()
        };
        Ok(Templates {
            root: DirHandler::new(path, options)?,
        })
    }
}

impl Handler for Templates {
    async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        // Inline, as the directory handler does: templates come first in tftpd's chain, so
        // every request passes here, and most miss.
        let (file, size) = self.root.open_for_read(request).await?;
        if size > MAX_TEMPLATE {
            return Err(HandlerError::new(
                tftp_proto::ErrorCode::DISK_FULL,
                "Template too large",
            ));
        }
        // A configuration file of at most 1 MiB from the page cache.
        let mut text = String::new();
        file.take(MAX_TEMPLATE)
            .read_to_string(&mut text)
            .map_err(|e| HandlerError::from(&e))?;
        let vars = Vars::new(request.peer, request.local, &request.filename);
        Ok(ReadResponse::from_bytes(render(&text, &vars).into_bytes()))
    }
}
