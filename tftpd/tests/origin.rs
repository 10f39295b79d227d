//! `tftpd --http-origin`, `--metrics` and `--session-log`, against real HTTP servers on
//! loopback: a hand-written one that misbehaves on purpose, and Python's `http.server`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod support;
use support::{Daemon, free_tcp, tftpd};

fn byte(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// A small HTTP/1.1 origin with routes that behave well and badly.
fn origin() -> u16 {
    origin_counting().0
}

/// [`origin`], and the number of requests it has received.
fn origin_counting() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let count = Arc::clone(&count);
            std::thread::spawn(move || serve(stream, &count));
        }
    });
    (port, requests)
}

fn serve(mut stream: TcpStream, requests: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let head = request_line.starts_with("HEAD ");
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                break;
            }
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        let respond = |stream: &mut TcpStream,
                       len: u64,
                       from: u64,
                       to: u64,
                       pause: Duration|
         -> std::io::Result<()> {
            write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n")?;
            if head {
                return Ok(());
            }
            let mut i = from;
            let mut chunk = vec![0u8; 64 * 1024];
            while i < to {
                let n = (to - i).min(chunk.len() as u64) as usize;
                for (k, b) in chunk[..n].iter_mut().enumerate() {
                    *b = byte(i + k as u64);
                }
                stream.write_all(&chunk[..n])?;
                i += n as u64;
                std::thread::sleep(pause);
            }
            Ok(())
        };
        let result = match path.as_str() {
            p if p.starts_with("/big/") => {
                let len: u64 = p[5..].parse().unwrap();
                respond(&mut stream, len, 0, len, Duration::ZERO)
            }
            "/images/a%20b.img" | "/only-origin" => {
                respond(&mut stream, 5000, 0, 5000, Duration::ZERO)
            }
            "/slow" => {
                std::thread::sleep(Duration::from_millis(300));
                respond(&mut stream, 1 << 20, 0, 1 << 20, Duration::from_millis(40))
            }
            "/stall" => {
                let _ = respond(&mut stream, 1 << 20, 0, 200_000, Duration::ZERO);
                std::thread::sleep(Duration::from_secs(30));
                return;
            }
            "/drop" => {
                let _ = respond(&mut stream, 1 << 20, 0, 300_000, Duration::ZERO);
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return;
            }
            "/redirect/same" => write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: /only-origin\r\nContent-Length: 0\r\n\r\n"
            ),
            p if p.starts_with("/redirect/chain/") => {
                let n: u32 = p[16..].parse().unwrap();
                let next = match n {
                    0 => "/only-origin".to_string(),
                    n => format!("/redirect/chain/{}", n - 1),
                };
                write!(
                    stream,
                    "HTTP/1.1 302 Found\r\nLocation: {next}\r\nContent-Length: 0\r\n\r\n"
                )
            }
            p if p.starts_with("/redirect/to/") => write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{}/only-origin\r\n\
                 Content-Length: 0\r\n\r\n",
                &p[13..]
            ),
            "/error" => write!(
                stream,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
            ),
            "/secret" => write!(
                stream,
                "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
            ),
            _ => write!(
                stream,
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
            ),
        };
        if result.is_err() {
            return;
        }
    }
}

fn expected(len: u64) -> Vec<u8> {
    (0..len).map(byte).collect()
}

#[test]
fn streams_from_the_origin_with_errors_mapped() {
    let http = origin();
    let url = format!("http://127.0.0.1:{http}");
    let (_d, port) = tftpd(&["--http-origin", &url, "--origin-read-timeout", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");

    let out = support::tftp_get("60", port, "big/9000000", &dest, &["-b", "1468", "-w", "8"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&dest).unwrap() == expected(9_000_000));

    // A name with a space, a leading slash and a Windows separator.
    let out = support::tftp_get("60", port, "\\images/a b.img", &dest, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&dest).unwrap(), expected(5000));

    // Slow but within the timeouts: it arrives whole.
    let out = support::tftp_get("60", port, "slow", &dest, &["-b", "1468"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&dest).unwrap() == expected(1 << 20));

    for (file, message) in [
        ("missing", "File not found"),
        ("secret", "Access violation"),
        ("error", "Origin error (HTTP 500)"),
        ("drop", "Origin transfer failed"),
        ("stall", "Origin transfer failed"),
        ("../etc/passwd", "Access violation"),
    ] {
        let _ = std::fs::remove_file(&dest);
        let out = support::tftp_get("60", port, file, &dest, &["-b", "1468"]);
        assert!(!out.status.success(), "{file} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{file}: {err}");
        assert!(!dest.exists(), "{file}: a truncated file was left");
    }
}

#[test]
fn origin_transfers_use_bounded_memory() {
    let http = origin();
    let url = format!("http://127.0.0.1:{http}");
    let (daemon, port) = tftpd(&["--http-origin", &url]);
    let dir = tempfile::tempdir().unwrap();
    let len = 256u64 << 20;
    let out = support::tftp_get(
        "60",
        port,
        &format!("big/{len}"),
        &dir.path().join("out"),
        &["-b", "65464", "-w", "4"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("out")).unwrap().len(),
        len
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.0.id())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        peak_kib < 64 * 1024,
        "tftpd peaked at {peak_kib} KiB for a {len}-byte file: it buffers"
    );
}

