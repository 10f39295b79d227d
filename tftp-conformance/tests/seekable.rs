//! Seekable sources (a local file, bytes in memory) keep no copy of their window, only the
//! blocks of one batch (64 blocks and at most 65,000 bytes): a block lost further back is read
//! again from the source. Through the impairment proxy at 10% loss each way, with windows
//! larger than a batch, every byte arrives: tftp-blocking's event loops, and the async
//! adapters' session driver (tftp-tokio).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use tftp_blocking::{Client, Handler, HandlerError, ReadResponse, Request, Server, ServerOptions};
use tftp_conformance::netem::{Impairment, Link, Proxy};
use tftp_proto::{Config, Mode, OptionValues};

struct Files {
    dir: tempfile::TempDir,
    bytes: Arc<Vec<u8>>,
}

impl Handler for Files {
    fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        match request.filename.as_str() {
            "file" => {
                let file = std::fs::File::open(self.dir.path().join("file"))?;
                let size = file.metadata()?.len();
                Ok(ReadResponse::file(file, Some(size)))
            }
            "bytes" => Ok(ReadResponse::from_bytes(ArcBytes(Arc::clone(&self.bytes)))),
            _ => Err(HandlerError::not_found()),
        }
    }
}

struct ArcBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn data() -> Vec<u8> {
    (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), data()).unwrap();
    Files {
        dir,
        bytes: Arc::new(data()),
    }
}

fn server_options() -> ServerOptions {
    let mut options = ServerOptions::new().listen("127.0.0.1:0".parse().unwrap());
    options.config.session.retries = 12;
    options
}

/// Files and bytes through the lossy proxy, in windows of more blocks than a batch holds.
fn fetch_through_loss(addr: SocketAddr) {
    let data = data();
    let mut config = Config::default();
    config.retries = 12;
    let mut dropped = 0;
    for (i, (name, blksize, windowsize)) in [
        // Rings of 44, 7 and 1 slots, and lock-step.
        ("file", 1468u16, 64u16),
        ("file", 8192, 16),
        ("file", 65464, 4),
        ("file", 512, 1),
        ("bytes", 8192, 16),
        ("bytes", 65464, 2),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = 0x5eec + i as u64;
        let proxy = Proxy::start(addr, Link::symmetric(Impairment::loss(0.10), seed)).unwrap();
        let options = OptionValues {
            blksize: Some(blksize),
            windowsize: Some(windowsize),
            ..Default::default()
        };
        let mut got = Vec::new();
        let what = format!("{name} blksize {blksize} windowsize {windowsize} seed {seed}");
        let s = Client::with_config(config.clone())
            .get(proxy.addr(), name, Mode::Octet, options, &mut got)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(got == data, "{what}: content differs");
        assert_eq!(s.options.windowsize, windowsize, "{what}");
        let p = proxy.stats();
        dropped += p.to_client.dropped + p.to_server.dropped;
    }
    assert!(dropped > 10, "the link lost datagrams: {dropped}");
}

#[test]
fn blocking_seekable_sources_resend_what_was_lost() {
    let server = Server::bind(files(), server_options()).unwrap();
    let addr = server.local_addrs().unwrap()[0];
    let stop = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve());
    fetch_through_loss(addr);
    stop.shutdown();
    serving.join().unwrap().unwrap();
}

impl tftp_server::Handler for Files {
    async fn read(&self, request: &Request) -> Result<tftp_server::ReadResponse, HandlerError> {
        use tftp_server::ReadResponse;
        match request.filename.as_str() {
            "file" => {
                let file = std::fs::File::open(self.dir.path().join("file"))?;
                let size = file.metadata()?.len();
                Ok(ReadResponse::from_file(file, Some(size)))
            }
            "bytes" => Ok(ReadResponse::from_bytes(ArcBytes(Arc::clone(&self.bytes)))),
            _ => Err(HandlerError::not_found()),
        }
    }
}

#[test]
fn tokio_seekable_sources_resend_what_was_lost() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(async { tftp_tokio::Server::bind(files(), server_options()) })
        .unwrap();
    let addr = server.local_addrs().unwrap()[0];
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = thread::spawn(move || {
        rt.block_on(server.serve_until(async {
            let _ = rx.await;
        }))
    });
    fetch_through_loss(addr);
    let _ = tx.send(());
    serving.join().unwrap().unwrap();
}
