//! The bundled `DirHandler` answers reads on the event loop (`Handler::read_on_loop`): a burst
//! of downloads, and a refusal, start no I/O pool thread. Alone in its test binary: the
//! threads of this process are the test's and this server's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::thread;

use tftp_blocking::tftp_proto::TransferError;
use tftp_blocking::{
    Client, ClientError, DirHandler, ErrorCode, Mode, OptionValues, RootOptions, Server,
    ServerOptions,
};

fn get(addr: std::net::SocketAddr, file: &str) -> Result<Vec<u8>, ClientError> {
    let mut data = Vec::new();
    Client::new().get(addr, file, Mode::Octet, OptionValues::default(), &mut data)?;
    Ok(data)
}

/// Threads of this process named `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

#[test]
fn dir_handler_downloads_start_no_pool_thread() {
    // Only on Linux is /proc/self/task there to look at.
    if !std::path::Path::new("/proc/self/task").exists() {
        return;
    }
    // A port a transfer, then every transfer on the listener (single-port mode, where the
    // answer is made while the loop works through a batch of the listener's datagrams).
    for single_port in [false, true] {
        burst(single_port);
        assert_eq!(
            threads_named("tftp-io"),
            0,
            "single port {single_port}: the I/O pool started threads for reads the loop answers"
        );
    }
}

fn burst(single_port: bool) {
    let root = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.path().join("pxelinux.0"), &data).unwrap();
    let handler = DirHandler::new(root.path(), RootOptions::default()).unwrap();
    let mut options = ServerOptions::new().listen("127.0.0.1:0".parse().unwrap());
    options.config.admission.rate_per_client = None;
    options.config.single_port = single_port;
    let server = Server::bind(handler, options).unwrap().workers(1);
    let addr = server.local_addrs().unwrap()[0];
    let stop = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve().unwrap());

    // 32 clients at once, then a refusal (not found).
    let clients: Vec<_> = (0..32)
        .map(|_| thread::spawn(move || get(addr, "pxelinux.0").unwrap()))
        .collect();
    for client in clients {
        assert!(client.join().unwrap() == data, "single port {single_port}");
    }
    match get(addr, "missing") {
        Err(ClientError::Transfer(TransferError::Peer { code, .. })) => {
            assert_eq!(code, ErrorCode::FILE_NOT_FOUND)
        }
        other => panic!("expected ERROR 1, got {other:?}"),
    }
    stop.shutdown();
    serving.join().unwrap();
}
