//! What the `tftpd` integration tests share: a child process killed when dropped (or stopped
//! gracefully), free loopback ports, `tftpd` started on one of them and answering, and a line
//! of its `--session-log`. The network test bed's helpers are in [`netbed`]; the qemu tests'
//! in `lab.rs` (included by path), which builds on these.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// A child process, killed and reaped when dropped.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Stop `child`: SIGTERM (which `timeout` passes on to its program), up to `grace` to exit,
/// then SIGKILL; reaped either way.
pub fn stop(child: &mut Child, grace: Duration) {
    if child.try_wait().ok().flatten().is_none() {
        let _ = kill_process(Pid::from_child(child), Signal::TERM);
        let deadline = Instant::now() + grace;
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
    }
    let _ = child.wait();
}

pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// A test that cannot run here says why, and passes.
pub fn skip(test: &str, why: &str) {
    eprintln!("skipped {test}: {why}");
}

/// A UDP port on 127.0.0.1 that was free a moment ago (see [`pick_port`]).
pub fn free_udp() -> u16 {
    pick_port(|port| UdpSocket::bind(("127.0.0.1", port)).is_ok())
}

/// A TCP port on 127.0.0.1 that was free a moment ago (see [`pick_port`]).
pub fn free_tcp() -> u16 {
    pick_port(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
}

/// A port for a server a test is about to start, for which `is_free` says yes: below the
/// kernel's ephemeral range, and never the same twice in one test binary. A port the kernel
/// handed out (binding port 0) could be handed out again, in the moment before the server
/// binds it, to any of the sockets the tests running beside it open (a tftpd opens one a
/// transfer): the server then failed to start, a flake seen once in CI
/// (`hostile_e2e`, "tftpd did not start"). Below the range the kernel assigns nothing, and
/// a counter keeps this process's tests apart.
fn pick_port(is_free: impl Fn(u16) -> bool) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // net.ipv4.ip_local_port_range: 32768-60999 unless configured.
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let first = 10_000;
    let span = ephemeral.saturating_sub(first).max(1000);
    // Test binaries run one after another; a start of their own all the same.
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(first + (start + n) % span).unwrap();
        if is_free(port) {
            return port;
        }
    }
    panic!("no free port in {first}..{}", first + span);
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
    tftpd_with_env(args, &[])
}

/// [`tftpd`] with `env` added to its environment.
pub fn tftpd_with_env(args: &[&str], env: &[(&str, &str)]) -> (Daemon, u16) {
    let port = free_udp();
    let child = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .envs(env.iter().copied())
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

/// One line of `--session-log` (the fields the tests need), and the line itself.
#[derive(Debug)]
pub struct Session {
    pub file: String,
    /// The server's address and port (`local`): the address the client asked.
    pub local: SocketAddr,
    pub outcome: String,
    pub bytes: u64,
    pub blksize: u64,
    pub windowsize: u64,
    pub tsize: Option<u64>,
    pub duration_ms: Option<f64>,
    pub packets_received: Option<u64>,
    pub retransmissions: Option<u64>,
    pub asked_blksize: Option<u64>,
    pub asked_windowsize: Option<u64>,
    pub asked_tsize: Option<u64>,
    pub asked_timeout: Option<u64>,
    pub line: String,
}

impl Session {
    /// The complete lines of a session log read while the server may be writing it: a last
    /// line without its newline is still being written and is left for the next read (a
    /// test reading it half-written, cut after `"packets_sent":196,`, failed as "not a
    /// session log line").
    pub fn parse_log(text: &str) -> Vec<Session> {
        text.split_inclusive('\n')
            .filter_map(|line| line.strip_suffix('\n'))
            .map(Session::parse)
            .collect()
    }

    /// serde writes flat objects in a fixed order, `requested` last; a field is found by name.
    pub fn parse(line: &str) -> Session {
        fn raw<'a>(json: &'a str, key: &str) -> Option<&'a str> {
            let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
            let rest = &json[at..];
            if let Some(s) = rest.strip_prefix('"') {
                return s.find('"').map(|end| &s[..end]);
            }
            Some(&rest[..rest.find([',', '}']).unwrap_or(rest.len())])
        }
        let num = |json: &str, key: &str| raw(json, key).and_then(|v| v.parse::<u64>().ok());
        let (top, asked) = line
            .split_once("\"requested\":")
            .unwrap_or_else(|| panic!("not a session log line: {line}"));
        let field = |key: &str| {
            raw(top, key)
                .unwrap_or_else(|| panic!("no {key} in {line}"))
                .to_string()
        };
        Session {
            file: field("file"),
            local: field("local").parse().unwrap(),
            outcome: field("outcome"),
            bytes: num(top, "bytes").unwrap(),
            blksize: num(top, "blksize").unwrap(),
            windowsize: num(top, "windowsize").unwrap(),
            tsize: num(top, "tsize"),
            duration_ms: raw(top, "duration_ms").and_then(|v| v.parse().ok()),
            packets_received: num(top, "packets_received"),
            retransmissions: num(top, "retransmissions"),
            asked_blksize: num(asked, "blksize"),
            asked_windowsize: num(asked, "windowsize"),
            asked_tsize: num(asked, "tsize"),
            asked_timeout: num(asked, "timeout"),
            line: line.to_string(),
        }
    }
}

