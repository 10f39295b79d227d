//! What the `tftpd` integration tests share: a child process killed when dropped, free
//! loopback ports, and `tftpd` started on one of them and answering.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A child process, killed and reaped when dropped.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait (up to 10 s) until a TFTP server on 127.0.0.1:`port` answers a request (with an
/// ERROR: mode `mail` is refused).
pub fn wait_ready(port: u16) {
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        probe
            .send_to(b"\x00\x01probe\x00mail\x00", ("127.0.0.1", port))
            .unwrap();
        if probe.recv_from(&mut [0u8; 600]).is_ok() {
            return;
        }
    }
    panic!("tftpd did not start");
}

/// `tftpd --listen 127.0.0.1:PORT ARGS...` on a free port, once it answers.
pub fn tftpd(args: &[&str]) -> (Daemon, u16) {
    let port = free_udp();
    let child = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon(child);
    wait_ready(port);
    (daemon, port)
}

/// `curl tftp://127.0.0.1:PORT/PATH`: whether it succeeded, and what it printed.
pub fn curl(port: u16, path: &str) -> (bool, Vec<u8>) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            &format!("tftp://127.0.0.1:{port}/{path}"),
        ])
        .output()
        .expect("curl is not installed; run scripts/test-deps.sh");
    (out.status.success(), out.stdout)
}

/// Our `tftp get` from 127.0.0.1:`port`, killed after `limit` seconds.
pub fn tftp_get(limit: &str, port: u16, file: &str, dest: &Path, extra: &[&str]) -> Output {
    Command::new("timeout")
        .args([
            limit,
            env!("CARGO_BIN_EXE_tftp"),
            "get",
            &format!("127.0.0.1:{port}"),
            file,
            dest.to_str().unwrap(),
            "-q",
        ])
        .args(extra)
        .output()
        .unwrap()
}

pub mod netbed;
