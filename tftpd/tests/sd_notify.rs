//! systemd `Type=notify` readiness: with `NOTIFY_SOCKET` set, tftpd sends READY=1 once it
//! serves, RELOADING=1 then READY=1 around SIGHUP, and STOPPING=1 when it drains.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use support::{Daemon, curl, free_udp};

/// The next notification datagram, split into its `KEY=VALUE` lines.
fn next(socket: &UnixDatagram) -> Vec<String> {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notification within 10 s");
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn signal(daemon: &Daemon, signal: Signal) {
    kill_process(Pid::from_child(&daemon.0), signal).unwrap();
}

#[test]
fn notifies_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("hello.txt"), b"hello\n").unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = free_udp();
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_tftpd"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--root"])
            .arg(&root)
            .env("NOTIFY_SOCKET", &path)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    assert_eq!(next(&socket), ["READY=1"]);
    // Ready means serving: the first request is answered, no retry needed.
    assert_eq!(curl(port, "hello.txt"), (true, b"hello\n".to_vec()));

    signal(&daemon, Signal::HUP);
    let reloading = next(&socket);
    assert_eq!(reloading[0], "RELOADING=1");
    assert!(
        reloading.iter().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    assert_eq!(next(&socket), ["READY=1"]);
    assert_eq!(curl(port, "hello.txt"), (true, b"hello\n".to_vec()));

    signal(&daemon, Signal::TERM);
    assert_eq!(next(&socket), ["STOPPING=1"]);
    let status = daemon.0.wait().unwrap();
    assert!(status.success(), "{status}");
}
