//! tftp-async-std under the conformance suite, twice: on async-std's executor and on smol's.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};
use tftp_async_std::{Client, Server};
use tftp_proto::{Config, Mode, OptionValues, SessionStats};
use tftp_server::ClientError;
use tftp_server::server::ServerOptions;

use super::{IoTraits, TestHandler};
use crate::{Adapter, Backend, ServerHandle, Sink, Source};

/// tftp-async-std, its server spawned on async-std's executor, its client in `block_on`.
#[derive(Debug)]
pub struct AsyncStd;

/// tftp-async-std, its server spawned on smol's executor, its client in `block_on`.
#[derive(Debug)]
pub struct Smol;

/// The in-memory source never blocks, so reading it inline is fine.
pub(super) struct MemReader(pub(super) Source);

impl AsyncRead for MemReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        // A stalled source never wakes its task: the session must not depend on it.
        if self.0.stalled() {
            return Poll::Pending;
        }
        Poll::Ready(self.0.read(buf))
    }
}

pub(super) struct MemWriter(pub(super) Sink);

impl AsyncWrite for MemWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.0.write(data))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

type Serving = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// Bind, then hand the serving future to `run` (which spawns it on an executor and waits for
/// it) on a background thread; stopping closes the shutdown channel.
fn serve(
    backend: Arc<Backend>,
    options: ServerOptions,
    run: fn(Serving) -> io::Result<()>,
) -> ServerHandle {
    let server = Server::bind(TestHandler(backend, IoTraits::FuturesIo), options).unwrap();
    let addrs = server.local_addrs().unwrap();
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    let serving = server.serve_until(async move {
        let _ = stopped.recv().await;
    });
    let thread = std::thread::spawn(move || run(Box::pin(serving)).unwrap());
    ServerHandle::new(addrs, move || {
        drop(stop);
        let _ = thread.join();
    })
}

async fn get(
    config: &Config,
    server: SocketAddr,
    file: &str,
    mode: Mode,
    options: OptionValues,
) -> Result<(Vec<u8>, SessionStats), ClientError> {
    let mut data = Vec::new();
    let stats = Client::with_config(config.clone())
        .get(server, file, mode, options, &mut data)
        .await?;
    Ok((data, stats))
}

impl Adapter for AsyncStd {
    const NAME: &'static str = "async-std";

    fn serve(backend: Arc<Backend>, options: ServerOptions) -> ServerHandle {
        serve(backend, options, |f| {
            async_std::task::block_on(async_std::task::spawn(f))
        })
    }

    fn get(
        config: &Config,
        server: SocketAddr,
        file: &str,
        mode: Mode,
        options: OptionValues,
    ) -> Result<(Vec<u8>, SessionStats), ClientError> {
        async_std::task::block_on(get(config, server, file, mode, options))
    }

    fn put(
        config: &Config,
        server: SocketAddr,
        name: &str,
        mode: Mode,
        options: OptionValues,
        data: &[u8],
    ) -> Result<SessionStats, ClientError> {
        let client = Client::with_config(config.clone());
        async_std::task::block_on(client.put(server, name, mode, options, data))
    }
}

impl Adapter for Smol {
    const NAME: &'static str = "smol";

    fn serve(backend: Arc<Backend>, options: ServerOptions) -> ServerHandle {
        serve(backend, options, |f| smol::block_on(smol::spawn(f)))
    }

    fn get(
        config: &Config,
        server: SocketAddr,
        file: &str,
        mode: Mode,
        options: OptionValues,
    ) -> Result<(Vec<u8>, SessionStats), ClientError> {
        smol::block_on(get(config, server, file, mode, options))
    }

    fn put(
        config: &Config,
        server: SocketAddr,
        name: &str,
        mode: Mode,
        options: OptionValues,
        data: &[u8],
    ) -> Result<SessionStats, ClientError> {
        let client = Client::with_config(config.clone());
        smol::block_on(client.put(server, name, mode, options, data))
    }
}
