//! tftpd under hostile input and resource pressure: floods, greedy clients, silent peers,
//! full disks, broken uploads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;
use support::{Daemon, free_udp, udp_ports_of, wait_ready};

fn tftpd(root: &Path, args: &[&str]) -> (Daemon, u16) {
    let root = ["--root", root.to_str().unwrap()];
    support::tftpd(&[&root[..], args].concat())
}

fn content(len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_flood_of_junk_does_not_stop_legitimate_transfers() {
    let root = tempfile::tempdir().unwrap();
    let file = content(4 << 20);
    std::fs::write(root.path().join("image"), &file).unwrap();
    let (daemon, port) = tftpd(root.path(), &[]);
    let pid = daemon.0.id();
    let before = peak_rss_kib(pid);
    let out = tempfile::tempdir().unwrap();
    let legit: Vec<_> = (0..4)
        .map(|i| {
            let dest = out.path().join(format!("image{i}"));
            std::thread::spawn(move || {
                let o = support::tftp_get(
                    "120",
                    port,
                    "image",
                    &dest,
                    &["-b", "1468", "--retries", "10"],
                );
                (o, dest)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    // 100,000 datagrams: random bytes, truncated and malformed requests, requests for files
    // that do not exist, and stray DATA/ACK/ERROR, at the listener and at every transfer port.
    let flooders: Vec<_> = (0..2u64)
        .map(|t| {
            std::thread::spawn(move || {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                socket.set_nonblocking(true).unwrap();
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ t;
                let mut targets = vec![port];
                let mut sent = 0;
                while sent < 50_000 {
                    if sent % 2000 == 0 {
                        targets = udp_ports_of(pid).into_iter().collect();
                    }
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let len = (x % 700) as usize;
                    let mut d: Vec<u8> = (0..len).map(|i| (x >> (i % 56)) as u8).collect();
                    match x % 6 {
                        0 => d.splice(0..d.len().min(2), [0, 1]).for_each(drop),
                        1 => {
                            d = b"\x00\x01../../etc/passwd\x00octet\x00blksize\x0099999\x00"
                                .to_vec()
                        }
                        2 => d = vec![0, 3, (x >> 8) as u8, x as u8, 1, 2, 3],
                        3 => d = vec![0, 4, (x >> 8) as u8, x as u8],
                        4 => d = format!("\x00\x01nope{}\x00octet\x00", x % 1000).into_bytes(),
                        _ => {}
                    }
                    let target = targets[(x as usize >> 3) % targets.len().max(1)];
                    let _ = socket.send_to(&d, ("127.0.0.1", target));
                    sent += 1;
                    // Drain answers so our own receive buffer never matters.
                    let _ = socket.recv_from(&mut [0u8; 1024]);
                }
            })
        })
        .collect();
    for f in flooders {
        f.join().unwrap();
    }
    for t in legit {
        let (o, dest) = t.join().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            std::fs::read(&dest).unwrap() == file,
            "a legitimate transfer was corrupted"
        );
    }
    let after = peak_rss_kib(pid);
    assert!(
        after < before + 32 * 1024,
        "memory grew from {before} KiB to {after} KiB under the flood"
    );
    // Still serving.
    let dest = out.path().join("after");
    assert!(
        support::tftp_get("120", port, "image", &dest, &[])
            .status
            .success()
    );
}

#[test]
fn per_client_limits_answer_with_an_error_or_silence() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f"), content(100_000)).unwrap();
    let (_d, port) = tftpd(root.path(), &["--max-sessions-per-client", "2"]);
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    // Two sessions held open (never acknowledged), then a third from the same address.
    let held: Vec<UdpSocket> = (0..2)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.send_to(b"\x00\x01f\x00octet\x00", server).unwrap();
            s.recv_from(&mut [0u8; 600]).unwrap();
            s
        })
        .collect();
    let third = UdpSocket::bind("127.0.0.1:0").unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    third.send_to(b"\x00\x01f\x00octet\x00", server).unwrap();
    let mut buf = [0u8; 600];
    let (n, _) = third.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..4], b"\x00\x05\x00\x00");
    assert!(String::from_utf8_lossy(&buf[4..n]).contains("Too many transfers"));
    drop(held);
}

#[test]
fn a_client_over_its_request_rate_gets_silence() {
    let root = tempfile::tempdir().unwrap();
    let (_d, port) = tftpd(root.path(), &[]);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    // 100 requests at once from one address (for files that do not exist: each is answered
    // with ERROR 1 while the budget lasts).
    for i in 0..100 {
        s.send_to(
            format!("\x00\x01missing{i}\x00octet\x00").as_bytes(),
            ("127.0.0.1", port),
        )
        .unwrap();
    }
    let mut answered = 0;
    while s.recv_from(&mut [0u8; 600]).is_ok() {
        answered += 1;
    }
    assert!(
        (35..=45).contains(&answered),
        "{answered} of 100 answered (burst 40)"
    );
}

