//! Trying handlers in order.

use tftp_proto::ErrorCode;

use crate::handler::{Handler, ReadResponse, WriteResponse};
use crate::request::{HandlerError, Request};

/// Serve a read from `first`, or from `second` when `first` answers "File not found".
/// A write goes to `first`, or to `second` when `first` does not take writes (answers
/// [`HandlerError::write_not_allowed`]).
///
/// `tftpd` chains its handlers this way: templates, then the root directory, then the HTTP
/// origin.
#[derive(Debug, Clone)]
pub struct Fallback<A, B> {
    first: A,
    second: B,
}

impl<A, B> Fallback<A, B> {
    /// `first`, then `second`.
    pub fn new(first: A, second: B) -> Self {
        Fallback { first, second }
    }

    /// The handler asked first.
    pub fn first(&self) -> &A {
        &self.first
    }

    /// The handler asked when the first has no such file.
    pub fn second(&self) -> &B {
        &self.second
    }
}

impl<A: Handler, B: Handler> Handler for Fallback<A, B> {
    async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        match self.first.read(request).await {
            Err(e) if e.code == ErrorCode::FILE_NOT_FOUND => self.second.read(request).await,
            other => other,
        }
    }

    async fn write(&self, request: &Request) -> Result<WriteResponse, HandlerError> {
        match self.first.write(request).await {
            Err(e) if e == HandlerError::write_not_allowed() => self.second.write(request).await,
            other => other,
        }
    }
}
