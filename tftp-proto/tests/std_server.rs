//! The std-only server example (`examples/std_server.rs`: Endpoint, sessions, timer queue on one
//! UDP socket) serves real clients: curl, many at once, and refuses what it should.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../examples/std_server.rs"]
#[allow(dead_code)]
mod std_server;

use std::net::UdpSocket;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn curl_available() -> bool {
    Command::new("curl").arg("--version").output().is_ok()
}

#[test]
fn curl_fetches_from_the_std_only_server() {
    if !curl_available() {
        eprintln!("skipped: no curl (scripts/test-deps.sh installs it)");
        return;
    }
    let root = tempfile_dir();
    let file: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(root.join("big.bin"), &file).unwrap();
    std::fs::write(root.join("small.txt"), b"hello\n").unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let (stop, root) = (Arc::clone(&stop), root.clone());
        std::thread::spawn(move || std_server::serve(&socket, &root, &stop))
    };
    let fetch = |name: &str, blksize: &str| {
        Command::new("curl")
            .args(["-s", "--max-time", "20", "--tftp-blksize", blksize])
            .arg(format!("tftp://127.0.0.1:{port}/{name}"))
            .output()
            .unwrap()
    };
    // Twenty at once, at two block sizes.
    let outputs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| s.spawn(move || fetch("big.bin", if i % 2 == 0 { "512" } else { "1468" })))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for out in outputs {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout == file,
            "content differs ({} bytes)",
            out.stdout.len()
        );
    }
    assert_eq!(fetch("small.txt", "512").stdout, b"hello\n");
    // Refusals: a missing file, a way out of the root.
    assert!(!fetch("missing", "512").status.success());
    assert!(!fetch("../etc/passwd", "512").status.success());
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap().unwrap();
    std::fs::remove_dir_all(root).unwrap();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tftp-std-server-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