#[test]
fn packets_to_a_silent_peer_are_bounded() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f"), content(1 << 20)).unwrap();
    let (_d, port) = tftpd(
        root.path(),
        &["--retries", "3", "--timeout", "0.1", "--give-up-after", "0"],
    );
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.send_to(
        b"\x00\x01f\x00octet\x00blksize\x00512\x00windowsize\x008\x00",
        ("127.0.0.1", port),
    )
    .unwrap();
    let mut buf = [0u8; 600];
    let (_, tid) = s.recv_from(&mut buf).unwrap();
    s.send_to(b"\x00\x04\x00\x00", tid).unwrap();
    // From here on the client says nothing: count what the server sends until it gives up.
    // DATA only: a late ACK 0 (a loaded machine) may also have drawn a copy of the OACK.
    let mut received = 0;
    while let Ok((n, _)) = s.recv_from(&mut buf) {
        if n >= 4 && buf[..2] == [0, 3] {
            received += 1;
        }
    }
    assert!(received >= 8, "the first window arrives");
    assert!(
        received <= 8 * (3 + 1),
        "{received} packets: more than (retries + 1) × windowsize"
    );
}

#[test]
fn a_broken_upload_leaves_nothing_and_a_full_disk_is_error_3() {
    // A client that stops mid-upload: nothing under the final name, no temporary file.
    let root = tempfile::tempdir().unwrap();
    let (_d, port) = tftpd(
        root.path(),
        &[
            "--allow-write",
            "--retries",
            "2",
            "--timeout",
            "0.1",
            "--give-up-after",
            "0",
        ],
    );
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.send_to(b"\x00\x02upload\x00octet\x00", ("127.0.0.1", port))
        .unwrap();
    let mut buf = [0u8; 600];
    let (_, tid) = s.recv_from(&mut buf).unwrap();
    let mut data = vec![0u8, 3, 0, 1];
    data.extend_from_slice(&[7u8; 512]);
    s.send_to(&data, tid).unwrap();
    s.recv_from(&mut buf).unwrap();
    // The server gives up after about 0.7 s and removes its temporary file: looked at until
    // the directory is empty, 10 s at most (a loaded machine).
    let names = |dir: &std::path::Path| -> Vec<_> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !names(root.path()).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = names(root.path());
    assert!(left.is_empty(), "left behind: {left:?}");

    // A full disk: tftpd on a 1 MiB tmpfs in its own mount namespace.
    let mount = tempfile::tempdir().unwrap();
    let port = free_udp();
    let script = format!(
        "mount -t tmpfs -o size=1m tmpfs {dir} && exec {tftpd} --root {dir} --allow-write --listen 127.0.0.1:{port}",
        dir = mount.path().display(),
        tftpd = env!("CARGO_BIN_EXE_tftpd"),
    );
    let child = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        eprintln!("skipped the full-disk part: unshare is not available");
        return;
    };
    let _d = Daemon(child);
    std::thread::sleep(Duration::from_millis(300));
    let src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(src.path(), content(3 << 20)).unwrap();
    let out = Command::new("timeout")
        .args([
            "60",
            env!("CARGO_BIN_EXE_tftp"),
            "put",
            &format!("127.0.0.1:{port}"),
            src.path().to_str().unwrap(),
            "big",
            "-q",
            "-b",
            "1468",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("timed out") {
        eprintln!("skipped the full-disk part: cannot mount a tmpfs here");
        return;
    }
    assert!(!out.status.success());
    assert!(err.contains("error 3"), "{err}");
}

/// With few file descriptors (one per transfer: its socket; the transfers of a file share its
/// descriptor), requests beyond what the limit allows get "Server busy" up front; no admitted
/// transfer fails half-way with an I/O error. tftpd runs without `CAP_SYS_RESOURCE` under a
/// hard limit of 200 descriptors: 200 - 128 reserved = 72 transfers.
#[test]
fn too_few_descriptors_means_server_busy_not_an_io_error() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f"), content(1 << 20)).unwrap();
    let port = free_udp();
    let child = Command::new("setpriv")
        .args([
            "--bounding-set=-sys_resource",
            "--inh-caps=-sys_resource",
            "prlimit",
            "--nofile=200:200",
        ])
        .arg(env!("CARGO_BIN_EXE_tftpd"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--root",
            root.path().to_str().unwrap(),
            "--client-rate",
            "0",
            "--max-sessions-per-client",
            "1000",
        ])
        .stderr(Stdio::null())
        .spawn()
        .expect("setpriv and prlimit (util-linux)");
    let _d = Daemon(child);
    wait_ready(port);
    // 100 clients ask at once and then never acknowledge: every admitted transfer keeps its
    // socket and its file open.
    let clients: Vec<UdpSocket> = (0..100)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s.send_to(b"\x00\x01f\x00octet\x00", ("127.0.0.1", port))
                .unwrap();
            s
        })
        .collect();
    let (mut data, mut busy, mut other) = (0, 0, Vec::new());
    for s in &clients {
        let mut buf = [0u8; 600];
        let (n, _) = s.recv_from(&mut buf).unwrap();
        match &buf[..n] {
            [0, 3, 0, 1, ..] => data += 1,
            [0, 5, _, _, msg @ ..] if msg.starts_with(b"Server busy") => busy += 1,
            d => other.push(String::from_utf8_lossy(d).into_owned()),
        }
    }
    assert!(other.is_empty(), "unexpected answers: {other:?}");
    assert_eq!((data, busy), (72, 28));
}
