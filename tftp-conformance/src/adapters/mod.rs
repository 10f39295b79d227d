//! Each adapter's implementation of [`crate::Adapter`]: its handler over the shared
//! [`crate::Backend`], its server started in the background, its client.

mod async_std;
mod blocking;
mod tokio;

pub use self::async_std::{AsyncStd, Smol};
pub use self::blocking::Blocking;
pub use self::tokio::Tokio;

use std::sync::Arc;

use tftp_server::{Handler, HandlerError, ReadResponse, Request, WriteResponse};

use crate::Backend;

/// Whose I/O traits the test handler's reader and writer implement: the two async adapters
/// share the framework's `Handler`, and each serves its own traits' readers through it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IoTraits {
    Tokio,
    FuturesIo,
}

/// The async adapters' handler over the shared [`Backend`].
pub(crate) struct TestHandler(pub(crate) Arc<Backend>, pub(crate) IoTraits);

impl Handler for TestHandler {
    async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        let (source, size, limits) = self.0.read(request)?;
        let response = match self.1 {
            IoTraits::Tokio => ReadResponse::new(self::tokio::MemReader(source), size),
            IoTraits::FuturesIo => ReadResponse::new(self::async_std::MemReader(source), size),
        };
        Ok(match limits {
            Some(l) => response.with_limits(l),
            None => response,
        })
    }

    async fn write(&self, request: &Request) -> Result<WriteResponse, HandlerError> {
        let sink = self.0.write(request)?;
        let commit = sink.clone();
        let response = match self.1 {
            IoTraits::Tokio => WriteResponse::new(self::tokio::MemWriter(sink)),
            IoTraits::FuturesIo => WriteResponse::new(self::async_std::MemWriter(sink)),
        };
        Ok(response.on_complete(move || async move { commit.commit() }))
    }
}
