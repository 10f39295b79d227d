//! The `tftp` client binary against servers that fail, lie or stay silent: what it leaves on
//! disk and what it prints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::UdpSocket;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod support;
use support::{tftp_get, tftpd};

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A running `tftpd` serving one file, and an empty directory to download into.
struct Served {
    port: u16,
    out: tempfile::TempDir,
    _daemon: support::Daemon,
    _root: tempfile::TempDir,
}

/// A server with `name` holding `content`.
fn served(name: &str, content: &[u8]) -> Served {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join(name), content).unwrap();
    let (daemon, port) = tftpd(&["--root", root.path().to_str().unwrap()]);
    Served {
        port,
        out: tempfile::tempdir().unwrap(),
        _daemon: daemon,
        _root: root,
    }
}

#[test]
fn a_failed_get_leaves_an_existing_dest_byte_exact() {
    let s = served("present", b"new");
    let (port, out) = (s.port, &s.out);
    let dest = out.path().join("keep.bin");
    let old: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    std::fs::write(&dest, &old).unwrap();
    let o = tftp_get("20", port, "missing", &dest, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("File not found"), "{}", stderr(&o));
    assert!(std::fs::read(&dest).unwrap() == old, "DEST was changed");
    assert_eq!(listing(out.path()), ["keep.bin"], "stray files");
}

#[test]
fn a_failed_get_does_not_write_through_a_symlink() {
    let s = served("present", b"new");
    let (port, out) = (s.port, &s.out);
    let target = out.path().join("target");
    std::fs::write(&target, b"precious").unwrap();
    let link = out.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let o = tftp_get("20", port, "missing", &link, &[]);
    assert!(!o.status.success());
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        target,
        "the link is gone"
    );
    assert_eq!(listing(out.path()), ["link", "target"], "stray files");
}

#[test]
fn a_successful_get_replaces_a_symlink_not_its_target() {
    let s = served("present", b"fresh content");
    let (port, out) = (s.port, &s.out);
    let target = out.path().join("target");
    std::fs::write(&target, b"precious").unwrap();
    let link = out.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let o = tftp_get("20", port, "present", &link, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
    assert_eq!(std::fs::read(&link).unwrap(), b"fresh content");
    assert_eq!(listing(out.path()), ["link", "target"], "stray files");
}

#[test]
fn a_successful_get_replaces_the_content_and_leaves_no_temporary_file() {
    let content: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let s = served("image", &content);
    let (port, out) = (s.port, &s.out);
    let dest = out.path().join("image");
    std::fs::write(&dest, vec![b'x'; 300_000]).unwrap();
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o640)).unwrap();
    let o = tftp_get("20", port, "image", &dest, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(&dest).unwrap() == content);
    let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o640, "the replaced file's mode is kept");
    assert_eq!(listing(out.path()), ["image"], "stray files");
    // And into a new file, named after the remote file, in the working directory.
    let o = Command::new("timeout")
        .current_dir(out.path())
        .args(["20", env!("CARGO_BIN_EXE_tftp"), "get", "-q"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("image")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(&dest).unwrap() == content);
    assert_eq!(listing(out.path()), ["image"], "stray files");
}

/// A DEST that is not a regular file (a FIFO, a directory; as root `/dev/null` would be one
/// too) is refused before anything is asked of the server, and left where it is.
#[test]
fn a_dest_that_is_not_a_regular_file_is_refused_and_left_alone() {
    let s = served("present", b"new");
    let (port, out) = (s.port, &s.out);
    let fifo = out.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let dir = out.path().join("dir");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("inside"), b"inside").unwrap();
    for dest in [&fifo, &dir] {
        let o = tftp_get("20", port, "present", dest, &[]);
        assert!(!o.status.success(), "{}: accepted", dest.display());
        assert!(
            stderr(&o).contains("not a regular file"),
            "{}: {}",
            dest.display(),
            stderr(&o)
        );
    }
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(std::fs::read(dir.join("inside")).unwrap(), b"inside");
    assert_eq!(listing(out.path()), ["dir", "fifo"], "stray files");
}

/// A fake server on 127.0.0.1: `serve` runs in a thread with the socket (100 ms read timeout)
/// and a flag that turns true once the test is done with it; it must return soon after that.
struct Fake<T> {
    port: u16,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<T>>,
}