#[test]
fn local_root_first_then_the_origin_against_python_http_server() {
    let web = tempfile::tempdir().unwrap();
    std::fs::create_dir(web.path().join("images")).unwrap();
    std::fs::write(web.path().join("images/vmlinuz"), expected(3_000_000)).unwrap();
    std::fs::write(web.path().join("local.txt"), "from the origin").unwrap();
    let http_port = free_tcp();
    let python = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &http_port.to_string(),
            "--directory",
        ])
        .arg(web.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 is not installed; run scripts/test-deps.sh");
    let _python = Daemon(python);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", http_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "python http.server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("local.txt"), "from the root").unwrap();
    let url = format!("http://127.0.0.1:{http_port}/");
    let (_d, port) = tftpd(&[
        "--root",
        root.path().to_str().unwrap(),
        "--http-origin",
        &url,
    ]);
    let out = Command::new("curl")
        .args(["-sS", &format!("tftp://127.0.0.1:{port}/local.txt")])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"from the root");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--tftp-blksize",
            "1468",
            &format!("tftp://127.0.0.1:{port}/images/vmlinuz"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == expected(3_000_000));
}

fn metric(text: &str, name: &str) -> f64 {
    support::metric(text, name).unwrap_or(0.0)
}

/// Scrape the metrics endpoint on `port` until `ready` holds of what it says, for 10 s at
/// most: the last scrape.
fn scrape_until(port: u16, ready: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = support::scrape(port);
        if ready(&text) || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_are_scraped_during_a_transfer_and_sessions_logged() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("file"), expected(100_000)).unwrap();
    let metrics_port = free_tcp();
    let log = root.path().join("sessions.jsonl");
    let (_d, port) = tftpd(&[
        "--root",
        root.path().to_str().unwrap(),
        "--metrics",
        &format!("127.0.0.1:{metrics_port}"),
        "--session-log",
        log.to_str().unwrap(),
    ]);
    // A slow client: hold a transfer open while scraping.
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client
        .send_to(b"\x00\x01file\x00octet\x00", ("127.0.0.1", port))
        .unwrap();
    let mut buf = [0u8; 600];
    let (_, tid) = client.recv_from(&mut buf).unwrap();
    let during = support::scrape(metrics_port);
    assert_eq!(metric(&during, "tftp_active_sessions"), 1.0, "{during}");
    assert!(metric(&during, "tftp_sessions_started_total") >= 1.0);
    // Each ACK waits for the DATA it causes (`ack_for_next`): the server resends while this
    // client sleeps, and a stale copy read at once would let the scrape race the ACK.
    let ack = |block: u16, buf: &mut [u8]| support::ack_for_next(&client, tid, block, buf);
    // Acknowledge ten blocks, wait past the one-second progress report, acknowledge one
    // more: the bytes of the unfinished transfer show in the counter.
    let mut block = 1u16;
    for _ in 0..10 {
        ack(block, &mut buf);
        block += 1;
    }
    std::thread::sleep(Duration::from_millis(1100));
    ack(block, &mut buf);
    block += 1;
    // Counted as that ACK's DATA goes out: scraped until it shows (a loaded machine).
    let moving = scrape_until(metrics_port, |m| {
        metric(m, "tftp_bytes_sent_total") >= 10.0 * 512.0
    });
    assert!(
        metric(&moving, "tftp_bytes_sent_total") >= 10.0 * 512.0,
        "bytes of a running transfer: {moving}"
    );
    assert_eq!(metric(&moving, "tftp_active_sessions"), 1.0);
    // Finish it.
    loop {
        let n = ack(block, &mut buf);
        block += 1;
        if n < 516 {
            client
                .send_to(&[0, 4, (block >> 8) as u8, block as u8], tid)
                .unwrap();
            break;
        }
    }
    // Ended (and logged) before the next request, so that the log's order is known.
    scrape_until(metrics_port, |m| {
        metric(m, "tftp_sessions_total{outcome=\"completed\"}") == 1.0
    });
    let _ = Command::new("curl")
        .args(["-s", &format!("tftp://127.0.0.1:{port}/missing")])
        .output();
    let after = scrape_until(metrics_port, |m| {
        metric(m, "tftp_active_sessions") == 0.0
            && metric(m, "tftp_sessions_total{outcome=\"refused\"}") == 1.0
    });
    assert_eq!(metric(&after, "tftp_active_sessions"), 0.0, "{after}");
    assert_eq!(
        metric(&after, "tftp_sessions_total{outcome=\"completed\"}"),
        1.0,
        "{after}"
    );
    assert_eq!(
        metric(&after, "tftp_sessions_total{outcome=\"refused\"}"),
        1.0,
        "{after}"
    );
    assert_eq!(metric(&after, "tftp_bytes_sent_total"), 100_000.0);
    // Every metric says what it is.
    for line in after.lines().filter(|l| l.starts_with("# TYPE tftp_")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            after.contains(&format!("# HELP {name} ")),
            "{name} has no HELP text:\n{after}"
        );
    }
    assert_eq!(metric(&after, "tftp_errors_sent_total{code=\"1\"}"), 1.0);
    assert_eq!(
        metric(&after, "tftp_negotiated_blksize_total{blksize=\"512\"}"),
        1.0
    );
    assert!(
        after.contains("tftp_session_duration_seconds_bucket"),
        "{after}"
    );
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("\"outcome\":\"completed\"") && lines[0].contains("\"bytes\":100000"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("\"outcome\":\"refused\"") && lines[1].contains("File not found"),
        "{}",
        lines[1]
    );
}

