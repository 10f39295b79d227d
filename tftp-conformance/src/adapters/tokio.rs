//! tftp-tokio under the conformance suite.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tftp_proto::{Config, Mode, OptionValues, SessionStats};
use tftp_server::ClientError;
use tftp_server::server::ServerOptions;
use tftp_tokio::{Client, Server};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{IoTraits, TestHandler};
use crate::{Adapter, Backend, ServerHandle, Sink, Source};

/// The tokio adapter.
#[derive(Debug)]
pub struct Tokio;

/// The in-memory source never blocks, so reading it inline is fine.
pub(super) struct MemReader(pub(super) Source);

impl AsyncRead for MemReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // A stalled source never wakes its task: the session must not depend on it.
        if self.0.stalled() {
            return Poll::Pending;
        }
        let n = self.0.read(buf.initialize_unfilled())?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

pub(super) struct MemWriter(pub(super) Sink);

impl AsyncWrite for MemWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.0.write(data))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn client_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

impl Adapter for Tokio {
    const NAME: &'static str = "tokio";

    fn serve(backend: Arc<Backend>, options: ServerOptions) -> ServerHandle {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = rt
            .block_on(async { Server::bind(TestHandler(backend, IoTraits::Tokio), options) })
            .unwrap();
        let addrs = server.local_addrs().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            rt.block_on(server.serve_until(async {
                let _ = rx.await;
            }))
            .unwrap();
        });
        ServerHandle::new(addrs, move || {
            let _ = tx.send(());
            let _ = thread.join();
        })
    }

    fn get(
        config: &Config,
        server: SocketAddr,
        file: &str,
        mode: Mode,
        options: OptionValues,
    ) -> Result<(Vec<u8>, SessionStats), ClientError> {
        client_runtime().block_on(async {
            let mut data = Vec::new();
            let stats = Client::with_config(config.clone())
                .get(server, file, mode, options, &mut data)
                .await?;
            Ok((data, stats))
        })
    }

    fn put(
        config: &Config,
        server: SocketAddr,
        name: &str,
        mode: Mode,
        options: OptionValues,
        data: &[u8],
    ) -> Result<SessionStats, ClientError> {
        client_runtime()
            .block_on(Client::with_config(config.clone()).put(server, name, mode, options, data))
    }
}