impl<T: Send + 'static> Fake<T> {
    fn start(serve: impl FnOnce(UdpSocket, &AtomicBool) -> T + Send + 'static) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let thread = std::thread::spawn(move || serve(socket, &flag));
        Fake {
            port,
            done,
            thread: Some(thread),
        }
    }

    /// Stop the server and return what it found.
    fn finish(mut self) -> T {
        self.done.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl<T> Drop for Fake<T> {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// At most 30 s, until the test is done.
fn serving(done: &AtomicBool, started: Instant) -> bool {
    !done.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(30)
}

/// A server's ERROR message is the server's text: printed raw, a newline would forge a line
/// of output and an escape sequence would drive the terminal. It is printed escaped.
#[test]
fn a_server_error_message_is_printed_with_control_characters_escaped() {
    let fake = Fake::start(|socket, done| {
        let started = Instant::now();
        let mut buf = [0u8; 1024];
        let mut answered = 0;
        while serving(done, started) {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            if buf[..n].starts_with(&[0, 1]) {
                socket
                    .send_to(b"\x00\x05\x00\x01a\nb\x1b[31m\xc2\x9b\x7f\x00", from)
                    .unwrap();
                answered += 1;
            }
        }
        answered
    });
    let out = tempfile::tempdir().unwrap();
    let o = tftp_get("20", fake.port, "f", &out.path().join("f"), &[]);
    assert_eq!(fake.finish(), 1);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(!err.contains('\x1b'), "raw ESC in {err:?}");
    assert!(!err.contains('\u{9b}'), "raw CSI in {err:?}");
    assert!(!err.contains('\x7f'), "raw DEL in {err:?}");
    assert_eq!(err.matches('\n').count(), 1, "one line: {err:?}");
    assert!(err.ends_with('\n'), "{err:?}");
    assert!(err.contains(r"a\nb\x1b[31m\u{9b}\x7f"), "{err:?}");
    assert_eq!(listing(out.path()), Vec::<String>::new(), "stray files");
}

/// What an endless server saw: DATA blocks it sent, and the ERROR code that stopped it.
#[derive(Debug)]
struct Stream {
    blocks: u32,
    error: Option<u16>,
}

/// A server that answers an RRQ (ignoring its options) with full 512-byte blocks, one per
/// ACK, for ever; bounded here at 10,000 blocks.
fn endless(socket: UdpSocket, done: &AtomicBool) -> Stream {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let mut stream = Stream {
        blocks: 0,
        error: None,
    };
    let mut client = None;
    let mut packet = vec![0u8; 516];
    while serving(done, started) && stream.blocks < 10_000 {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => match buf[..n] {
                [0, 1, ..] if client.is_none() => client = Some(from),
                [0, 4, hi, lo] if Some(from) == client => {
                    if u16::from_be_bytes([hi, lo]) != stream.blocks as u16 {
                        continue;
                    }
                }
                [0, 5, hi, lo, ..] => {
                    stream.error = Some(u16::from_be_bytes([hi, lo]));
                    break;
                }
                _ => continue,
            },
            // Nothing within 100 ms: send the block again.
            Err(_) if client.is_some() => {
                stream.blocks -= 1;
            }
            Err(_) => continue,
        }
        let Some(to) = client else { continue };
        stream.blocks += 1;
        packet[..2].copy_from_slice(&[0, 3]);
        packet[2..4].copy_from_slice(&(stream.blocks as u16).to_be_bytes());
        packet[4..].fill(stream.blocks as u8);
        socket.send_to(&packet, to).unwrap();
    }
    stream
}

/// `--max-size` (Config::max_transfer_size) stops a server that never stops: the download
/// fails with a clear error and ERROR 3 to the server, the partial file is removed, and DEST
/// is untouched.
#[test]
fn max_size_stops_an_endless_stream() {
    let fake = Fake::start(endless);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    std::fs::write(&dest, b"old").unwrap();
    let o = tftp_get("20", fake.port, "f", &dest, &["--max-size", "100000"]);
    let stream = fake.finish();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("--max-size 100000"), "{err}");
    assert_eq!(stream.error, Some(3), "{stream:?}");
    assert_eq!(stream.blocks, 100_000 / 512 + 1, "{stream:?}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"old");
    assert_eq!(listing(out.path()), ["dest"], "stray files");
}

/// A bound UDP socket on loopback that never answers, and the RRQs it has received so far.
struct Silent(UdpSocket);

impl Silent {
    fn new() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        Silent(socket)
    }

    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }

    /// Wait up to `limit` for one RRQ.
    fn wait_request(&self, limit: Duration) -> bool {
        self.0.set_nonblocking(false).unwrap();
        self.0.set_read_timeout(Some(limit)).unwrap();
        let mut buf = [0u8; 1024];
        let got = matches!(self.0.recv(&mut buf), Ok(n) if buf[..n].starts_with(&[0, 1]));
        self.0.set_nonblocking(true).unwrap();
        got
    }

    /// RRQs received since the last call (the client has exited: all are queued).
    fn requests(&self) -> usize {
        let mut buf = [0u8; 1024];
        let mut n = 0;
        while let Ok(len) = self.0.recv(&mut buf) {
            n += usize::from(buf[..len].starts_with(&[0, 1]));
        }
        n
    }
}

