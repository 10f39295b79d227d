//! `tftpd --metrics` under hostile HTTP clients: floods of idle connections, slow headers,
//! wrong paths and methods, too few descriptors. The endpoint must stay bounded (descriptors,
//! log lines) and keep answering scrapes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{Daemon, free_tcp, free_udp, tftpd, wait_ready};

/// Descriptors process `pid` holds.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Connect to 127.0.0.1:`port`, retrying for up to 10 s while nothing listens yet.
fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("metrics endpoint: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Send `request` and read the answer until the server closes (at most 5 s).
fn exchange(port: u16, request: &str) -> std::io::Result<String> {
    let mut s = connect(port);
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

fn metrics_daemon() -> (Daemon, u16, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let metrics_port = free_tcp();
    let (daemon, _) = tftpd(&[
        "--root",
        root.path().to_str().unwrap(),
        "--metrics",
        &format!("127.0.0.1:{metrics_port}"),
    ]);
    drop(connect(metrics_port));
    (daemon, metrics_port, root)
}

/// 200 connections that never send a request: beyond the cap (32) they are closed at once, the
/// daemon's descriptors stay bounded, and a scrape is answered once the idle ones reach the
/// header deadline (5 s).
#[test]
fn idle_connections_are_capped_and_a_scrape_still_gets_through() {
    let (daemon, port, _root) = metrics_daemon();
    let pid = daemon.0.id();
    let baseline = fd_count(pid);
    let mut idle: Vec<Option<TcpStream>> = (0..200)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_nonblocking(true).unwrap();
            Some(s)
        })
        .collect();
    // Those over the cap are closed (possibly after a "503"); poll for up to 3 s.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut closed = 0;
    while closed < 168 && Instant::now() < deadline {
        for slot in idle.iter_mut() {
            let Some(s) = slot else { continue };
            let mut buf = [0u8; 512];
            match s.read(&mut buf) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Ok(n) if n > 0 => {}
                _ => {
                    *slot = None;
                    closed += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        closed >= 168,
        "only {closed} of 200 idle connections closed"
    );
    let held = fd_count(pid);
    assert!(
        held <= baseline + 32 + 2,
        "the metrics endpoint holds {} descriptors",
        held - baseline
    );
    // Answered within the header deadline plus a margin.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = exchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap_or_default();
        if answer.starts_with("HTTP/1.1 200") && answer.contains("\ntftp_") {
            break;
        }
        assert!(Instant::now() < deadline, "no scrape answered: {answer:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(idle);
}

/// A client that sends half a request line and stalls is dropped at the header deadline (5 s
/// in the daemon).
#[test]
fn a_slow_header_is_dropped_at_the_deadline() {
    let (_daemon, port, _root) = metrics_daemon();
    let mut s = connect(port);
    s.write_all(b"GET /metr").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let waited = start.elapsed();
    assert!(
        waited < Duration::from_secs(8),
        "still open after {waited:?}"
    );
}

#[test]
fn only_get_and_head_of_metrics_are_served() {
    let (_daemon, port, _root) = metrics_daemon();
    let ok = exchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("\ntftp_"), "{ok}");
    assert!(
        ok.to_ascii_lowercase().contains("connection: close"),
        "{ok}"
    );
    let head = exchange(port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD got a body: {head}");
    let missing = exchange(port, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let post = exchange(
        port,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(post.contains("Allow: GET, HEAD"), "{post}");
}

/// Under a descriptor limit the endpoint runs out of descriptors (EMFILE) while connections
/// wait: accepting backs off and the warning is rate-limited, instead of a busy loop writing
/// millions of log lines.
#[test]
fn running_out_of_descriptors_backs_off_and_logs_little() {
    let root = tempfile::tempdir().unwrap();
    let port = free_udp();
    let metrics_port = free_tcp();
    let mut child = Command::new("setpriv")
        .args([
            "--bounding-set=-sys_resource",
            "--inh-caps=-sys_resource",
            "prlimit",
            "--nofile=24:24",
        ])
        .arg(env!("CARGO_BIN_EXE_tftpd"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--root",
            root.path().to_str().unwrap(),
            "--metrics",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv and prlimit (util-linux)");
    let stderr = child.stderr.take().unwrap();
    let daemon = Daemon(child);
    wait_ready(port);
    // Count the lines logged, in the background, until the daemon is gone.
    let counter = std::thread::spawn(move || {
        let mut lines = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        let mut stderr = stderr;
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
        lines
    });
    let idle: Vec<TcpStream> = (0..40).map(|_| connect(metrics_port)).collect();
    std::thread::sleep(Duration::from_secs(2));
    drop(daemon);
    let lines = counter.join().unwrap();
    assert!(lines < 20, "{lines} lines logged in 2 s");
    drop(idle);
}

/// The endpoint in this process with `limits`, serving a fixed text.
fn in_process(limits: tftpd::metrics_http::Limits) -> (tokio::runtime::Runtime, u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(tftpd::metrics_http::serve(listener, limits, || {
        "tftp_test_total 1\n".to_string()
    }));
    (rt, port)
}

fn short_limits() -> tftpd::metrics_http::Limits {
    tftpd::metrics_http::Limits {
        max_connections: 4,
        header_timeout: Duration::from_millis(300),
        ..Default::default()
    }
}

#[test]
fn a_slow_header_is_dropped_at_a_short_deadline() {
    let (_rt, port) = in_process(short_limits());
    let mut s = connect(port);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    // A byte at a time, slower than the deadline allows for the whole head.
    for b in b"GET /metrics HTTP/1.1\r\n" {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(30));
        if start.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let waited = start.elapsed();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );
}

#[test]
fn an_oversized_head_gets_431() {
    let (_rt, port) = in_process(short_limits());
    let mut s = connect(port);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let long = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    let _ = s.write_all(long.as_bytes());
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[test]
fn connections_over_the_cap_are_closed_and_scrapes_resume() {
    let (_rt, port) = in_process(short_limits());
    let idle: Vec<TcpStream> = (0..20).map(|_| connect(port)).collect();
    let mut busy = 0;
    for mut s in idle.into_iter().skip(4) {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        busy += usize::from(answer.starts_with(b"HTTP/1.1 503"));
    }
    assert!(busy >= 12, "{busy} of 16 got 503");
    // Once the first four hit their deadline, a scrape is answered.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = exchange(port, "GET /metrics HTTP/1.1\r\n\r\n").unwrap_or_default();
        if answer.starts_with("HTTP/1.1 200") {
            assert!(answer.ends_with("\r\n\r\ntftp_test_total 1\n"), "{answer}");
            break;
        }
        assert!(Instant::now() < deadline, "no scrape answered: {answer:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
