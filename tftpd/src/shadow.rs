//! Uploads that would shadow a served file.
//!
//! `tftpd` reads through a chain (templates, root, origin) but writes into the root only. A
//! name that only a later handler of the chain has (the origin) is not in the root, so the
//! root alone would take an upload of it, and from then on every client would get the upload
//! instead of the origin's file. [`NoShadow`] asks the whole chain first.

use tftp_proto::ErrorCode;
use tftp_server::{HandlerError, Request};
use tftp_tokio::{Handler, ReadResponse, WriteResponse};

use crate::{DirHandler, Fallback, Templates};

/// A handler that can say whether a read of a request's file would find one, without
/// transferring it.
pub trait Lookup: Handler {
    /// `Ok(true)` when [`Handler::read`] of `request` would serve a file, `Ok(false)` when it
    /// would answer "File not found", or the error it (or the check) would fail with.
    ///
    /// The default reads and drops what it got: right for local handlers, where opening is
    /// cheap. Remote ones ask without transferring (see `HttpOrigin::exists`).
    fn exists(&self, request: &Request) -> impl Future<Output = Result<bool, HandlerError>> + Send {
        async move {
            match self.read(request).await {
                Ok(_) => Ok(true),
                Err(e) if e.code == ErrorCode::FILE_NOT_FOUND => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

impl Lookup for DirHandler {}

impl Lookup for Templates {}

#[cfg(feature = "http-origin")]
impl Lookup for crate::HttpOrigin {
    async fn exists(&self, request: &Request) -> Result<bool, HandlerError> {
        crate::HttpOrigin::exists(self, request).await
    }
}

/// Absent: has no files.
impl<H: Lookup> Lookup for Option<H> {
    async fn exists(&self, request: &Request) -> Result<bool, HandlerError> {
        match self {
            Some(h) => h.exists(request).await,
            None => Ok(false),
        }
    }
}

/// As [`Fallback`] reads: `first`, then `second` when `first` has no such file.
impl<A: Lookup, B: Lookup> Lookup for Fallback<A, B> {
    async fn exists(&self, request: &Request) -> Result<bool, HandlerError> {
        match self.first().exists(request).await? {
            true => Ok(true),
            false => self.second().exists(request).await,
        }
    }
}

/// Refuses an upload of a name that a read through `inner` would find, with ERROR 6 "File
/// already exists" (RFC 1350 error codes): an upload may never hide a served file, wherever
/// in the chain it lives. When the check itself fails (the origin is unreachable or gives
/// an unexpected answer) the upload is refused with that error: fail closed.
///
/// Use it when uploads are allowed but overwrites are not (`tftpd --allow-write` without
/// `--allow-overwrite`); [`NoShadow::active`]`(false)` passes writes straight through (with
/// overwrites allowed, or without uploads, where checking would only cost a round trip).
/// Reads always go straight to `inner`.
#[derive(Debug, Clone)]
pub struct NoShadow<H> {
    inner: H,
    active: bool,
}

impl<H> NoShadow<H> {
    /// Guard the uploads of `inner`.
    pub fn new(inner: H) -> Self {
        NoShadow {
            inner,
            active: true,
        }
    }

    /// Check uploads (`true`, the default) or pass them through unchecked (`false`).
    pub fn active(mut self, active: bool) -> Self {
        self.active = active;
        self
    }
}

impl<H: Lookup> Handler for NoShadow<H> {
    async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        self.inner.read(request).await
    }

    async fn write(&self, request: &Request) -> Result<WriteResponse, HandlerError> {
        if self.active && self.inner.exists(request).await? {
            return Err(HandlerError::file_exists());
        }
        self.inner.write(request).await
    }
}
