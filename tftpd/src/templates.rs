//! Files rendered per request from a template directory.

use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use crate::template_engine::{Vars, render};
use tftp_common::fs::{Root, RootOptions};
use tftp_common::{HandlerError, Request};
use tftp_tokio::{Handler, ReadResponse};

use crate::dir::blocking;

/// The largest template read (templates are configuration files, not images).
const MAX_TEMPLATE: u64 = 1 << 20;

/// Serves each file of a template directory rendered for the requesting client (see
/// [`crate::template_engine`] for the variables): one GRUB or iPXE configuration serves a whole
/// fleet. A file that is not in the directory is "File not found", so chain it before a
/// directory with [`crate::Fallback`] (`tftpd --templates DIR --root DIR2`).
#[derive(Debug, Clone)]
pub struct Templates {
    root: Arc<Root>,
}

impl Templates {
    /// Templates under `path` (confined like a served root; read-only).
    pub fn new(path: impl AsRef<Path>, case_insensitive: bool) -> io::Result<Self> {
        let options = RootOptions {
            case_insensitive,
            ..RootOptions::default()
        };
        Ok(Templates {
            root: Arc::new(Root::open(path, options)?),
        })
    }
}

impl Handler for Templates {
    async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        // Inline, as the directory handler does: templates come first in tftpd's chain, so
        // every request passes here, and most miss. Only a case-insensitive miss in a
        // directory whose index is out of date reads the directory, on the blocking pool.
        let opened = match self.root.open_read_without_scan(&request.filename) {
            Some(opened) => opened,
            None => {
                let (root, name) = (Arc::clone(&self.root), request.filename.clone());
                blocking(move || Ok(root.open_read(&name))).await?
            }
        };
        // The client gets the terse error; the operator's log says why (rate-limited).
        let (file, size) = opened.map_err(|e| self.root.refuse(request, e))?;
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