/// `--retries N` means N retransmissions, then failure, and the message says so: a client
/// does not wait out the server's `give_up_after` patience (20 s, for slow clients). With
/// `--timeout 1` the request is repeated every second.
#[test]
fn retries_are_honoured_against_a_silent_server() {
    let silent = Silent::new();
    let port = silent.port();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    for (retries, limit) in [(0, 3.0), (2, 5.0)] {
        let started = Instant::now();
        let n = retries.to_string();
        let o = tftp_get("30", port, "f", &dest, &["--retries", &n, "--timeout", "1"]);
        let took = started.elapsed().as_secs_f64();
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(took < limit, "--retries {retries} took {took:.1} s: {err}");
        assert!(took >= retries as f64 + 0.9, "too soon: {took:.1} s");
        let want = format!("no answer from 127.0.0.1:{port} after {retries} retransmissions (");
        assert!(err.contains(&want), "{err}");
        assert_eq!(silent.requests(), retries + 1, "requests sent");
    }
    assert_eq!(listing(out.path()), Vec::<String>::new(), "stray files");
}

/// `--deadline` bounds the whole command, however many retries are allowed.
#[test]
fn deadline_bounds_the_whole_command() {
    let silent = Silent::new();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    std::fs::write(&dest, b"old").unwrap();
    let started = Instant::now();
    let o = tftp_get(
        "30",
        silent.port(),
        "f",
        &dest,
        &["--retries", "100", "--deadline", "2"],
    );
    let took = started.elapsed().as_secs_f64();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!((1.9..4.0).contains(&took), "took {took:.1} s: {err}");
    assert!(err.contains("no answer within 2 s"), "{err}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"old");
    assert_eq!(listing(out.path()), ["dest"], "stray files");
}

/// Ctrl-C (SIGINT) during a download removes the partial file too.
#[test]
fn an_interrupted_get_leaves_no_temporary_file() {
    let silent = Silent::new();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let child = Command::new(env!("CARGO_BIN_EXE_tftp"))
        .args(["get", "-q", "--retries", "100", "--deadline", "20"])
        .arg(format!("127.0.0.1:{}", silent.port()))
        .arg("f")
        .arg(&dest)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = support::Daemon(child);
    // The request is out once the silent socket has it; the temporary file exists by then.
    assert!(silent.wait_request(Duration::from_secs(10)), "no request");
    assert_eq!(listing(out.path()).len(), 1, "the temporary file");
    let kill = Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.0.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(listing(out.path()), Vec::<String>::new(), "stray files");
}

/// `tftp get tftp://HOST:PORT/PATH [DEST]`, as curl takes it (the path %-decoded).
#[test]
fn a_url_names_the_server_and_the_file() {
    let s = served("my file.txt", b"by url");
    let dest = s.out.path().join("got.txt");
    let out = Command::new(env!("CARGO_BIN_EXE_tftp"))
        .args(["get", "-q", "--deadline", "20"])
        .arg(format!("tftp://127.0.0.1:{}/my%20file.txt", s.port))
        .arg(&dest)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&dest).unwrap(), b"by url");
    // Without DEST, the base name of the path, in the current directory.
    let out = Command::new(env!("CARGO_BIN_EXE_tftp"))
        .current_dir(s.out.path())
        .args(["get", "-q", "--deadline", "20"])
        .arg(format!("tftp://127.0.0.1:{}/my%20file.txt", s.port))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(s.out.path().join("my file.txt")).unwrap(),
        b"by url"
    );
    // A URL without a file is refused before anything is sent.
    let out = Command::new(env!("CARGO_BIN_EXE_tftp"))
        .args(["get", "-q", "tftp://127.0.0.1:9/"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("needs a host and a file"),
        "{}",
        stderr(&out)
    );
}

/// `tftp put -` reads standard input, which has no name: without NAME it is refused instead
/// of uploading a file called `-`.
#[test]
fn put_from_standard_input_needs_a_name() {
    let out = Command::new(env!("CARGO_BIN_EXE_tftp"))
        .args(["put", "-q", "--deadline", "5", "127.0.0.1:9", "-"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("put - needs NAME"),
        "{}",
        stderr(&out)
    );
}
