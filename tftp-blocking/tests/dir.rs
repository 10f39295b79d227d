//! DirHandler behind the blocking server: a download, an upload moved into place only when
//! complete, and names outside the root refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::thread;

use tftp_blocking::tftp_proto::TransferError;
use tftp_blocking::{
    Client, ClientError, DirHandler, ErrorCode, Mode, OptionValues, RootOptions, Server,
    ServerOptions,
};

#[test]
fn serves_and_stores_files_under_the_root() {
    let root = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(root.path().join("kernel"), &big).unwrap();
    let handler = DirHandler::new(
        root.path(),
        RootOptions {
            allow_write: true,
            ..Default::default()
        },
    )
    .unwrap();
    let options = ServerOptions::new().listen("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(handler, options).unwrap().workers(2);
    let addr = server.local_addrs().unwrap()[0];
    let stop = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve());

    let options = OptionValues {
        blksize: Some(1468),
        windowsize: Some(4),
        tsize: Some(0),
        ..Default::default()
    };
    let mut data = Vec::new();
    let stats = Client::new()
        .get(addr, "/kernel", Mode::Octet, options, &mut data)
        .unwrap();
    assert_eq!(stats.options.tsize, Some(big.len() as u64));
    assert!(data == big);

    let options = OptionValues {
        tsize: Some(big.len() as u64),
        ..Default::default()
    };
    Client::new()
        .put(addr, "initrd", Mode::Octet, options, &big[..])
        .unwrap();
    assert!(std::fs::read(root.path().join("initrd")).unwrap() == big);

    let e = Client::new()
        .get(
            addr,
            "../etc/passwd",
            Mode::Octet,
            OptionValues::default(),
            Vec::new(),
        )
        .unwrap_err();
    assert_eq!(peer_error(e), ErrorCode::ACCESS_VIOLATION);
    stop.shutdown();
    serving.join().unwrap().unwrap();
}

fn peer_error(e: ClientError) -> ErrorCode {
    match e {
        ClientError::Transfer(TransferError::Peer { code, .. }) => code,
        other => panic!("{other}"),
    }
}

#[test]
fn uploads_off_and_over_the_size_limit_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let serve = |options: RootOptions| {
        let handler = DirHandler::new(root.path(), options).unwrap();
        let listen = ServerOptions::new().listen("127.0.0.1:0".parse().unwrap());
        let server = Server::bind(handler, listen).unwrap();
        let addr = server.local_addrs().unwrap()[0];
        let stop = server.shutdown_handle();
        (addr, stop, thread::spawn(move || server.serve()))
    };
    let data = vec![1u8; 10_000];
    let put = |addr| Client::new().put(addr, "up", Mode::Octet, OptionValues::default(), &data[..]);

    let (addr, stop, serving) = serve(RootOptions::default());
    assert_eq!(
        peer_error(put(addr).unwrap_err()),
        ErrorCode::ACCESS_VIOLATION
    );
    stop.shutdown();
    serving.join().unwrap().unwrap();

    let limited = RootOptions {
        allow_write: true,
        max_upload_size: Some(5000),
        ..Default::default()
    };
    let (addr, stop, serving) = serve(limited);
    // Not announced (no tsize): refused once the bytes pass the limit.
    assert_eq!(peer_error(put(addr).unwrap_err()), ErrorCode::DISK_FULL);
    assert!(!root.path().join("up").exists());
    stop.shutdown();
    serving.join().unwrap().unwrap();
}