/// `tftp put SRC NAME` to 127.0.0.1:`port`.
fn put(port: u16, src: &std::path::Path, name: &str) -> std::process::Output {
    Command::new("timeout")
        .args([
            "60",
            env!("CARGO_BIN_EXE_tftp"),
            "put",
            &format!("127.0.0.1:{port}"),
            src.to_str().unwrap(),
            name,
            "-q",
        ])
        .output()
        .unwrap()
}

/// With uploads allowed but not overwrites, an upload may not shadow a file that a read finds
/// anywhere in the chain (templates, root, origin): it would replace it for every client.
/// The origin is asked; when it cannot say, the upload is refused.
#[test]
fn uploads_may_not_shadow_files_of_the_origin_or_templates() {
    let http = origin();
    let url = format!("http://127.0.0.1:{http}");
    let root = tempfile::tempdir().unwrap();
    let templates = tempfile::tempdir().unwrap();
    std::fs::write(templates.path().join("menu.cfg"), "menu for {{ip}}").unwrap();
    let src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(src.path(), "from the client").unwrap();
    let (_d, port) = tftpd(&[
        "--root",
        root.path().to_str().unwrap(),
        "--templates",
        templates.path().to_str().unwrap(),
        "--allow-write",
        "--http-origin",
        &url,
    ]);
    for name in ["only-origin", "menu.cfg"] {
        let out = put(port, src.path(), name);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: the upload was accepted");
        assert!(err.contains("error 6"), "{name}: {err}");
        assert!(!root.path().join(name).exists(), "{name} was stored");
    }
    // The origin's file is still what clients get.
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let out = support::tftp_get("60", port, "only-origin", &dest, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&dest).unwrap(), expected(5000));
    // A name nobody has is taken.
    let out = put(port, src.path(), "new-name");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(root.path().join("new-name")).unwrap(),
        b"from the client"
    );
    // The origin cannot say (HTTP 500): refused, fail closed.
    let out = put(port, src.path(), "error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Cannot check the origin"),
        "{err}"
    );
    assert!(!root.path().join("error").exists());

    // The origin is down: refused.
    let down = format!("http://127.0.0.1:{}", free_tcp());
    let (_d2, port) = tftpd(&[
        "--root",
        root.path().to_str().unwrap(),
        "--allow-write",
        "--http-origin",
        &down,
        "--origin-connect-timeout",
        "1",
    ]);
    let out = put(port, src.path(), "while-down");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Cannot check the origin"),
        "{err}"
    );
    assert!(!root.path().join("while-down").exists());
}

/// An origin's redirect is followed only to the same origin (scheme, host and port): an open
/// redirect on the origin must not make tftpd fetch from anywhere (SSRF).
#[test]
fn origin_redirects_stay_on_the_origin() {
    let (elsewhere, elsewhere_requests) = origin_counting();
    let http = origin();
    let url = format!("http://127.0.0.1:{http}");
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let (_d, port) = tftpd(&["--http-origin", &url]);
    let out = support::tftp_get("60", port, &format!("redirect/to/{elsewhere}"), &dest, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a redirect to another origin was followed"
    );
    assert!(err.contains("Origin redirect refused"), "{err}");
    assert_eq!(elsewhere_requests.load(Ordering::SeqCst), 0);
    let out = support::tftp_get("60", port, "redirect/same", &dest, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&dest).unwrap(), expected(5000));
    // At most 5 hops.
    let out = support::tftp_get("60", port, "redirect/chain/4", &dest, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = support::tftp_get("60", port, "redirect/chain/5", &dest, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Origin redirect refused"),
        "{err}"
    );

    let (_d2, port) = tftpd(&["--http-origin", &url, "--origin-redirects", "none"]);
    let _ = std::fs::remove_file(&dest);
    let out = support::tftp_get("60", port, "redirect/same", &dest, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a redirect was followed with --origin-redirects none"
    );
    assert!(err.contains("Origin redirect refused"), "{err}");
    assert_eq!(elsewhere_requests.load(Ordering::SeqCst), 0);
}