impl std::fmt::Display for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} from {}: {} bytes; asked blksize {:?} windowsize {:?} tsize {:?}; \
             granted blksize {} windowsize {} tsize {:?}",
            self.file,
            self.outcome,
            self.local,
            self.bytes,
            self.asked_blksize,
            self.asked_windowsize,
            self.asked_tsize,
            self.blksize,
            self.windowsize,
            self.tsize
        )
    }
}

/// A hand-driven read: ACK `block` to `tid` and wait for DATA `block + 1` in `buf`, returning
/// its length. Copies of earlier blocks are passed over: the server retransmits while a slow
/// (or descheduled) client dawdles, those copies wait in its socket, and the next datagram
/// read is no proof that the ACK was handled. Anything but DATA fails the test.
pub fn ack_for_next(s: &UdpSocket, tid: SocketAddr, block: u16, buf: &mut [u8]) -> usize {
    s.send_to(&[0, 4, (block >> 8) as u8, block as u8], tid)
        .unwrap();
    loop {
        let (n, _) = s.recv_from(buf).unwrap();
        assert!(n >= 4 && buf[1] == 3, "expected DATA, got {:?}", &buf[..n]);
        if u16::from_be_bytes([buf[2], buf[3]]) == block.wrapping_add(1) {
            return n;
        }
    }
}

pub mod netbed;

/// `GET /metrics` from tftpd's endpoint on 127.0.0.1:`port` (retrying for up to 10 s while
/// nothing listens yet).
pub fn scrape(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!("metrics endpoint: {e}"),
            Err(_) => sleep(Duration::from_millis(50)),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// The value of sample `name` (with its labels written out, `x{result="hit"}`) in a scrape,
/// if exported.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `tftp-loadgen` (built if needed: it belongs to the `tftp-benches` package).
pub fn loadgen() -> PathBuf {
    let tftpd = Path::new(env!("CARGO_BIN_EXE_tftpd"));
    let profile_dir = tftpd.parent().unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let mut build = Command::new("timeout");
    build
        .args([
            "600",
            option_env!("CARGO").unwrap_or("cargo"),
            "build",
            "-q",
        ])
        .args([
            "-p",
            "tftp-benches",
            "--bin",
            "tftp-loadgen",
            "--target-dir",
        ])
        .arg(target_dir)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().unwrap();
    assert!(status.success(), "building tftp-loadgen failed: {status}");
    profile_dir.join("tftp-loadgen")
}

/// A number in the loadgen's pretty JSON report.
pub fn report_number<T>(report: &str, key: &str) -> T
where
    T: std::str::FromStr,
    T::Err: std::fmt::Debug,
{
    let at = report
        .find(&format!("\"{key}\": "))
        .unwrap_or_else(|| panic!("no {key} in {report}"));
    let rest = &report[at + key.len() + 4..];
    rest[..rest.find([',', '\n']).unwrap()].parse().unwrap()
}

/// UDP ports of the sockets process `pid` holds (its listener and transfer sockets).
pub fn udp_ports_of(pid: u32) -> HashSet<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    l.to_str()?
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')
                        .map(String::from)
                })
                .collect()
        })
        .unwrap_or_default();
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            inodes.contains(*f.get(9)?).then_some(port)
        })
        .collect()
}
