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
    let ClientError::Transfer(TransferError::Peer { code, .. }) = e else {
        panic!("{e}")
    };
    assert_eq!(code, ErrorCode::ACCESS_VIOLATION);
    stop.shutdown();
    serving.join().unwrap().unwrap();
}
