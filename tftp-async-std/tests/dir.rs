//! DirHandler end to end, on a real directory, under smol and async-std; and what dropping
//! the serve future does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tftp_async_std::{
    Client, ClientError, DirHandler, ErrorCode, Mode, OptionValues, RootOptions, Server,
    ServerOptions, ServerStats,
};
use tftp_proto::TransferError;

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn error_code(e: ClientError) -> ErrorCode {
    match e {
        ClientError::Transfer(TransferError::Peer { code, .. }) => code,
        other => panic!("expected an ERROR from the server, got {other}"),
    }
}

fn opts(tsize: Option<u64>) -> OptionValues {
    let (blksize, windowsize) = (Some(1468), Some(4));
    OptionValues {
        blksize,
        windowsize,
        tsize,
        ..Default::default()
    }
}

#[test]
fn dir_handler_downloads_uploads_and_enforces_the_upload_limit() {
    let dir = tempfile::tempdir().unwrap();
    let file = content(200_000);
    std::fs::write(dir.path().join("boot.bin"), &file).unwrap();
    let root = RootOptions {
        allow_write: true,
        max_upload_size: Some(100_000),
        ..Default::default()
    };
    let intervals = Arc::new(Mutex::new(Vec::<ServerStats>::new()));
    let i = Arc::clone(&intervals);
    let mut options = ServerOptions::new()
        .listen("127.0.0.1:0".parse().unwrap())
        .on_stats(move |s| i.lock().unwrap().push(s.clone()));
    options.config.stats_interval = Duration::from_secs(3600);
    let server = Server::bind(DirHandler::new(dir.path(), root).unwrap(), options).unwrap();
    let addr = server.local_addrs().unwrap()[0];
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    let serving = smol::spawn(server.serve_until(async move {
        let _ = stopped.recv().await;
    }));
    smol::block_on(async {
        let client = Client::new();
        let mut got = Vec::new();
        let stats = client
            .get(addr, "boot.bin", Mode::Octet, opts(Some(0)), &mut got)
            .await;
        assert_eq!(stats.unwrap().options.tsize, Some(200_000));
        assert!(got == file);
        let up = &file[..50_000];
        client
            .put(addr, "up.bin", Mode::Octet, opts(Some(50_000)), up)
            .await
            .unwrap();
        assert!(std::fs::read(dir.path().join("up.bin")).unwrap() == up);
        let again = client
            .put(addr, "up.bin", Mode::Octet, opts(None), up)
            .await;
        assert_eq!(error_code(again.unwrap_err()), ErrorCode::FILE_EXISTS);
        // Announced too large: refused up front; unannounced: failed once past the limit.
        let big = &file[..150_000];
        let e = client
            .put(addr, "big.bin", Mode::Octet, opts(Some(150_000)), big)
            .await;
        assert_eq!(error_code(e.unwrap_err()), ErrorCode::DISK_FULL);
        let e = client
            .put(addr, "big.bin", Mode::Octet, opts(None), big)
            .await;
        assert_eq!(error_code(e.unwrap_err()), ErrorCode::DISK_FULL);
        let e = client
            .get(addr, "../etc/passwd", Mode::Octet, opts(None), Vec::new())
            .await;
        assert_eq!(error_code(e.unwrap_err()), ErrorCode::ACCESS_VIOLATION);
        drop(stop);
        serving.await.unwrap();
    });
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "no partial upload left behind: {names:?}");
    // No interval elapsed: the final report at shutdown holds everything.
    let intervals = intervals.lock().unwrap();
    assert_eq!(intervals.len(), 1);
    assert_eq!(intervals[0].sessions_started, 6);
    assert_eq!(intervals[0].sessions_completed, 2);
}

#[test]
fn dir_handler_under_async_std() {
    let dir = tempfile::tempdir().unwrap();
    let file = content(70_000);
    std::fs::write(dir.path().join("f"), &file).unwrap();
    let handler = DirHandler::new(dir.path(), RootOptions::default()).unwrap();
    let options = ServerOptions::new().listen("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(handler, options).unwrap();
    let addr = server.local_addrs().unwrap()[0];
    async_std::task::block_on(async {
        let (stop, stopped) = async_std::channel::bounded::<()>(1);
        let serving = async_std::task::spawn(server.serve_until(async move {
            let _ = stopped.recv().await;
        }));
        let mut got = Vec::new();
        Client::new()
            .get(addr, "f", Mode::Octet, opts(None), &mut got)
            .await
            .unwrap();
        assert!(got == file);
        let e = Client::new()
            .put(addr, "g", Mode::Octet, opts(None), &file[..])
            .await;
        assert_eq!(error_code(e.unwrap_err()), ErrorCode::ACCESS_VIOLATION);
        drop(stop);
        serving.await.unwrap();
    });
}

#[test]
fn dropping_the_serve_future_drops_its_sessions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), content(100_000)).unwrap();
    let handler = DirHandler::new(dir.path(), RootOptions::default()).unwrap();
    let options = ServerOptions::new().listen("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(handler, options).unwrap();
    let addr = server.local_addrs().unwrap()[0];
    let serving = smol::spawn(server.serve());
    // A raw client that asks and then never acknowledges.
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    peer.send_to(b"\0\x01f\0octet\0", addr).unwrap();
    let mut buf = [0u8; 600];
    let (n, tid): (usize, SocketAddr) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..4], b"\0\x03\0\x01", "DATA 1 ({n} bytes)");
    assert!(UdpSocket::bind(tid).is_err(), "the transfer port is in use");
    smol::block_on(serving.cancel());
    assert!(
        UdpSocket::bind(tid).is_ok(),
        "the transfer port {tid} is free again"
    );
}

struct Panicky;

impl tftp_async_std::Handler for Panicky {
    async fn read(
        &self,
        request: &tftp_async_std::Request,
    ) -> Result<tftp_async_std::ReadResponse, tftp_async_std::HandlerError> {
        assert_ne!(request.filename, "boom", "handler bug");
        Ok(tftp_async_std::ReadResponse::from_bytes(b"fine".to_vec()))
    }
}

#[test]
fn a_panicking_handler_costs_only_its_request() {
    let options = ServerOptions::new().listen("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(Panicky, options).unwrap();
    let addr = server.local_addrs().unwrap()[0];
    let serving = smol::spawn(server.serve());
    smol::block_on(async {
        let mut config = tftp_proto::Config::default();
        config.initial_timeout = Duration::from_millis(100);
        config.retries = 1;
        let client = Client::with_config(config);
        let e = client
            .get(addr, "boom", Mode::Octet, opts(None), Vec::new())
            .await;
        // The client is told at once ("Server error"), not left to time out.
        assert!(
            matches!(
                &e,
                Err(ClientError::Transfer(TransferError::Peer { message, .. }))
                    if message == "Server error"
            ),
            "{e:?}"
        );
        let mut got = Vec::new();
        client
            .get(addr, "ok", Mode::Octet, opts(None), &mut got)
            .await
            .unwrap();
        assert_eq!(got, b"fine");
    });
    smol::block_on(serving.cancel());
}
