//! The session data in futures-io traits, under the shared server and client
//! ([`tftp_server::runtime`], on [`tftp_server::async_io`]).

use std::io;
use std::pin::Pin;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tftp_server::runtime;

/// A session's data: a source to send from, or a sink to store into and whether to close it
/// after the last block.
pub(crate) enum Data<'a> {
    Source(Pin<Box<dyn AsyncRead + Send + 'a>>),
    Sink(Pin<Box<dyn AsyncWrite + Send + 'a>>, bool),
}

impl runtime::Data for Data<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Data::Source(source) => source.read(buf).await,
            Data::Sink(..) => Ok(0),
        }
    }

    async fn write(&mut self, data: &[u8], last: bool) -> io::Result<()> {
        let Data::Sink(sink, close) = self else {
            return Ok(());
        };
        sink.write_all(data).await?;
        if last {
            sink.flush().await?;
            if *close {
                sink.close().await?;
            }
        }
        Ok(())
    }
}
